//! One supervised process, and where it is in its life: running (perhaps
//! sending heartbeats) or stopping (with a SIGKILL deadline).
//!
//! [`ProcState`] is a pure state machine: the supervisor feeds it heartbeats,
//! stop requests and the clock, and sends the SIGKILL it asks for.

use super::launch::Launch;
use super::process::Handle;
use super::readiness::Readiness;
use reconciler::VassalSpec;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One running vassal process.
pub(super) struct Proc {
    pub(super) generation: u64,
    /// Our child (reaped by us) or an adopted process (reaped by init).
    pub(super) handle: Handle,
    pub(super) spec: VassalSpec,
    pub(super) launch: Launch,
    pub(super) control: Option<Arc<UnixStream>>,
    /// Its control channel's slot in the supervisor's channel set.
    pub(super) slot: Option<u32>,
    pub(super) config: Option<(UnixStream, Vec<u8>)>,
    pub(super) state: ProcState,
    /// Whether it is ready, and its status text.
    pub(super) readiness: Readiness,
    /// The task waiting for the exit of an adopted process (on its pidfd).
    pub(super) task: Option<tokio::task::JoinHandle<()>>,
}

impl Proc {
    /// Its process id.
    pub(super) fn pid(&self) -> i32 {
        self.handle.pid()
    }

    /// Its process id and start time (see [`Handle::identity`]).
    pub(super) fn identity(&self) -> (i32, Option<u64>) {
        self.handle.identity()
    }

    /// The watchdog interval of a native vassal that has one.
    pub(super) fn watchdog(&self) -> Option<Duration> {
        match &self.launch {
            Launch::Native(native) => native.readiness.watchdog,
            Launch::Uwsgi { .. } => None,
        }
    }

    /// The longest silence allowed once it sent a heartbeat: its watchdog,
    /// or the emperor's `--heartbeat-timeout`.
    pub(super) fn heartbeat_timeout(&self, default: Duration) -> Duration {
        self.watchdog().unwrap_or(default)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProcState {
    /// It runs; `heartbeat` is when it last sent one, if it ever did (from
    /// then on, a silence longer than the heartbeat timeout gets it killed).
    Running {
        /// Its last heartbeat.
        heartbeat: Option<Instant>,
    },
    /// It was asked to stop; at `deadline` it gets a SIGKILL, once.
    Stopping {
        /// When the grace period ends.
        deadline: Instant,
        /// Whether the SIGKILL was sent.
        killed: bool,
    },
}

/// Why a process must be killed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Overdue {
    /// It did not stop within its grace period.
    StopTimeout,
    /// It sent heartbeats, then stayed silent too long.
    MissedHeartbeat,
}

impl ProcState {
    /// A process just started or adopted.
    pub(super) const STARTED: Self = ProcState::Running { heartbeat: None };

    /// A process just started or adopted whose heartbeats are checked from
    /// `now` on (a native vassal's watchdog), not from its first one.
    pub(super) fn watched_from(now: Instant) -> Self {
        ProcState::Running { heartbeat: Some(now) }
    }

    /// Notes a heartbeat at `now`; `true` for a running process's first one.
    /// A stopping process's heartbeats do not matter any more.
    pub(super) fn heartbeat(&mut self, now: Instant) -> bool {
        match self {
            ProcState::Running { heartbeat } => heartbeat.replace(now).is_none(),
            ProcState::Stopping { .. } => false,
        }
    }

    /// Does not count `away`, time the emperor itself was not running, as
    /// silence: the heartbeat deadline moves back by as much.
    pub(super) fn excuse(&mut self, away: Duration) {
        if let ProcState::Running { heartbeat: Some(last) } = self {
            *last += away;
        }
    }

    /// Begins (or begins again) a stop whose grace period ends at `deadline`.
    pub(super) fn stop(&mut self, deadline: Instant) {
        *self = ProcState::Stopping { deadline, killed: false };
    }

    /// Whether the process was asked to stop.
    pub(super) fn is_stopping(&self) -> bool {
        matches!(self, ProcState::Stopping { .. })
    }

    /// When [`ProcState::check`] has something to do next, if ever.
    pub(super) fn deadline(&self, heartbeat_timeout: Duration) -> Option<Instant> {
        match *self {
            ProcState::Running { heartbeat } => heartbeat.map(|h| h + heartbeat_timeout),
            ProcState::Stopping { deadline, killed: false } => Some(deadline),
            ProcState::Stopping { killed: true, .. } => None,
        }
    }

