//! The `mongodb://` and `mongodb2://` URI grammars (upstream forms, a
//! standard connection string, key-value pairs) and their defaults.

use super::relaxed_json;
use crate::source::util::{percent, seconds, secret};
use crate::source::{Source, SourceError};
use ::mongodb::bson::Document;
use ::mongodb::options::{ConnectionString, Credential, ServerAddress};
use std::time::Duration;

/// Upstream's default server.
pub const DEFAULT_ADDR: &str = "127.0.0.1:27017";
/// Upstream's default namespace (database `uwsgi`, collection `emperor.vassals`).
pub const DEFAULT_NAMESPACE: &str = "uwsgi.emperor.vassals";
/// Polling interval when change streams are refused.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3);

/// How to reach the server.
#[derive(Debug, Clone)]
pub(super) enum Target {
    /// Upstream forms: addresses and optional credentials.
    Hosts { hosts: Vec<ServerAddress>, replica: Option<String>, credential: Option<Box<Credential>> },
    /// A standard `mongodb://` connection string.
    ConnectionString(String),
}

/// A MongoDB collection of vassals.
#[derive(Debug, Clone)]
pub struct MongoSource {
    /// The URI with any password masked.
    pub(super) id: String,
    pub(super) target: Target,
    pub(super) database: String,
    pub(super) collection: String,
    pub(super) filter: Document,
    pub(super) interval: Duration,
    /// Where status is written back (`status=COLLECTION`).
    pub(super) status: crate::fleet::status::Options,
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

    pub(super) fn parse(rest: &str) -> Result<Self, SourceError> {
        let id = secret::mask(&format!("mongodb://{rest}"));
        let invalid = |message: String| SourceError::Invalid { uri: id.clone(), message };
        let (rest, status) = crate::fleet::status::Options::strip_trailing(rest).map_err(&invalid)?;
        let (head, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        if head.contains('/') || !fragment.is_empty() {
            let uri = format!("mongodb://{head}");
            // The driver's own check of `%` escapes slices inside multi-byte
            // characters and panics; refuse a bad escape here first.
            percent::decode(head).map_err(|e| invalid(format!("connection string: {e}")))?;
            ConnectionString::parse(&uri).map_err(|e| invalid(secret::mask(&e.to_string())))?;
            let (ns, filter) = fragment.split_once(',').unwrap_or((fragment, ""));
            let (database, collection) = namespace(ns).map_err(invalid)?;
            let filter = parse_filter(filter).map_err(invalid)?;
            let target = Target::ConnectionString(uri);
            return Ok(Self { id, target, database, collection, filter, interval: DEFAULT_INTERVAL, status });
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
        Ok(Self { id, target, database, collection, filter, interval: DEFAULT_INTERVAL, status })
    }

    pub(super) fn parse_kv(rest: &str) -> Result<Self, SourceError> {
        let pairs = split_top_level(rest);
        let masked: Vec<String> = pairs.iter().map(|p| secret::mask(p)).collect();
        let id = format!("mongodb2://{}", masked.join(","));
        let invalid = |message: String| SourceError::Invalid { uri: id.clone(), message };
        let (mut addr, mut replica, mut ns, mut db, mut filter) = (None, None, None, None, "");
        let (mut username, mut password, mut interval) = (None, None, DEFAULT_INTERVAL);
        let mut status = crate::fleet::status::Options::default();
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
                other if status.take(other, value).map_err(&invalid)? => {}
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
        status.check().map_err(&invalid)?;
        Ok(Self { id, target, database, collection, filter, interval, status })
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

#[cfg(test)]
mod tests {
    use super::*;
    use ::mongodb::bson::doc;

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
        let s = MongoSource::parse("127.0.0.1:27019/#e.v,{enabled:1};status=st;status-heartbeat=1").unwrap();
        assert_eq!((s.collection.as_str(), s.status.name.as_deref()), ("v", Some("st")));
        assert_eq!(s.filter, doc! { "enabled": 1_i32 });
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
        assert_eq!(MongoSource::parse_kv("status=st").unwrap().status.name.as_deref(), Some("st"));
        assert!(MongoSource::parse_kv("status-heartbeat=1").is_err());
        assert!(MongoSource::parse_kv("filter={a:nope}").is_err());
    }
}
