//! `zoo://HOSTS/PATH`: every child znode of `PATH` is a vassal, its data the
//! inline config (see [`uri`] for the grammar).
//!
//! One persistent recursive watch on `PATH` (ZooKeeper ≥ 3.6), set before
//! the first read, reports every create, set and delete below it. The
//! backend keeps the nodes it read, re-reads only the children an event
//! named, and re-reads everything after a reconnect (events are lost while
//! disconnected), after the base node itself changed, and on the driver's
//! safety-net period. The version of a vassal is its node's `mzxid`, so any
//! `set` (even of the same bytes) and any re-creation reloads it. Optional
//! children `uid`, `gid` and `socket` of a vassal node carry its owner and
//! on-demand socket.
//!
//! Disconnects keep the session: reads fail until the client is back, the
//! driver keeps the last snapshot and warns once. An expired session is a
//! lost connection: a new session, watch and full read. A missing base node
//! keeps the last snapshot with a warning until it exists again.

pub mod lease;
mod register;
pub mod uri;

use crate::control::VassalCounts;
use crate::source::table::rows::{Field, Row};
use crate::source::table::{self, Backend, Change, Failure};
use crate::source::util::secret::mask;
use crate::source::{Built, Source, SourceContext, SourceError, SourceTask};
use futures::future::join_all;
use reconciler::{SourceId, VassalName};
use register::Registration;
pub(crate) use register::{acls, taken_by};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::watch;
use uri::ZooUri;
use zookeeper_client as zk;

/// How many node reads are in flight at once during a full read.
const READ_BATCH: usize = 256;

/// A ZooKeeper subtree of vassals.
#[derive(Debug, Clone)]
pub struct ZooSource {
    uri: ZooUri,
    /// When the source was created (the emperor's start), for `register`.
    started: u64,
    /// This emperor's registration node, with `register=PATH`.
    registration: Option<Registration>,
    /// The emperor's vassal counts, written into the registration node.
    counts: Option<watch::Receiver<VassalCounts>>,
}

impl ZooSource {
    /// Builds the source from the part after `zoo://`.
    pub fn from_uri(rest: &str) -> Result<Box<dyn Source>, SourceError> {
        let uri = uri::parse(rest)
            .map_err(|message| SourceError::Invalid { uri: mask(&format!("zoo://{rest}")), message })?;
        Ok(Box::new(ZooSource { uri, started: register::now(), registration: None, counts: None }))
    }

    /// `PATH/` (`/` for the root): what a child's path starts with.
    fn prefix(&self) -> String {
        match self.uri.base.as_str() {
            "/" => "/".to_owned(),
            base => format!("{base}/"),
        }
    }
}

impl Source for ZooSource {
    fn id(&self) -> SourceId {
        SourceId(self.uri.id.clone())
    }

    fn build(&self, ctx: SourceContext) -> Built<'_> {
        let mut backend = self.clone();
        let authed = self.uri.auth.is_some();
        backend.registration = self
            .uri
            .register
            .as_deref()
            .map(|dir| Registration::new(dir, &ctx.host, &ctx.emperor_id, self.started, authed));
        backend.counts = Some(ctx.counts());
        Box::pin(async move { Ok(Box::pin(table::run(backend, ctx)) as SourceTask) })
    }

    fn status(&self) -> Option<crate::fleet::status::Target> {
        let dir = self.uri.register.clone().filter(|_| self.uri.status)?;
        let store = crate::fleet::status::zoo::ZooStatus {
            source: self.uri.id.clone(),
            hosts: self.uri.hosts.clone(),
            auth: self.uri.auth.as_ref().map(|(user, password)| format!("{user}:{}", password.expose())),
            dir,
            session_timeout: self.uri.session_timeout,
        };
        Some(crate::fleet::status::Target::Zoo(store))
    }

    fn lease_store(&self, holder: &str, lease: Duration) -> Option<Box<dyn crate::fleet::lease::LeaseStore>> {
        let auth = self.uri.auth.as_ref().map(|(user, password)| format!("{user}:{}", password.expose()));
        let leases = lease::ZooLeases::new(&self.uri.id, &self.uri.hosts, auth, &self.uri.leases, holder, lease);
        Some(Box::new(leases))
    }
}