    /// What is overdue at `now`; the state moves past it, so each kill is
    /// asked for once.
    pub(super) fn check(&mut self, now: Instant, heartbeat_timeout: Duration) -> Option<Overdue> {
        if self.deadline(heartbeat_timeout).is_none_or(|d| d > now) {
            return None;
        }
        match self {
            ProcState::Running { heartbeat } => {
                *heartbeat = None;
                Some(Overdue::MissedHeartbeat)
            }
            ProcState::Stopping { killed, .. } => {
                *killed = true;
                Some(Overdue::StopTimeout)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: Duration = Duration::from_secs(10);

    fn at(secs: u64, base: Instant) -> Instant {
        base + Duration::from_secs(secs)
    }

    #[test]
    fn a_quiet_process_has_no_deadline() {
        let mut s = ProcState::STARTED;
        let t0 = Instant::now();
        assert_eq!(s.deadline(HB), None);
        assert_eq!(s.check(at(1_000, t0), HB), None);
        assert!(!s.is_stopping());
    }

    #[test]
    fn heartbeats_arm_and_push_back_the_deadline() {
        let t0 = Instant::now();
        let mut s = ProcState::STARTED;
        assert!(s.heartbeat(t0), "the first heartbeat is reported");
        assert!(!s.heartbeat(at(5, t0)), "later ones are not");
        assert_eq!(s.deadline(HB), Some(at(15, t0)));
        assert_eq!(s.check(at(14, t0), HB), None);
    }

    #[test]
    fn a_missed_heartbeat_kills_once_and_disarms() {
        let t0 = Instant::now();
        let mut s = ProcState::STARTED;
        s.heartbeat(t0);
        assert_eq!(s.check(at(10, t0), HB), Some(Overdue::MissedHeartbeat));
        assert_eq!(s, ProcState::STARTED);
        assert_eq!(s.check(at(100, t0), HB), None);
        assert!(s.heartbeat(at(101, t0)), "a new heartbeat arms it again");
    }

    #[test]
    fn time_the_emperor_was_away_is_not_silence() {
        let t0 = Instant::now();
        let mut s = ProcState::STARTED;
        s.heartbeat(t0);
        s.excuse(Duration::from_secs(60));
        assert_eq!(s.check(at(65, t0), HB), None);
        assert_eq!(s.check(at(70, t0), HB), Some(Overdue::MissedHeartbeat));
        let mut quiet = ProcState::STARTED;
        quiet.excuse(Duration::from_secs(60));
        assert_eq!(quiet, ProcState::STARTED, "no heartbeat, no deadline");
    }

    #[test]
    fn a_stop_kills_once_at_its_deadline() {
        let t0 = Instant::now();
        let mut s = ProcState::STARTED;
        s.heartbeat(t0);
        s.stop(at(30, t0));
        assert!(s.is_stopping());
        assert_eq!(s.deadline(HB), Some(at(30, t0)), "the heartbeat no longer counts");
        assert_eq!(s.check(at(29, t0), HB), None);
        assert_eq!(s.check(at(30, t0), HB), Some(Overdue::StopTimeout));
        assert_eq!(s, ProcState::Stopping { deadline: at(30, t0), killed: true });
        assert_eq!(s.deadline(HB), None);
        assert_eq!(s.check(at(60, t0), HB), None, "killed once");
    }

    #[test]
    fn a_stopping_process_ignores_heartbeats() {
        let t0 = Instant::now();
        let mut s = ProcState::STARTED;
        s.stop(at(30, t0));
        assert!(!s.heartbeat(at(1, t0)));
        assert_eq!(s, ProcState::Stopping { deadline: at(30, t0), killed: false });
    }

    #[test]
    fn a_second_stop_rearms_the_deadline() {
        let t0 = Instant::now();
        let mut s = ProcState::STARTED;
        s.stop(at(30, t0));
        assert_eq!(s.check(at(30, t0), HB), Some(Overdue::StopTimeout));
        s.stop(at(60, t0));
        assert_eq!(s, ProcState::Stopping { deadline: at(60, t0), killed: false });
    }
}
