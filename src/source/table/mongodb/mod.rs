//! `mongodb://` and `mongodb2://`: every document of a MongoDB collection
//! that matches a filter is a vassal with an inline config.
//!
//! URI forms (see the README):
//! * `mongodb://HOST[:PORT][,HOST…],DB.COLLECTION[,FILTER]` (upstream; the
//!   FILTER may be relaxed JSON such as `{enabled:1}`);
//! * `mongodb://<standard connection string>#DB.COLLECTION[,FILTER]` (any
//!   URI with a `/` before the `#`, e.g. `mongodb://u:p@h:27017/?authSource=admin#emperor.vassals,{enabled:1}`);
//! * `mongodb2://addr=HOST:PORT,collection=DB.COLLECTION,filter={…},username=…,password=…,database=…`.
//!
//! Documents hold `name, config, ts[, uid, gid, socket]`. The source watches
//! the collection with a change stream and re-runs the filtered `find` once
//! per batch of changes (plus every `--resync` seconds); when the server
//! refuses change streams it polls every `interval` seconds (default 3).

mod lease;
pub(crate) mod relaxed_json;
mod uri;

pub use uri::MongoSource;

use crate::source::table::rows::{Field, Row};
use crate::source::table::{self, Backend, Change, Failure};
use crate::source::{Built, Source, SourceContext, SourceTask};
use ::mongodb::bson::{doc, Bson, Document};
use ::mongodb::change_stream::event::ChangeStreamEvent;
use ::mongodb::change_stream::ChangeStream;
use ::mongodb::error::{Error as MongoError, ErrorKind};
use ::mongodb::options::ClientOptions;
use ::mongodb::{Client, Collection};
use futures::{StreamExt, TryStreamExt};
use reconciler::SourceId;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use uri::Target;

/// How long the driver looks for a server before an operation fails.
const SELECTION_TIMEOUT: Duration = Duration::from_secs(3);

impl Source for MongoSource {
    fn id(&self) -> SourceId {
        SourceId(self.id.clone())
    }

    fn build(&self, ctx: SourceContext) -> Built<'_> {
        let backend = Mongo { source: self.clone(), refusal_logged: AtomicBool::new(false) };
        Box::pin(async move { Ok(Box::pin(table::run(backend, ctx)) as SourceTask) })
    }

    fn status(&self) -> Option<crate::fleet::status::Target> {
        let collection = self.status.name.clone()?;
        let heartbeat = self.status.heartbeat();
        let store = crate::fleet::status::mongodb::MongoStatus { source: self.clone(), collection, heartbeat };
        Some(crate::fleet::status::Target::Mongo(store))
    }

    fn lease_store(&self, holder: &str, lease: Duration) -> Option<Box<dyn crate::fleet::lease::LeaseStore>> {
        let mongo = Mongo { source: self.clone(), refusal_logged: AtomicBool::new(false) };
        Some(Box::new(lease::MongoLeases::new(mongo, holder, lease)))
    }
}

/// A MongoDB collection as a table backend.
struct Mongo {
    source: MongoSource,
    /// Whether the refusal of change streams was logged (once per run).
    refusal_logged: AtomicBool,
}

/// One client, its collection, and its change stream (`None` when the
/// server refuses change streams: then the source polls).
struct Conn {
    coll: Collection<Document>,
    changes: Option<ChangeStream<ChangeStreamEvent<Document>>>,
}

/// Whether the server answered a `watch` with a refusal (not a standalone
/// replica set, no `$changeStream`, a reply the driver cannot read) rather
/// than being unreachable.
fn watch_refused(e: &MongoError) -> bool {
    matches!(*e.kind, ErrorKind::Command(_) | ErrorKind::InvalidResponse { .. } | ErrorKind::BsonDeserialization(_))
}

impl Mongo {
    async fn client(&self) -> Result<Client, MongoError> {
        client(&self.source).await
    }
}

impl MongoSource {
    /// The database the collection is in.
    pub(crate) fn database(&self) -> &str {
        &self.database
    }

    /// The source's id (its URI, password masked).
    pub(crate) fn masked_id(&self) -> &str {
        &self.id
    }
}

/// A client for the server of `source`.
pub(crate) async fn client(source: &MongoSource) -> Result<Client, MongoError> {
    let mut options = match &source.target {
        Target::ConnectionString(uri) => ClientOptions::parse(uri).await?,
        Target::Hosts { hosts, replica, credential } => {
            let mut o = ClientOptions::default();
            o.hosts.clone_from(hosts);
            o.repl_set_name.clone_from(replica);
            o.credential = credential.as_deref().cloned();
            o.direct_connection = Some(hosts.len() == 1 && replica.is_none());
            o
        }
    };
    options.app_name.get_or_insert_with(|| "emperor".to_owned());
    options.server_selection_timeout.get_or_insert(SELECTION_TIMEOUT);
    options.connect_timeout.get_or_insert(SELECTION_TIMEOUT);
    Client::with_options(options)
}

impl Backend for Mongo {
    type Conn = Conn;
    const NAME: &'static str = "MongoDB";

