//! Singleton leases in MongoDB: one document per singleton in the
//! `emperor_leases` collection of the source's database, `_id` = the vassal
//! name, with `holder`, `token` and `expires_at`.
//!
//! Expiry is decided by the server's clock alone (`$$NOW`, the same value
//! for every member of a deployment). A lease is taken with one
//! `findOneAndUpdate` (an upsert) whose filter matches only an expired lease
//! or one of ours; when it is someone else's, the upsert hits the `_id` and
//! fails with a duplicate key: not ours. A TTL index is never used to decide
//! ownership (its monitor runs once a minute).

use super::Mongo;
use crate::fleet::lease::{LeaseStore, StoreFuture};
use ::mongodb::bson::{doc, Bson, Document};
use ::mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use ::mongodb::options::ReturnDocument;
use ::mongodb::Collection;
use std::time::Duration;

/// The collection of the leases, in the source's database.
pub const COLLECTION: &str = "emperor_leases";

/// The leases of one emperor in one MongoDB database, over a client of
/// their own.
pub struct MongoLeases {
    mongo: Mongo,
    holder: String,
    lease_ms: i64,
    coll: Option<Collection<Document>>,
}

impl MongoLeases {
    pub(super) fn new(mongo: Mongo, holder: &str, lease: Duration) -> Self {
        Self { mongo, holder: holder.to_owned(), lease_ms: lease.as_millis() as i64, coll: None }
    }

    async fn coll(&mut self) -> Result<Collection<Document>, String> {
        if self.coll.is_none() {
            let client = self.mongo.client().await.map_err(|e| e.to_string())?;
            self.coll = Some(client.database(&self.mongo.source.database).collection(COLLECTION));
        }
        Ok(self.coll.clone().expect("just made"))
    }

    async fn acquire_docs(&mut self, names: &[String]) -> Result<Vec<(String, u64)>, String> {
        let coll = self.coll().await?;
        let me = self.holder.as_str();
        // As numbers: some MongoDB-compatible servers compare a stored
        // date with `$$NOW` wrongly.
        let expired = doc! { "$lt": [{ "$toLong": "$expires_at" }, { "$toLong": "$$NOW" }] };
        let take = vec![doc! { "$set": {
            "token": { "$cond": [
                { "$or": [{ "$ne": ["$holder", me] }, expired.clone()] },
                { "$add": [{ "$ifNull": ["$token", 0] }, 1] },
                "$token",
            ] },
            "holder": me,
            "expires_at": { "$add": ["$$NOW", self.lease_ms] },
        } }];
        let mut taken = Vec::new();
        for name in names {
            let filter = doc! { "_id": name, "$or": [{ "$expr": expired.clone() }, { "holder": me }] };
            let update = coll.find_one_and_update(filter, take.clone()).upsert(true);
            match update.return_document(ReturnDocument::After).await {
                Ok(Some(lease)) => taken.push((name.clone(), token_of(&lease))),
                Ok(None) => {}
                Err(e) if duplicate_key(&e) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(taken)
    }

    async fn renew_docs(&mut self, held: &[(String, u64)]) -> Result<Vec<String>, String> {
        let coll = self.coll().await?;
        let renew = vec![doc! { "$set": { "expires_at": { "$add": ["$$NOW", self.lease_ms] } } }];
        let mut renewed = Vec::new();
        for (name, token) in held {
            let filter = doc! { "_id": name, "holder": &self.holder, "token": *token as i64 };
            let result = coll.update_one(filter, renew.clone()).await.map_err(|e| e.to_string())?;
            if result.matched_count == 1 {
                renewed.push(name.clone());
            }
        }
        Ok(renewed)
    }

    async fn release_docs(&mut self, names: &[String]) -> Result<(), String> {
        let coll = self.coll().await?;
        let filter = doc! { "_id": { "$in": names }, "holder": &self.holder };
        let release = vec![doc! { "$set": { "holder": Bson::Null, "expires_at": "$$NOW" } }];
        coll.update_many(filter, release).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// A lease document's token, whatever integer type the server stored.
fn token_of(lease: &Document) -> u64 {
    match lease.get("token") {
        Some(Bson::Int32(n)) => *n as u64,
        Some(Bson::Int64(n)) => *n as u64,
        _ => 0,
    }
}

/// Whether the upsert found the lease held by someone else.
fn duplicate_key(e: &MongoError) -> bool {
    match &*e.kind {
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        _ => false,
    }
}

impl LeaseStore for MongoLeases {
    fn acquire<'a>(&'a mut self, names: &'a [String]) -> StoreFuture<'a, Vec<(String, u64)>> {
        Box::pin(self.acquire_docs(names))
    }

    fn renew<'a>(&'a mut self, held: &'a [(String, u64)]) -> StoreFuture<'a, Vec<String>> {
        Box::pin(self.renew_docs(held))
    }

    fn release<'a>(&'a mut self, names: &'a [String]) -> StoreFuture<'a, ()> {
        Box::pin(self.release_docs(names))
    }

    fn reset(&mut self) {
        self.coll = None;
    }
}
