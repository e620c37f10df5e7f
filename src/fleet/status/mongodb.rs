//! The MongoDB status store: collection `COLLECTION` (one document per
//! vassal, `_id` = `host/name`) and `COLLECTION_hosts` (one heartbeat
//! document per emperor, `_id` = host), in the source's database. A batch is
//! one `update` command of upserts and one `deleteMany`; timestamps are set
//! by the server (`$currentDate`). The status collections are not the
//! watched one, so a status write wakes no change stream of a source.

use super::dirty::{state_name, Batch, Row};
use super::{Claim, Me, Store};
use crate::source::table::mongodb::{client, MongoSource};
use ::mongodb::bson::{doc, Bson, DateTime, Document};
use ::mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use ::mongodb::{Collection, Database};
use futures::TryStreamExt;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// The duplicate key error code.
const DUPLICATE_KEY: i32 = 11000;

/// A status collection of a `mongodb://` source (`;status=COLLECTION`).
#[derive(Debug, Clone)]
pub struct MongoStatus {
    /// The source (its server, database, and id).
    pub source: MongoSource,
    /// The vassal status collection; the heartbeats go to `COLLECTION_hosts`.
    pub collection: String,
    /// How often the heartbeat is renewed.
    pub heartbeat: Duration,
}

/// The database and its two collections.
pub struct Conn {
    db: Database,
    status: Collection<Document>,
    hosts: Collection<Document>,
}

/// Whether `e` is a duplicate key error (an upsert that met a row it may not take).
fn duplicate_key(e: &MongoError) -> bool {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => e.to_string().contains("E11000"),
    }
}

/// The per-state counts (JSON) as a document.
fn counts_doc(counts: &str) -> Document {
    Document::try_from(serde_json::from_str::<serde_json::Map<_, _>>(counts).unwrap_or_default()).unwrap_or_default()
}

/// The document of one vassal row: `$set` and `$currentDate` parts.
fn update_of(host: &str, name: &str, row: &Row, new_since: bool) -> Document {
    let pid = row.pid.map_or(Bson::Null, Bson::Int32);
    let last_exit = row.last_exit.clone().map_or(Bson::Null, Bson::String);
    let set = doc! {
        "host": host, "name": name, "state": row.state, "pid": pid, "restarts": row.restarts, "last_exit": last_exit,
    };
    let mut dates = doc! { "updated_at": true };
    if new_since {
        dates.insert("since", true);
    }
    doc! { "$set": set, "$currentDate": dates }
}

impl Store for MongoStatus {
    type Conn = Conn;

    fn source(&self) -> &str {
        self.source.masked_id()
    }

    fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    async fn connect(&self) -> Result<Conn, String> {
        let client = client(&self.source).await.map_err(|e| e.to_string())?;
        let db = client.database(self.source.database());
        db.run_command(doc! { "ping": 1 }).await.map_err(|e| e.to_string())?;
        let status = db.collection(&self.collection);
        let hosts = db.collection(&format!("{}_hosts", self.collection));
        Ok(Conn { db, status, hosts })
    }

