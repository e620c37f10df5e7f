//! Config sources ("imperial monitors"): each turns one URI into a stream of
//! desired-state events for the reconciler.
//!
//! Sources come in families that share their machinery: `files` (an
//! inotify watcher over a layout of config files), `table` (one driver for
//! every database: connect, fetch, wait for a change, publish snapshots) and
//! `message` (untrusted messages, each one event). Adding a source is one
//! file (a layout, a table backend or a message source) plus one line in
//! [`SCHEMES`].

mod files;
pub(crate) mod message;
pub(crate) mod table;
pub(crate) mod util;

pub mod supervise;

pub use supervise::{Shutdown, SourceStatus};

use crate::control::VassalCounts;
use reconciler::{SourceId, VassalName, VassalSpec};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use supervise::StatusCell;
use tokio::sync::mpsc::Sender;
use tokio::sync::{oneshot, watch};

/// What a source tells the reconciler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// The complete desired set of a source (replaces the previous one).
    Snapshot {
        /// The source.
        source: SourceId,
        /// Everything it wants.
        specs: Vec<VassalSpec>,
    },
    /// One vassal added or changed.
    Upsert(VassalSpec),
    /// One vassal no longer wanted.
    Remove {
        /// The source.
        source: SourceId,
        /// The vassal.
        name: VassalName,
    },
}

/// An event on its way to the emperor, with whom to tell once it is
/// durably recorded.
#[derive(Debug)]
pub struct Envelope {
    /// The event.
    pub event: SourceEvent,
    /// Completed once the event is flushed to the state store.
    pub recorded: Option<oneshot::Sender<()>>,
}

/// What a running source gets from the emperor.
#[derive(Clone)]
pub struct SourceContext {
    /// The source's id (its URI).
    pub id: SourceId,
    /// Where to send its events: bounded, so that a flooding source waits
    /// (a message source then stops reading or acknowledging).
    pub events: Sender<Envelope>,
    /// Interval of the safety-net full rescan.
    pub resync: Duration,
    /// The id of this emperor's state dir: stable across restarts, distinct
    /// per state dir (for names a source must keep, like a durable queue).
    pub emperor_id: String,
    /// Completes when the emperor stops its sources.
    pub shutdown: Shutdown,
    /// The source's status, marked up again when it delivers.
    status: StatusCell,
    /// Where sources that resume a change stream keep their position.
    cursors: Option<state::Cursors>,
    /// The emperor's per-state vassal counts.
    counts: watch::Receiver<VassalCounts>,
    /// Whether file sources give each vassal the owner of its config file.
    pub file_owners: FileOwners,
    /// This emperor's name in a fleet (`--host`, default the machine's
    /// hostname), for the records a source keeps of it.
    pub host: String,
}

/// Whether file sources (dir://, glob://) give each vassal the owner of its
/// config file as the identity it runs as (tyrant mode), and which owner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FileOwners {
    /// No owner (tyrant mode is off): a chown changes nothing.
    #[default]
    Ignored,
    /// The owner of the file, through symlinks.
    Target,
    /// The owner of a symlink itself (`--tyrant-nofollow`).
    Link,
}

impl SourceContext {
    /// A context for source `id` sending to `events`, with `resync` as its
    /// rescan period and its own status.
    pub fn new(
        id: SourceId,
        events: Sender<Envelope>,
        resync: Duration,
        emperor_id: String,
        shutdown: Shutdown,
    ) -> Self {
        let status = StatusCell::new(id.clone());
        let counts = watch::Sender::default().subscribe();
        Self {
            id,
            events,
            resync,
            emperor_id,
            shutdown,
            status,
            cursors: None,
            counts,
            file_owners: FileOwners::Ignored,
            host: crate::fleet::host::host_name(None),
        }
    }

