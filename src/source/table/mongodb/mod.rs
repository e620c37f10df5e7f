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

use crate::source::util::retry::Outage;
use crate::source::util::{seconds, secret};
mod relaxed_json;
use crate::source::table::rows::{self, Complaints, Field, Publisher, Row};
use crate::source::{Source, SourceContext, SourceError};
use ::mongodb::bson::{doc, Bson, Document};
use ::mongodb::error::{Error as MongoError, ErrorKind};
use ::mongodb::options::{ClientOptions, ConnectionString, Credential, ServerAddress};
use ::mongodb::{Client, Collection};
use futures::{FutureExt, StreamExt, TryStreamExt};
use reconciler::SourceId;
use std::time::Duration;

/// Upstream's default server.
pub const DEFAULT_ADDR: &str = "127.0.0.1:27017";
/// Upstream's default namespace (database `uwsgi`, collection `emperor.vassals`).
pub const DEFAULT_NAMESPACE: &str = "uwsgi.emperor.vassals";
/// Polling interval when change streams are refused.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3);
/// Longest a query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the driver looks for a server before an operation fails.
const SELECTION_TIMEOUT: Duration = Duration::from_secs(3);

/// How to reach the server.
#[derive(Debug, Clone)]
enum Target {
    /// Upstream forms: addresses and optional credentials.
    Hosts { hosts: Vec<ServerAddress>, replica: Option<String>, credential: Option<Box<Credential>> },
    /// A standard `mongodb://` connection string.
    ConnectionString(String),
}

/// A MongoDB collection of vassals.
#[derive(Debug, Clone)]
pub struct MongoSource {
    /// The URI with any password masked.
    id: String,
    target: Target,
    database: String,
    collection: String,
    filter: Document,
    interval: Duration,
}

impl MongoSource {
    /// Builds the source from the part after `mongodb://`.
    pub fn from_uri(rest: &str) -> Result<Box<dyn Source>, SourceError> {
        Self::parse(rest).map(|s| Box::new(s) as Box<dyn Source>)
    }

    /// Builds the source from the part after `mongodb2://`.
    pub fn from_kv_uri(rest: &str) -> Result<Box<dyn Source>, SourceError> {
        Self::parse_kv(rest).map(|s| Box::new(s) as Box<dyn Source>)
    }

    fn parse(rest: &str) -> Result<Self, SourceError> {
        let id = secret::mask(&format!("mongodb://{rest}"));
        let invalid = |message: String| SourceError::Invalid { uri: id.clone(), message };
        let (head, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        if head.contains('/') || !fragment.is_empty() {
            let uri = format!("mongodb://{head}");
            ConnectionString::parse(&uri).map_err(|e| invalid(secret::mask(&e.to_string())))?;
            let (ns, filter) = fragment.split_once(',').unwrap_or((fragment, ""));
            let (database, collection) = namespace(ns).map_err(invalid)?;
            let filter = parse_filter(filter).map_err(invalid)?;
            let target = Target::ConnectionString(uri);
            return Ok(Self { id, target, database, collection, filter, interval: DEFAULT_INTERVAL });
        }
        // HOST[,HOST…],NS[,FILTER]: the filter starts at the first `,{`.
        let (pre, filter) = match head.find(",{") {
            Some(at) => (&head[..at], &head[at + 1..]),
            None => (head.strip_suffix(',').unwrap_or(head), ""),
        };
        let (hosts, ns) = pre.rsplit_once(',').unwrap_or((pre, ""));
        let (database, collection) = namespace(ns).map_err(invalid)?;
        let hosts = hosts.split(',').map(|h| address(h).map_err(&invalid)).collect::<Result<_, _>>()?;
        let filter = parse_filter(filter).map_err(invalid)?;
        let target = Target::Hosts { hosts, replica: None, credential: None };
        Ok(Self { id, target, database, collection, filter, interval: DEFAULT_INTERVAL })
    }

    fn parse_kv(rest: &str) -> Result<Self, SourceError> {
        let pairs = split_top_level(rest);
        let masked: Vec<String> = pairs.iter().map(|p| secret::mask(p)).collect();
        let id = format!("mongodb2://{}", masked.join(","));
        let invalid = |message: String| SourceError::Invalid { uri: id.clone(), message };
        let (mut addr, mut replica, mut ns, mut db, mut filter) = (None, None, None, None, "");
        let (mut username, mut password, mut interval) = (None, None, DEFAULT_INTERVAL);
        for pair in pairs.into_iter().filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| invalid(format!("{pair:?} is not key=value")))?;
            match key.trim() {
                "addr" | "address" | "server" => addr = Some(value),
                "replica" => replica = Some(value.to_owned()),
                "collection" | "coll" => ns = Some(value),
                "database" | "db" => db = Some(value),
                "json" | "filter" => filter = value,
                "username" => username = Some(value.to_owned()),
                "password" => password = Some(value.to_owned()),
                "predigest" => {} // legacy MONGODB-CR option; SCRAM needs none
                "interval" => {
                    interval = seconds::parse_positive(value).map_err(|e| invalid(format!("interval: {e}")))?
                }
                other => return Err(invalid(format!("unknown key {other:?}"))),
            }
        }
        let (database, collection) = match (ns, db) {
            (Some(coll), Some(db)) if !coll.contains('.') => (db.to_owned(), coll.to_owned()),
            (ns, _) => namespace(ns.unwrap_or("")).map_err(&invalid)?,
        };
        let credential = username.map(|user| {
            let mut c = Credential::default();
            c.username = Some(user);
            c.password = password;
            c.source = db.map(str::to_owned);
            Box::new(c)
        });
        let hosts = vec![address(addr.unwrap_or("")).map_err(&invalid)?];
        let filter = parse_filter(filter).map_err(invalid)?;
        let target = Target::Hosts { hosts, replica, credential };
        Ok(Self { id, target, database, collection, filter, interval })
    }
}