    /// Keeps the row when it is ours (same emperor and pid), else takes it
    /// when it is ours or stale. Stale is judged by this host's clock
    /// against the server's `heartbeat_at`.
    async fn claim(&self, conn: &mut Conn, me: &Me, lease: Duration, counts: &str) -> Result<Claim, String> {
        let vassals = counts_doc(counts);
        let keep = doc! { "_id": &me.host, "emperor_id": &me.emperor_id, "pid": me.pid };
        let beat = doc! {
            "$set": { "vassals": vassals.clone(), "stopped_at": Bson::Null },
            "$currentDate": { "heartbeat_at": true },
        };
        if conn.hosts.update_one(keep, beat).await.map_err(|e| e.to_string())?.matched_count == 1 {
            return Ok(Claim::Ours);
        }
        let cutoff = DateTime::from_system_time(SystemTime::now() - lease);
        let filter = doc! {
            "_id": &me.host,
            "$or": [ { "emperor_id": &me.emperor_id }, { "heartbeat_at": { "$lt": cutoff } } ],
        };
        let take = doc! {
            "$set": { "emperor_id": &me.emperor_id, "pid": me.pid, "vassals": vassals, "stopped_at": Bson::Null },
            "$currentDate": { "heartbeat_at": true, "started_at": true },
        };
        match conn.hosts.update_one(filter, take).upsert(true).await {
            Ok(_) => Ok(Claim::Ours),
            Err(e) if duplicate_key(&e) => {
                let holder = conn.hosts.find_one(doc! { "_id": &me.host }).await.map_err(|e| e.to_string())?;
                let emperor_id = holder.as_ref().and_then(|d| d.get_str("emperor_id").ok()).unwrap_or("?").to_owned();
                let pid = holder.as_ref().and_then(|d| d.get_i32("pid").ok());
                Ok(Claim::Taken { emperor_id, pid })
            }
            Err(e) => Err(e.to_string()),
        }
    }

    async fn beat(&self, conn: &mut Conn, me: &Me, counts: &str) -> Result<bool, String> {
        let vassals = counts_doc(counts);
        let filter = doc! { "_id": &me.host, "emperor_id": &me.emperor_id };
        let update = doc! { "$set": { "vassals": vassals }, "$currentDate": { "heartbeat_at": true } };
        let result = conn.hosts.update_one(filter, update).await.map_err(|e| e.to_string())?;
        Ok(result.matched_count == 1)
    }

    async fn stopped(&self, conn: &mut Conn, me: &Me, counts: &str) -> Result<bool, String> {
        let filter = doc! { "_id": &me.host, "emperor_id": &me.emperor_id };
        let update = doc! { "$set": { "vassals": counts_doc(counts) }, "$currentDate": { "heartbeat_at": true, "stopped_at": true } };
        let result = conn.hosts.update_one(filter, update).await.map_err(|e| e.to_string())?;
        Ok(result.matched_count == 1)
    }

    async fn read(&self, conn: &mut Conn, host: &str) -> Result<HashMap<String, Row>, String> {
        let cursor = conn.status.find(doc! { "host": host }).await.map_err(|e| e.to_string())?;
        let docs: Vec<Document> = cursor.try_collect().await.map_err(|e| e.to_string())?;
        Ok(docs
            .iter()
            .filter_map(|d| {
                let row = Row {
                    state: state_name(d.get_str("state").unwrap_or("")),
                    pid: d.get_i32("pid").ok(),
                    since: None,
                    restarts: d.get_i32("restarts").unwrap_or(0),
                    last_exit: d.get_str("last_exit").ok().map(str::to_owned),
                };
                Some((d.get_str("name").ok()?.to_owned(), row))
            })
            .collect())
    }

    async fn write(&self, conn: &mut Conn, host: &str, batch: &Batch) -> Result<(), String> {
        if !batch.upserts.is_empty() {
            let updates: Vec<Document> = batch
                .upserts
                .iter()
                .map(|u| {
                    let id = format!("{host}/{}", u.name);
                    doc! { "q": { "_id": id }, "u": update_of(host, &u.name, &u.row, u.age.is_some()), "upsert": true }
                })
                .collect();
            let command = doc! { "update": conn.status.name(), "updates": updates, "ordered": false };
            let reply = conn.db.run_command(command).await.map_err(|e| e.to_string())?;
            if let Ok(errors) = reply.get_array("writeErrors") {
                return Err(format!(
                    "{} of {} upserts failed: {:?}",
                    errors.len(),
                    batch.upserts.len(),
                    errors.first()
                ));
            }
        }
        if !batch.deletes.is_empty() {
            let ids: Vec<String> = batch.deletes.iter().map(|name| format!("{host}/{name}")).collect();
            conn.status.delete_many(doc! { "_id": { "$in": ids } }).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
