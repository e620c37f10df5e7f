//! When the main loop must hear that what the supervisor tells operators
//! changed, though no process exited: at once for a change of readiness
//! (rolling restarts and `--wait` wait on it), at most once a second for
//! status texts only, so that vassals rewriting their `STATUS=` often do not
//! make the loop rebuild its table for every one of them.

use std::time::{Duration, Instant};

/// The shortest time between two wake-ups for status texts alone.
pub(super) const STATUS_EVERY: Duration = Duration::from_secs(1);

/// What changed since the main loop last heard from the supervisor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct News {
    /// A vassal's readiness changed.
    readiness: bool,
    /// Only a status text changed.
    status: bool,
    /// When the main loop last heard from the supervisor.
    told: Option<Instant>,
}

impl News {
    /// A vassal's readiness changed.
    pub(super) fn readiness(&mut self) {
        self.readiness = true;
    }

    /// A vassal's status text changed.
    pub(super) fn status(&mut self) {
        self.status = true;
    }

    /// The main loop hears from the supervisor at `now` (an exit, or
    /// [`due`](Self::due)); it publishes everything then.
    pub(super) fn told(&mut self, now: Instant) {
        *self = Self { told: Some(now), ..Self::default() };
    }

    /// When a status text alone is due to be told, if one waits (and the
    /// main loop was told anything before: else it is due at once).
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.told.filter(|_| self.status).map(|told| told + STATUS_EVERY)
    }

    /// Whether the main loop must hear now; if so, it counts as told.
    pub(super) fn due(&mut self, now: Instant) -> bool {
        let status_due = self.status && self.deadline().is_none_or(|at| at <= now);
        let due = self.readiness || status_due;
        if due {
            self.told(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_is_told_at_once_and_status_texts_once_a_second() {
        let t0 = Instant::now();
        let mut news = News::default();
        assert!(!news.due(t0));
        news.status();
        assert!(news.due(t0), "the first status is told at once");
        assert_eq!(news.deadline(), None);
        news.status();
        assert_eq!(news.deadline(), Some(t0 + STATUS_EVERY));
        assert!(!news.due(t0 + STATUS_EVERY / 2));
        news.readiness();
        assert!(news.due(t0 + STATUS_EVERY / 2), "readiness does not wait");
        assert_eq!(news.deadline(), None, "the status went with it");
        news.status();
        assert!(news.due(t0 + STATUS_EVERY * 2));
        assert!(!news.due(t0 + STATUS_EVERY * 3), "nothing new");
    }
}
