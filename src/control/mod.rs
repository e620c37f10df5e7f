//! The control socket: `emperor ctl` (or `curl --unix-socket`) asks a
//! running emperor what its vassals do and tells it to start, stop,
//! restart or reload one.
//!
//! One Unix socket per emperor speaks HTTP/1.1 with JSON bodies. Reads are
//! answered by the control task alone, from the [`Table`] the main loop
//! publishes after every reconcile round, so a `list` never waits on the
//! loop; commands go into the loop through a bounded channel and are
//! answered once the round they caused has run. Anyone who can connect may
//! read; only root and the emperor's own uid may change anything.
//!
//! Two reads stream: the event stream (`GET /v1/events`, see [`events`]),
//! which the loop publishes without ever waiting for a reader, and a
//! vassal's log (`GET /v1/vassals/NAME/logs`), read by the control task
//! from the file. `POST /v1/resync` asks sources to read everything again.
//!
//! The same reads are served for monitoring over TCP: `--http` (Prometheus
//! `/metrics`, `/healthz`, the JSON lists) and `--stats` (the uWSGI
//! Emperor's stats object).

pub mod client;
mod counting;
mod counts;
pub(crate) mod events;
mod follow;
mod hook;
pub(crate) mod http;
mod listen;
mod logs;
mod metrics;
mod notify;
mod render;
mod resync;
mod server;
mod source_events;
mod stats;
mod status_http;
mod stream;
mod table;
mod wait;

pub use counting::{Counting, LoopMetrics};
pub use events::{Detail, Event, Kind};
#[cfg(test)]
pub(crate) use hook::Handle;
pub use hook::{Hook, Request};
pub use listen::{ListenError, Listener};
pub use metrics::{ActionKind, Counters, PerVassal};
pub use notify::{Notifier, READY_TIMEOUT, SERVICE_MANAGER_VARIABLES};
pub use server::{bind, serve, BindError, Context};
pub use stats::{serve_stats, StatsContext};
pub use status_http::{serve_http, StatusContext};
pub use table::{SourceView, State, Table, VassalCounts, VassalView};

use reconciler::VassalName;

/// What an operator can ask of one vassal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Start it again after a `stop`.
    Start,
    /// Stop it and keep it stopped (persisted) until `start`.
    Stop,
    /// Start a new process, with a fresh backoff.
    Restart,
    /// What a config change does: the running process reloads.
    Reload,
}

impl Action {
    /// The action named in a request path.
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "start" => Action::Start,
            "stop" => Action::Stop,
            "restart" => Action::Restart,
            "reload" => Action::Reload,
            _ => return None,
        })
    }

    /// Its name, as in a request path.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
            Action::Reload => "reload",
        }
    }
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No source wants a vassal of that name.
    #[error("no such vassal: {0}")]
    NoSuchVassal(VassalName),
    /// An operator stopped the vassal; only `start` applies.
    #[error("vassal {0} is stopped; start it first")]
    Stopped(VassalName),
    /// The operator's stop could not be made durable, so it was not done.
    #[error("cannot record the state of vassal {name}: {source}")]
    Store {
        /// The vassal.
        name: VassalName,
        /// What the store said.
        source: state::StateError,
    },
    /// The emperor is shutting down.
    #[error("the emperor is shutting down")]
    ShuttingDown,
}

/// What became of a command: a short sentence, or why it was not done.
pub type Reply = Result<String, CommandError>;