/// `DB.COLLECTION` (split at the first dot); empty means the default.
fn namespace(ns: &str) -> Result<(String, String), String> {
    let ns = match ns.trim() {
        "" => DEFAULT_NAMESPACE,
        ns => ns,
    };
    match ns.split_once('.') {
        Some((db, coll)) if !db.is_empty() && !coll.is_empty() => Ok((db.to_owned(), coll.to_owned())),
        _ => Err(format!("namespace {ns:?} is not DATABASE.COLLECTION")),
    }
}

/// `HOST[:PORT]`; empty means the default.
fn address(text: &str) -> Result<ServerAddress, String> {
    let text = match text.trim() {
        "" => DEFAULT_ADDR,
        t => t,
    };
    ServerAddress::parse(text).map_err(|e| format!("bad address {text:?}: {e}"))
}

/// A relaxed-JSON filter as a BSON document; empty matches everything.
fn parse_filter(text: &str) -> Result<Document, String> {
    if text.trim().is_empty() {
        return Ok(Document::new());
    }
    let bad = |e: &dyn std::fmt::Display| format!("bad filter {text:?}: {e}");
    let strict = relaxed_json::to_strict(text).map_err(|e| bad(&e))?;
    match serde_json::from_str::<serde_json::Value>(&strict).map_err(|e| bad(&e))? {
        serde_json::Value::Object(map) => Document::try_from(map).map_err(|e| bad(&e)),
        _ => Err(bad(&"not an object")),
    }
}

/// Splits `key=value,…` at commas outside brackets and quotes.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut quote, mut start) = (Vec::new(), 0i32, None, 0);
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

impl Source for MongoSource {
    fn id(&self) -> SourceId {
        SourceId(self.id.clone())
    }

    fn start(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        crate::source::spawn_async(ctx, move |ctx| self.run(ctx))
    }
}

/// Whether the server answered a `watch` with a refusal (not a standalone
/// replica set, no `$changeStream`, a reply the driver cannot read) rather
/// than being unreachable.
fn watch_refused(e: &MongoError) -> bool {
    matches!(*e.kind, ErrorKind::Command(_) | ErrorKind::InvalidResponse { .. } | ErrorKind::BsonDeserialization(_))
}