    /// The same context for the emperor named `host` (`--host`).
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = host.to_owned();
        self
    }

    /// The same context with file owners reported as `owners` says.
    pub fn with_file_owners(mut self, owners: FileOwners) -> Self {
        self.file_owners = owners;
        self
    }

    /// The same context with the state store's source cursors.
    pub fn with_cursors(mut self, cursors: Option<state::Cursors>) -> Self {
        self.cursors = cursors;
        self
    }

    /// The same context reading the emperor's vassal counts from `counts`.
    pub fn with_counts(mut self, counts: Option<watch::Receiver<VassalCounts>>) -> Self {
        if let Some(counts) = counts {
            self.counts = counts;
        }
        self
    }

    /// The emperor's per-state vassal counts, updated after every round
    /// that changed them (read-only; all zero and never changing in tests
    /// without an emperor).
    pub fn counts(&self) -> watch::Receiver<VassalCounts> {
        self.counts.clone()
    }

    /// The state store's source cursors (none in tests without a store).
    pub fn cursors(&self) -> Option<&state::Cursors> {
        self.cursors.as_ref()
    }

    /// The status the supervisor keeps for this source.
    pub fn status(&self) -> SourceStatus {
        self.status.get()
    }

    /// Sends an event, waiting while the emperor's queue is full; `false`
    /// once the emperor is shutting down.
    pub async fn send(&self, event: SourceEvent) -> bool {
        let sent = self.events.send(Envelope { event, recorded: None }).await.is_ok();
        self.delivered(sent)
    }

    /// [`SourceContext::send`] for a source running on a thread of its own.
    pub fn blocking_send(&self, event: SourceEvent) -> bool {
        let sent = self.events.blocking_send(Envelope { event, recorded: None }).is_ok();
        self.delivered(sent)
    }

    /// Sends an event; the receiver completes once the emperor has made it
    /// durable (so a message may be acknowledged), and fails if it could
    /// not. `None` once the emperor is shutting down.
    pub async fn send_recorded(&self, event: SourceEvent) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.events.send(Envelope { event, recorded: Some(tx) }).await.is_ok();
        self.delivered(sent).then_some(rx)
    }

    /// The source's server stopped answering (the source retries by
    /// itself): it is down in `ctl sources` until it answers again.
    pub fn report_down(&self, error: String) {
        self.status.failed(error, false);
    }

    /// The source's server answers again, whether or not anything changed.
    pub fn report_up(&self) {
        self.status.delivered();
    }

    fn delivered(&self, sent: bool) -> bool {
        if sent {
            self.status.delivered();
        }
        sent
    }
}

/// Something a source holds exclusively: two sources claiming the same one
/// are refused at start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    /// A TCP port bound on this host.
    TcpPort(u16),
    /// A path owned by the source (a watched directory, a socket file).
    Path(PathBuf),
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::TcpPort(port) => write!(f, "TCP port {port}"),
            Resource::Path(path) => write!(f, "path {}", path.display()),
        }
    }
}

/// Why a source URI cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The scheme is not one emperor knows.
    #[error("source {uri:?}: unknown scheme {scheme:?} (known: {known})")]
    UnknownScheme {
        /// The URI as given.
        uri: String,
        /// Its scheme.
        scheme: String,
        /// The schemes this build knows.
        known: String,
    },
    /// The URI is malformed for its scheme.
    #[error("source {uri:?}: {message}")]
    Invalid {
        /// The URI as given.
        uri: String,
        /// What is wrong.
        message: String,
    },
    /// The source could not be started.
    #[error("source {uri:?}: cannot start: {message}")]
    Start {
        /// The URI as given.
        uri: String,
        /// What failed.
        message: String,
    },
    /// Two sources claim the same resource.
    #[error("sources {first:?} and {second:?} both use {resource}")]
    Conflict {
        /// The first source.
        first: String,
        /// The second source.
        second: String,
        /// What both claim.
        resource: Resource,
    },
    /// A running source gave up.
    #[error("source {uri:?}: {message}")]
    Failed {
        /// The source.
        uri: String,
        /// What failed.
        message: String,
    },
}

/// A running source: ends with `Ok` once the emperor stops listening, or
/// with the error that stopped it (then it is built and run again).
pub type SourceTask = Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>>;