    /// Opens the change stream (before the query, so that no change made
    /// between the two is missed), or settles for polling when refused.
    async fn connect(&self) -> Result<Conn, String> {
        let client = self.client().await.map_err(|e| e.to_string())?;
        let coll: Collection<Document> = client.database(&self.source.database).collection(&self.source.collection);
        let changes = match coll.watch().await {
            Ok(stream) => Some(stream),
            Err(e) if watch_refused(&e) => {
                if !self.refusal_logged.swap(true, Ordering::Relaxed) {
                    let every = self.source.interval;
                    tracing::info!(source = %self.source.id, error = %e, "change streams refused; polling every {every:?}");
                }
                None
            }
            Err(e) => return Err(format!("opening the change stream: {e}")),
        };
        Ok(Conn { coll, changes })
    }

    /// Runs the filtered `find` once and decodes every document.
    async fn fetch(&self, conn: &mut Conn) -> Result<Vec<Row>, Failure> {
        let lost = |e: MongoError| Failure::Lost(e.to_string());
        let projection = doc! { "name": 1, "config": 1, "ts": 1, "uid": 1, "gid": 1, "socket": 1 };
        let find = conn.coll.find(self.source.filter.clone()).projection(projection).sort(doc! { "_id": 1 });
        let docs: Vec<Document> = find.await.map_err(lost)?.try_collect().await.map_err(lost)?;
        Ok(docs.iter().map(decode).collect())
    }

    async fn changed(&self, conn: &mut Conn, wait: Duration) -> Change {
        let Some(changes) = conn.changes.as_mut() else {
            tokio::time::sleep(wait).await;
            return Change::Quiet;
        };
        tokio::select! {
            biased;
            next = changes.next() => match next {
                Some(Ok(_)) => Change::Changed,
                Some(Err(e)) => Change::Lost(format!("the change stream: {e}")),
                None => Change::Lost("the change stream ended".into()),
            },
            () = tokio::time::sleep(wait) => Change::Quiet,
        }
    }

    fn period(&self, conn: &Conn, resync: Duration) -> Duration {
        match conn.changes {
            Some(_) => resync,
            None => self.source.interval,
        }
    }
}

/// One document as a vassal row.
pub(crate) fn decode(doc: &Document) -> Row {
    let id = doc.get("_id").map_or_else(|| "?".to_owned(), ToString::to_string);
    Row {
        position: format!("document _id={id}"),
        name: text(doc.get("name")),
        config: text(doc.get("config")),
        ts: ts(doc.get("ts")),
        uid: int(doc.get("uid")),
        gid: int(doc.get("gid")),
        socket: text(doc.get("socket")),
    }
}

fn wrong<T>(value: &Bson) -> Field<T> {
    Field::Wrong(format!("{:?}", value.element_type()))
}

fn text(value: Option<&Bson>) -> Field<String> {
    match value {
        None => Field::Absent,
        Some(Bson::Null) => Field::Null,
        Some(Bson::String(s)) => Field::Value(s.clone()),
        Some(other) => wrong(other),
    }
}

/// `ts` rendered exactly: a Date in milliseconds, a Timestamp as
/// `seconds.increment`, a number as its decimal text.
fn ts(value: Option<&Bson>) -> Field<String> {
    match value {
        None => Field::Absent,
        Some(Bson::Null) => Field::Null,
        Some(Bson::DateTime(d)) => Field::Value(format!("{}ms", d.timestamp_millis())),
        Some(Bson::Timestamp(t)) => Field::Value(format!("{}.{}", t.time, t.increment)),
        Some(Bson::Int32(i)) => Field::Value(i.to_string()),
        Some(Bson::Int64(i)) => Field::Value(i.to_string()),
        Some(Bson::Double(f)) => Field::Value(f.to_string()),
        Some(Bson::Decimal128(d)) => Field::Value(d.to_string()),
        Some(other) => wrong(other),
    }
}

fn int(value: Option<&Bson>) -> Field<i64> {
    match value {
        None => Field::Absent,
        Some(Bson::Null) => Field::Null,
        Some(Bson::Int32(i)) => Field::Value((*i).into()),
        Some(Bson::Int64(i)) => Field::Value(*i),
        Some(Bson::Double(f)) if f.fract() == 0.0 && f.abs() < 1e15 => Field::Value(*f as i64),
        Some(other) => wrong(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_decode() {
        let when = ::mongodb::bson::DateTime::from_millis(1_700_000_000_123);
        let d = doc! {
            "_id": 7, "name": "a.ini", "config": "[uwsgi]", "ts": when, "uid": 5, "gid": 6.0, "socket": Bson::Null
        };
        let row = decode(&d);
        assert_eq!(row.position, "document _id=7");
        assert_eq!(row.ts, Field::Value("1700000000123ms".into()));
        assert_eq!((row.uid, row.gid, row.socket), (Field::Value(5), Field::Value(6), Field::Null));
        let row = decode(&doc! { "name": 3, "ts": "yesterday" });
        assert!(matches!(row.name, Field::Wrong(_)) && matches!(row.ts, Field::Wrong(_)));
        assert_eq!(row.config, Field::Absent);
    }
}