impl MongoSource {
    async fn client(&self) -> Result<Client, MongoError> {
        let mut options = match &self.target {
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

    async fn run(self, ctx: SourceContext) {
        let client = match self.client().await {
            Ok(client) => client,
            Err(e) => return tracing::error!(source = %ctx.id, error = %e, "cannot set up the MongoDB client"),
        };
        let coll: Collection<Document> = client.database(&self.database).collection(&self.collection);
        let mut outage = Outage::new(ctx.id.clone());
        let mut publisher = Publisher::new(ctx.clone());
        let mut complaints = Complaints::default();
        let mut refusal_logged = false;
        tracing::info!(
            source = %ctx.id, database = %self.database, collection = %self.collection, filter = %self.filter,
            "mongodb source started"
        );
        loop {
            // The stream is opened before the query, so that no change made
            // between the two is missed.
            let mut stream = match coll.watch().await {
                Ok(stream) => Some(stream),
                Err(e) if watch_refused(&e) => {
                    if !std::mem::replace(&mut refusal_logged, true) {
                        let every = self.interval;
                        tracing::info!(source = %ctx.id, error = %e, "change streams refused; polling every {every:?}");
                    }
                    None
                }
                Err(e) => {
                    tokio::time::sleep(outage.failed("opening the MongoDB change stream failed", &e)).await;
                    continue;
                }
            };
            loop {
                match tokio::time::timeout(QUERY_TIMEOUT, self.fetch(&coll)).await {
                    Ok(Ok(rows)) => {
                        outage.ok();
                        if !publisher.publish(rows::collect(&ctx.id, &rows, &mut complaints)) {
                            return;
                        }
                    }
                    Ok(Err(e)) => {
                        tokio::time::sleep(outage.failed("the MongoDB vassal query failed", &e)).await;
                        break;
                    }
                    Err(_) => {
                        let e = format!("timed out after {QUERY_TIMEOUT:?}");
                        tokio::time::sleep(outage.failed("the MongoDB vassal query failed", &e)).await;
                        break;
                    }
                }
                let Some(changes) = stream.as_mut() else {
                    tokio::time::sleep(self.interval).await;
                    continue;
                };
                let next = tokio::select! {
                    next = changes.next() => next,
                    _ = tokio::time::sleep(ctx.resync) => continue,
                };
                match next {
                    Some(Ok(_)) => {
                        // Coalesce what is already buffered into one query.
                        while let Some(Some(more)) = changes.next().now_or_never() {
                            if let Err(e) = more {
                                tracing::debug!(source = %ctx.id, error = %e, "change stream error while draining");
                                break;
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tokio::time::sleep(outage.failed("the MongoDB change stream failed", &e)).await;
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    /// Runs the filtered `find` once and decodes every document.
    async fn fetch(&self, coll: &Collection<Document>) -> Result<Vec<Row>, MongoError> {
        let projection = doc! { "name": 1, "config": 1, "ts": 1, "uid": 1, "gid": 1, "socket": 1 };
        let cursor = coll.find(self.filter.clone()).projection(projection).sort(doc! { "_id": 1 }).await?;
        let docs: Vec<Document> = cursor.try_collect().await?;
        Ok(docs.iter().map(decode).collect())
    }
}

/// One document as a vassal row.
fn decode(doc: &Document) -> Row {
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

    fn hosts(s: &MongoSource) -> Vec<String> {
        match &s.target {
            Target::Hosts { hosts, .. } => hosts.iter().map(ToString::to_string).collect(),
            Target::ConnectionString(uri) => vec![uri.clone()],
        }
    }

    #[test]
    fn upstream_form_and_defaults() {
        let s = MongoSource::parse("127.0.0.1:27107,emperor.vassals,{enabled:1}").unwrap();
        assert_eq!(hosts(&s), ["127.0.0.1:27107"]);
        assert_eq!((s.database.as_str(), s.collection.as_str()), ("emperor", "vassals"));
        assert_eq!(s.filter, doc! { "enabled": 1_i32 });
        let s = MongoSource::parse("").unwrap();
        assert_eq!(hosts(&s), [DEFAULT_ADDR]);
        assert_eq!((s.database.as_str(), s.collection.as_str()), ("uwsgi", "emperor.vassals"));
        assert!(s.filter.is_empty());
        let s = MongoSource::parse("db1:1,db2:2,e.v,{host:'a', $or:[{x:1},{y:2}]}").unwrap();
        assert_eq!(hosts(&s), ["db1:1", "db2:2"]);
        assert_eq!(s.filter, doc! { "host": "a", "$or": [{"x": 1_i32}, {"y": 2_i32}] });
        assert_eq!(MongoSource::parse("h,e.v,").unwrap().filter, Document::new());
    }

    #[test]
    fn connection_string_form() {
        let s = MongoSource::parse("u:pw@127.0.0.1:27019/?directConnection=true#e.v,{enabled:1}").unwrap();
        assert_eq!(hosts(&s), ["mongodb://u:pw@127.0.0.1:27019/?directConnection=true"]);
        assert_eq!((s.database.as_str(), s.collection.as_str()), ("e", "v"));
        assert_eq!(s.filter, doc! { "enabled": 1_i32 });
        assert_eq!(s.id, "mongodb://u:***@127.0.0.1:27019/?directConnection=true#e.v,{enabled:1}");
        let s = MongoSource::parse("127.0.0.1:27019/").unwrap();
        assert_eq!(s.database, "uwsgi");
        assert!(MongoSource::parse("h:1/#ev").is_err());
    }

    #[test]
    fn keyvalue_form() {
        let s = MongoSource::parse_kv(
            "addr=10.0.0.1:27018,collection=e.v,json={a:1,b:'x,y'},username=u,password=pw,database=admin,interval=1.5",
        )
        .unwrap();
        assert_eq!(hosts(&s), ["10.0.0.1:27018"]);
        assert_eq!((s.database.as_str(), s.collection.as_str()), ("e", "v"));
        assert_eq!(s.filter, doc! { "a": 1_i32, "b": "x,y" });
        assert_eq!(s.interval, Duration::from_millis(1500));
        assert!(!s.id.contains("pw"), "{}", s.id);
        let Target::Hosts { credential: Some(c), .. } = &s.target else { panic!("credential") };
        assert_eq!((c.username.as_deref(), c.source.as_deref()), (Some("u"), Some("admin")));
        let s = MongoSource::parse_kv("db=emperor,coll=vassals,filter={enabled:true}").unwrap();
        assert_eq!((s.database.as_str(), s.collection.as_str()), ("emperor", "vassals"));
        assert_eq!(hosts(&s), [DEFAULT_ADDR]);
        let s = MongoSource::parse_kv("").unwrap();
        assert_eq!((s.database.as_str(), s.collection.as_str()), ("uwsgi", "emperor.vassals"));
        assert!(MongoSource::parse_kv("colour=red").is_err());
        assert!(MongoSource::parse_kv("filter={a:nope}").is_err());
    }

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
