//! The records kept per vassal.

use reconciler::{SourceId, VassalName};
use serde::{Deserialize, Serialize};

/// How a vassal is run; recorded so a restarted emperor knows how to talk to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// The uWSGI byte protocol over a control socket.
    Uwsgi,
    /// A plain program, driven by signals.
    Native,
}

/// What the emperor knows of one vassal, written before and after each act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VassalRecord {
    /// The vassal's name.
    pub name: VassalName,
    /// The source that wants it.
    pub source: SourceId,
    /// The config version it runs (or is about to run).
    pub version: String,
    /// The generation of its current (or intended) process.
    pub generation: u64,
    /// How it is run.
    pub mode: Mode,
    /// Its process id, once spawned.
    pub pid: Option<i32>,
    /// Its process start time (`/proc/PID/stat` field 22), pairing with `pid`
    /// to identify the process even if the pid is reused.
    pub start_time: Option<u64>,
    /// What the emperor means to do with it.
    pub intent: Intent,
}

/// The act in progress for a vassal; a crash mid-act is finished on restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Intent {
    /// About to spawn (pid not yet known) or running.
    Run,
    /// Being stopped.
    Stop,
}
