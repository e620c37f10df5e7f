//! What the supervisor can tell an operator about one vassal's process:
//! its pid, how its last process ended, why its last start failed.

use super::Supervisor;
use crate::sys::{self, wait::Exit};
use reconciler::{StartError, VassalName};
use serde::Serialize;
use std::time::SystemTime;

/// How a vassal's last process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LastExit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it (the signal number).
    Signal(i32),
    /// It ended, but its status is unknown: a re-adopted process is not our
    /// child, so init reaps it.
    Unknown,
}

impl std::fmt::Display for LastExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LastExit::Code(code) => write!(f, "code {code}"),
            LastExit::Signal(signal) => write!(f, "signal {}", sys::signal::name(*signal)),
            LastExit::Unknown => f.write_str("unknown"),
        }
    }
}

impl From<Option<Exit>> for LastExit {
    fn from(exit: Option<Exit>) -> Self {
        match exit {
            Some(Exit::Code(code)) => LastExit::Code(code),
            Some(Exit::Signal(signal)) => LastExit::Signal(signal),
            None => LastExit::Unknown,
        }
    }
}

/// One vassal's process as the supervisor sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcStatus {
    /// The pid of its current process, if one runs.
    pub pid: Option<i32>,
    /// How its last process ended, if one did since the emperor started.
    pub last_exit: Option<LastExit>,
    /// Why its last start failed, if it did.
    pub start_error: Option<String>,
    /// Whether that start is held for a cause that passes (no durable
    /// intent, no fds or processes to spare) and retried with backoff,
    /// rather than failed.
    pub held: bool,
    /// The address an on-demand vassal without a process waits on.
    pub waiting_on: Option<String>,
    /// Whether its process is ready (see the readiness of each run mode in
    /// the README): what `--wait` and rolling restarts wait for.
    pub ready: bool,
    /// Since when its process is ready.
    pub since_ready: Option<SystemTime>,
    /// The last `STATUS=` its process sent (native vassals).
    pub status_text: Option<String>,
}

impl Supervisor {
    /// What the supervisor knows of `name`'s process.
    pub fn status(&self, name: &VassalName) -> ProcStatus {
        let proc = self.procs.get(name);
        let since_ready = proc.and_then(|p| p.readiness.since());
        ProcStatus {
            pid: proc.map(|p| p.pid()),
            last_exit: self.last_exits.get(name).copied(),
            start_error: self.start_errors.get(name).cloned(),
            held: self.is_held(name),
            waiting_on: self.waiting_on(name),
            ready: since_ready.is_some(),
            since_ready,
            status_text: proc.and_then(|p| p.readiness.status()).map(str::to_owned),
        }
    }

    /// Remembers how `name`'s process ended.
    pub(super) fn note_exit(&mut self, name: &VassalName, exit: LastExit) {
        self.last_exits.insert(name.clone(), exit);
    }

    /// Remembers why a start of `name` failed, or forgets it after a
    /// success. A hold ends once a process runs: an on-demand vassal that
    /// waits for a connection again is still held should its next spawn
    /// fail for the same cause, and that is not said again.
    pub(super) fn note_start(&mut self, name: &VassalName, result: &Result<(), StartError>) {
        match result {
            Ok(()) => {
                if self.procs.contains_key(name) {
                    self.held_starts.remove(name);
                }
                self.start_errors.remove(name);
            }
            Err(e) => {
                self.start_errors.insert(name.clone(), e.to_string());
            }
        }
    }
}