/// What one vassal node held when last read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    mzxid: i64,
    config: Field<String>,
    uid: Field<i64>,
    gid: Field<i64>,
    socket: Field<String>,
}

/// What reading one child gave.
#[derive(Debug)]
enum Read {
    /// The node is gone.
    Gone,
    /// Its name is not a vassal name: not read (the name is reported).
    Unnamed,
    /// The node as read.
    Found(Node),
}

/// One session: the client, its watch on the base, and what was read.
pub struct Conn {
    client: zk::Client,
    watcher: zk::PersistentWatcher,
    pending: Pending,
    /// The registration node exists for this session (or registering failed
    /// and was reported: it is tried again on every read).
    registered: Option<Result<(), ()>>,
    /// Keeps the registration node's counts current while the session lives.
    counts_writer: Option<Writer>,
    /// The vassal nodes as last read, by child name (`None`: invalid name, not read).
    nodes: BTreeMap<String, Option<Node>>,
}

/// A task of the session, ended with it.
struct Writer(tokio::task::JoinHandle<()>);

impl Drop for Writer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the watch events since the last read call for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Pending {
    /// A terminal session event was seen: the watcher must not be polled again.
    ended: Option<String>,
    /// Everything must be read again (new session, reconnect, base changed).
    resync: bool,
    /// Children an event named since the last read.
    dirty: BTreeSet<String>,
}

impl Pending {
    /// A new session: everything is to be read.
    fn new() -> Self {
        Pending { resync: true, ..Pending::default() }
    }

    /// Takes note of one watch event (its type, session state and path).
    fn note(&mut self, prefix: &str, kind: zk::EventType, state: zk::SessionState, path: &str) -> Change {
        if kind == zk::EventType::Session {
            if state.is_terminated() {
                let why = format!("the ZooKeeper session ended ({state})");
                self.ended = Some(why.clone());
                return Change::Lost(why);
            }
            // Disconnected: reads fail until the client is back; connected
            // again: what happened meanwhile was not reported.
            self.resync = true;
            return Change::Changed;
        }
        match child_of(prefix, path) {
            Some(child) => {
                self.dirty.insert(child.to_owned());
            }
            None => self.resync = true,
        }
        Change::Changed
    }
}

/// The child of the base that `path` is or lies under; `None` for the base
/// itself (or anything outside it).
fn child_of<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix).filter(|r| !r.is_empty())?;
    Some(rest.split_once('/').map_or(rest, |(child, _)| child))
}

/// A read that failed, as the driver sees it.
fn failure(e: zk::Error) -> Failure {
    match e {
        zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed | zk::Error::SessionMoved => {
            Failure::Lost(e.to_string())
        }
        zk::Error::ConnectionLoss => Failure::Query("the ZooKeeper connection is lost".into()),
        e => Failure::Query(e.to_string()),
    }
}

/// Node data as text.
fn text(data: Vec<u8>) -> Field<String> {
    String::from_utf8(data).map_or_else(|_| Field::Wrong("non-UTF-8 data".into()), Field::Value)
}

/// Node data as an id (decimal text).
fn number(data: Vec<u8>) -> Field<i64> {
    match std::str::from_utf8(&data).map(str::trim) {
        Ok("") => Field::Null,
        Ok(digits) => digits.parse().map_or_else(|_| Field::Wrong(format!("text {digits:?}")), Field::Value),
        Err(_) => Field::Wrong("non-UTF-8 data".into()),
    }
}

/// The data of an optional child node (`Absent` when it does not exist).
async fn optional<T>(
    client: &zk::Client,
    path: String,
    decode: fn(Vec<u8>) -> Field<T>,
) -> Result<Field<T>, zk::Error> {
    match client.get_data(&path).await {
        Ok((data, _)) => Ok(decode(data)),
        Err(zk::Error::NoNode) => Ok(Field::Absent),
        Err(e) => Err(e),
    }
}