/// What building a source gives: the task to run, or why it cannot run.
pub type Built<'a> = Pin<Box<dyn Future<Output = Result<SourceTask, SourceError>> + Send + 'a>>;

/// A config source: built once at start (its URI checked, its resources
/// claimed), then run as a task owned by the source supervisor, which
/// builds and runs it again if it fails.
pub trait Source: Send + Sync {
    /// The source's id (its URI, normalised).
    fn id(&self) -> SourceId;
    /// What this source holds exclusively (a port, a directory).
    fn resources(&self) -> Vec<Resource> {
        Vec::new()
    }
    /// Claims the source's resources (binds its socket, places its watches)
    /// and returns the task that runs it; the task sends a
    /// [`SourceEvent::Snapshot`] once its first full listing is done.
    fn build(&self, ctx: SourceContext) -> Built<'_>;
    /// Whether the source delivers complete listings ([`SourceEvent::Snapshot`]),
    /// so that building it again (an operator's resync) reads everything
    /// again. A message source delivers one change per message and has no
    /// listing to re-read.
    fn lists(&self) -> bool {
        true
    }
    /// Where the emperor writes back the status of its vassals, when the
    /// source's URI asks for it (`status=`).
    fn status(&self) -> Option<crate::fleet::status::Target> {
        None
    }
    /// Where this source keeps singleton leases for the emperor named
    /// `holder`, each lasting `lease`; `None` for a source that cannot hold
    /// leases (its singletons are refused).
    fn lease_store(
        &self,
        holder: &str,
        lease: std::time::Duration,
    ) -> Option<Box<dyn crate::fleet::lease::LeaseStore>> {
        let _ = (holder, lease);
        None
    }
}

/// Builds a source from the rest of its URI (after `scheme://`).
type Constructor = fn(&str) -> Result<Box<dyn Source>, SourceError>;

/// The variables of the emperor's environment from which a source reads
/// credentials: consumed by the emperor, never passed on to a vassal or the
/// fd holder.
pub const CREDENTIAL_VARIABLES: &[&str] = &[table::pg::PASSWORD_ENV, table::ldap::PASSWORD_ENV];

/// Every known scheme and its constructor.
const SCHEMES: &[(&str, Constructor)] = &[
    ("dir", files::DirSource::from_uri),
    ("glob", files::GlobSource::from_uri),
    ("pg", table::pg::PgSource::from_uri),
    ("mongodb", table::mongodb::MongoSource::from_uri),
    ("mongodb2", table::mongodb::MongoSource::from_kv_uri),
    ("ldap", table::ldap::LdapSource::from_uri),
    ("ldaps", table::ldap::LdapSource::from_ldaps_uri),
    ("amqp", message::amqp::AmqpSource::from_uri),
    ("zmq", message::zmq::ZmqSource::from_uri),
    ("zoo", table::zoo::ZooSource::from_uri),
];

/// Parses a source argument: `scheme://rest`, or a bare path (an existing
/// directory is `dir://`, anything else `glob://`).
pub fn parse(arg: &str) -> Result<Box<dyn Source>, SourceError> {
    match arg.split_once("://") {
        Some((scheme, rest)) => match SCHEMES.iter().find(|(s, _)| *s == scheme) {
            Some((_, build)) => build(rest),
            None => Err(SourceError::UnknownScheme {
                uri: util::secret::mask(arg),
                scheme: scheme.to_owned(),
                known: SCHEMES.iter().map(|(s, _)| format!("{s}://")).collect::<Vec<_>>().join(" "),
            }),
        },
        None if std::path::Path::new(arg).is_dir() => files::DirSource::from_uri(arg),
        None => files::GlobSource::from_uri(arg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_bare_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        assert!(parse(d).unwrap().id().0.starts_with("dir://"));
        assert!(parse(&format!("{d}/*.ini")).unwrap().id().0.starts_with("glob://"));
        assert!(parse(&format!("dir://{d}/missing")).unwrap().id().0.starts_with("dir://"));
        let err = parse("ftp://x").err().unwrap().to_string();
        assert!(err.contains("ftp://x") && err.contains("unknown scheme"), "{err}");
    }
}
