//! How many vassals are in each state, and the lines that print it.

use super::table::{State, VassalView};
use serde::{Deserialize, Serialize};

/// How many vassals are in each state: what `ctl list`'s footer prints, the
/// `STATUS=` the service manager shows, the log's summary line, and what a
/// source may publish (a `zoo://` registration node).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VassalCounts {
    /// Vassals whose process runs and is ready.
    pub running: usize,
    /// On-demand vassals waiting for a connection, without a process.
    #[serde(default)]
    pub waiting: usize,
    /// Vassals whose process runs but is not ready yet.
    #[serde(default)]
    pub starting: usize,
    /// Vassals asked to stop that have not exited yet.
    pub stopping: usize,
    /// Vassals backing off before their respawn.
    pub crashed: usize,
    /// Vassals whose config cannot be used.
    pub held: usize,
    /// Vassals an operator stopped.
    pub stopped: usize,
    /// Singletons this emperor does not run (another one of the fleet may);
    /// left out of the serialized counts when 0, as before singletons.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub standby: usize,
}

impl VassalCounts {
    /// The counts of these vassals.
    pub fn of<'a>(views: impl IntoIterator<Item = &'a VassalView>) -> Self {
        let mut counts = Self::default();
        for view in views {
            *counts.slot(view.state) += 1;
        }
        counts
    }

    /// Every vassal counted.
    pub fn total(&self) -> usize {
        self.running
            + self.waiting
            + self.starting
            + self.stopping
            + self.crashed
            + self.held
            + self.stopped
            + self.standby
    }

    fn slot(&mut self, state: State) -> &mut usize {
        match state {
            State::Running => &mut self.running,
            State::Waiting => &mut self.waiting,
            State::Starting => &mut self.starting,
            State::Stopping => &mut self.stopping,
            State::Crashed => &mut self.crashed,
            State::Held => &mut self.held,
            State::Stopped => &mut self.stopped,
            State::Standby => &mut self.standby,
        }
    }

    /// The log's summary line: only the states some vassal is in, and how
    /// many running vassals were re-adopted from a previous emperor.
    pub fn summary(&self, adopted: usize) -> String {
        let mut parts = Vec::new();
        if self.running > 0 || adopted > 0 {
            let adopted = if adopted > 0 { format!(" ({adopted} re-adopted)") } else { String::new() };
            parts.push(format!("{} running{adopted}", self.running));
        }
        let rest = [
            (self.waiting, "waiting for a connection"),
            (self.starting, "starting"),
            (self.crashed, "crashed (backing off)"),
            (self.held, "held"),
            (self.stopped, "stopped"),
            (self.standby, "standby"),
            (self.stopping, "stopping"),
        ];
        parts.extend(rest.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")));
        match parts.is_empty() {
            true => format!("{} vassals", self.total()),
            false => format!("{} vassals: {}", self.total(), parts.join(", ")),
        }
    }
}

/// `N vassals: R running, C crashed (backing off), H held, S stopped`, then
/// `, W waiting` while on-demand vassals wait for a connection, `, S
/// starting` while some are starting, `, B standby` while singletons wait
/// on another emperor's lease and `, T stopping` while some are stopping.
impl std::fmt::Display for VassalCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} vassals: {} running, {} crashed (backing off), {} held, {} stopped",
            self.total(),
            self.running,
            self.crashed,
            self.held,
            self.stopped
        )?;
        if self.waiting > 0 {
            write!(f, ", {} waiting", self.waiting)?;
        }
        if self.starting > 0 {
            write!(f, ", {} starting", self.starting)?;
        }
        if self.standby > 0 {
            write!(f, ", {} standby", self.standby)?;
        }
        if self.stopping > 0 {
            write!(f, ", {} stopping", self.stopping)?;
        }
        Ok(())
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
