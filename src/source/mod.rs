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
mod message;
mod table;
pub(crate) mod util;

use reconciler::{SourceId, VassalName, VassalSpec};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

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
    /// Where to send its events.
    pub events: UnboundedSender<Envelope>,
    /// Interval of the safety-net full rescan.
    pub resync: Duration,
    /// The id of this emperor's state dir: stable across restarts, distinct
    /// per state dir (for names a source must keep, like a durable queue).
    pub emperor_id: String,
}

impl SourceContext {
    /// Sends an event; `false` once the emperor is shutting down.
    pub fn send(&self, event: SourceEvent) -> bool {
        self.events.send(Envelope { event, recorded: None }).is_ok()
    }

    /// Sends an event; the receiver completes once the emperor has made it
    /// durable (so a message may be acknowledged), and fails if it could
    /// not. `None` once the emperor is shutting down.
    pub fn send_recorded(&self, event: SourceEvent) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        self.events.send(Envelope { event, recorded: Some(tx) }).ok().map(|()| rx)
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
}

/// A config source: started once, it runs until the emperor stops.
pub trait Source: Send {
    /// The source's id (its URI, normalised).
    fn id(&self) -> SourceId;
    /// Starts the source in the background (a thread or a task); it sends
    /// a [`SourceEvent::Snapshot`] once its first full listing is done.
    fn start(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError>;
}

/// Builds a source from the rest of its URI (after `scheme://`).
type Constructor = fn(&str) -> Result<Box<dyn Source>, SourceError>;

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
];

/// Parses a source argument: `scheme://rest`, or a bare path (an existing
/// directory is `dir://`, anything else `glob://`).
pub fn parse(arg: &str) -> Result<Box<dyn Source>, SourceError> {
    match arg.split_once("://") {
        Some((scheme, rest)) => match SCHEMES.iter().find(|(s, _)| *s == scheme) {
            Some((_, build)) => build(rest),
            None => Err(SourceError::UnknownScheme {
                uri: arg.to_owned(),
                scheme: scheme.to_owned(),
                known: SCHEMES.iter().map(|(s, _)| format!("{s}://")).collect::<Vec<_>>().join(" "),
            }),
        },
        None if std::path::Path::new(arg).is_dir() => files::DirSource::from_uri(arg),
        None => files::GlobSource::from_uri(arg),
    }
}

/// Runs an async source on a thread of its own with its own small runtime,
/// so a slow server never stalls the emperor's loop or another source.
pub fn spawn_async<F, Fut>(ctx: SourceContext, run: F) -> Result<(), SourceError>
where
    F: FnOnce(SourceContext) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let uri = ctx.id.0.clone();
    let fail = |e: std::io::Error| SourceError::Start { uri: uri.clone(), message: e.to_string() };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(fail)?;
    std::thread::Builder::new()
        .name(format!("source {}", ctx.id))
        .spawn(move || runtime.block_on(run(ctx)))
        .map_err(fail)?;
    Ok(())
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