/// Reads one vassal node and its optional children; `None` when it is gone.
async fn read_node(client: &zk::Client, path: String) -> Result<Option<Node>, zk::Error> {
    let (data, stat) = match client.get_data(&path).await {
        Ok(found) => found,
        Err(zk::Error::NoNode) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut node =
        Node { mzxid: stat.mzxid, config: text(data), uid: Field::Absent, gid: Field::Absent, socket: Field::Absent };
    if stat.num_children > 0 {
        let (uid, gid, socket) = futures::join!(
            optional(client, format!("{path}/uid"), number),
            optional(client, format!("{path}/gid"), number),
            optional(client, format!("{path}/socket"), text),
        );
        (node.uid, node.gid, node.socket) = (uid?, gid?, socket?);
    }
    Ok(Some(node))
}

/// Reads the children `names` (those with a valid vassal name), in batches
/// of requests in flight.
async fn read_children(
    client: &zk::Client,
    prefix: &str,
    names: impl IntoIterator<Item = String>,
) -> Result<Vec<(String, Read)>, zk::Error> {
    let names: Vec<String> = names.into_iter().collect();
    let mut out = Vec::with_capacity(names.len());
    for batch in names.chunks(READ_BATCH) {
        let reads = batch.iter().map(|name| async move {
            if VassalName::parse(name).is_err() {
                return Ok((name.clone(), Read::Unnamed));
            }
            let node = read_node(client, format!("{prefix}{name}")).await;
            node.map(|node| (name.clone(), node.map_or(Read::Gone, Read::Found)))
        });
        for result in join_all(reads).await {
            out.push(result?);
        }
    }
    Ok(out)
}

/// A vassal node as a row for the shared validation.
fn row(prefix: &str, name: &str, node: Option<&Node>) -> Row {
    let position = format!("node {prefix}{name}");
    let name = Field::Value(name.to_owned());
    match node {
        None => Row {
            position,
            name,
            config: Field::Absent,
            ts: Field::Absent,
            uid: Field::Absent,
            gid: Field::Absent,
            socket: Field::Absent,
        },
        Some(n) => Row {
            position,
            name,
            config: n.config.clone(),
            ts: Field::Value(format!("mzxid 0x{:x}", n.mzxid)),
            uid: n.uid.clone(),
            gid: n.gid.clone(),
            socket: n.socket.clone(),
        },
    }
}

impl Backend for ZooSource {
    type Conn = Conn;
    const NAME: &'static str = "ZooKeeper";

    /// Opens a session and watches the base (it may not exist yet) before
    /// anything is read.
    async fn connect(&self) -> Result<Conn, String> {
        let mut connector = zk::Client::connector().with_session_timeout(self.uri.session_timeout).with_fail_eagerly();
        if let Some((user, password)) = &self.uri.auth {
            connector = connector.with_auth("digest", format!("{user}:{}", password.expose()).as_bytes());
        }
        let client = connector.connect(&self.uri.hosts).await.map_err(|e| e.to_string())?;
        let watcher =
            client.watch(&self.uri.base, zk::AddWatchMode::PersistentRecursive).await.map_err(|e| e.to_string())?;
        tracing::debug!(source = %self.uri.id, session = ?client.session_id(), timeout = ?client.session_timeout(), "ZooKeeper session open");
        Ok(Conn {
            client,
            watcher,
            pending: Pending::new(),
            registered: None,
            counts_writer: None,
            nodes: BTreeMap::new(),
        })
    }

    /// Reads what changed (everything after a resync) and returns every
    /// vassal node as a row.
    async fn fetch(&self, conn: &mut Conn) -> Result<Vec<Row>, Failure> {
        let prefix = self.prefix();
        if let Some(why) = &conn.pending.ended {
            return Err(Failure::Lost(why.clone()));
        }
        // Requests made while disconnected would wait for the reconnect.
        if conn.client.state() == zk::SessionState::Disconnected {
            conn.pending.resync = true;
            return Err(Failure::Query("the ZooKeeper connection is lost".into()));
        }
        let dirty = std::mem::take(&mut conn.pending.dirty);
        let result = if conn.pending.resync {
            self.read_all(conn, &prefix).await
        } else {
            self.read_some(conn, &prefix, dirty).await
        };
        if let Err(e) = result {
            conn.pending.resync = true;
            return Err(e);
        }
        self.keep_registered(conn).await;
        Ok(conn.nodes.iter().map(|(name, node)| row(&prefix, name, node.as_ref())).collect())
    }

    async fn changed(&self, conn: &mut Conn, wait: Duration) -> Change {
        if let Some(why) = &conn.pending.ended {
            return Change::Lost(why.clone());
        }
        match tokio::time::timeout(wait, conn.watcher.changed()).await {
            Ok(e) => {
                let change = conn.pending.note(&self.prefix(), e.event_type, e.session_state, &e.path);
                if let Change::Lost(why) = &change {
                    tracing::warn!(source = %self.uri.id, "{why}: opening a new session, then reading everything again");
                }
                change
            }
            Err(_) => {
                // The safety-net period passed: read everything again.
                conn.pending.resync |= !wait.is_zero();
                Change::Quiet
            }
        }
    }

    fn period(&self, _conn: &Conn, resync: Duration) -> Duration {
        resync
    }
}

impl ZooSource {
    /// Lists the base and reads every child.
    async fn read_all(&self, conn: &mut Conn, prefix: &str) -> Result<(), Failure> {
        let names = match conn.client.list_children(&self.uri.base).await {
            Ok(names) => names,
            Err(zk::Error::NoNode) => return Err(self.base_missing()),
            Err(e) => return Err(failure(e)),
        };
        let read = read_children(&conn.client, prefix, names).await.map_err(failure)?;
        conn.nodes = read
            .into_iter()
            .filter_map(|(name, read)| match read {
                Read::Gone => None,
                Read::Unnamed => Some((name, None)),
                Read::Found(node) => Some((name, Some(node))),
            })
            .collect();
        conn.pending.resync = false;
        Ok(())
    }

    /// Registers this emperor for the session once, then keeps the node's
    /// vassal counts current; a failure is reported once per session and
    /// tried again on the next read.
    async fn keep_registered(&self, conn: &mut Conn) {
        let Some(registration) = &self.registration else { return };
        if conn.registered == Some(Ok(())) {
            return;
        }
        let mut counts = self.counts.clone().unwrap_or_else(|| watch::Sender::default().subscribe());
        let now = *counts.borrow_and_update();
        match registration.register(&conn.client, &now).await {
            Ok(()) => {
                tracing::info!(source = %self.uri.id, node = %registration.path, "emperor registered");
                conn.registered = Some(Ok(()));
                let writer = registration.clone().keep_counts(conn.client.clone(), counts, self.uri.id.clone());
                conn.counts_writer = Some(Writer(tokio::spawn(writer)));
            }
            Err(e @ register::RegisterError::Taken { .. }) if conn.registered.is_none() => {
                tracing::error!(source = %self.uri.id, node = %registration.path, error = %e, "this emperor is not registered");
                conn.registered = Some(Err(()));
            }
            Err(e) if conn.registered.is_none() => {
                tracing::warn!(source = %self.uri.id, node = %registration.path, error = %e, "registering this emperor failed; retrying on the next read");
                conn.registered = Some(Err(()));
            }
            Err(_) => {}
        }
    }

    /// The base node is gone: keep the last snapshot (a removed tree is not
    /// "stop everything").
    fn base_missing(&self) -> Failure {
        Failure::Query(format!(
            "the base node {} does not exist (the last vassals are kept until it does)",
            self.uri.base
        ))
    }

    /// Reads the children an event named. Children that are gone count only
    /// while the base exists: a tree removed at once keeps its vassals.
    async fn read_some(&self, conn: &mut Conn, prefix: &str, dirty: BTreeSet<String>) -> Result<(), Failure> {
        let read = read_children(&conn.client, prefix, dirty).await.map_err(failure)?;
        if read.iter().any(|(_, read)| matches!(read, Read::Gone))
            && conn.client.check_stat(&self.uri.base).await.map_err(failure)?.is_none()
        {
            return Err(self.base_missing());
        }
        for (name, read) in read {
            match read {
                Read::Gone => conn.nodes.remove(&name),
                Read::Unnamed => conn.nodes.insert(name, None),
                Read::Found(node) => conn.nodes.insert(name, Some(node)),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
