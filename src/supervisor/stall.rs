//! Noticing that the emperor itself was not running (stopped with SIGSTOP,
//! starved of CPU, suspended with its machine), so that heartbeat silences
//! are judged only over time the emperor was awake to hear them.
//!
//! While any vassal has a deadline, the supervisor wakes at least every
//! [`StallClock::pulse`]; a wake-up much later than that means the emperor
//! was away, and the time since its last wake-up is not counted against the
//! vassals (their heartbeats may be waiting, unread, in its sockets).

use std::time::{Duration, Instant};

/// The shortest pulse: a tiny heartbeat timeout must not make the
/// supervisor spin.
const MIN_PULSE: Duration = Duration::from_millis(50);

/// The supervisor's own wake-ups; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct StallClock {
    /// The last wake-up, when deadlines were armed then.
    awake_at: Option<Instant>,
}

impl StallClock {
    /// The longest the supervisor sleeps while deadlines are armed (never
    /// under [`MIN_PULSE`], whatever the timeout).
    pub(super) fn pulse(heartbeat_timeout: Duration) -> Duration {
        (heartbeat_timeout / 4).max(MIN_PULSE)
    }

    /// When the supervisor must wake next to keep its pulse, if it must.
    pub(super) fn next_pulse(&self, heartbeat_timeout: Duration) -> Option<Instant> {
        self.awake_at.and_then(|at| at.checked_add(Self::pulse(heartbeat_timeout)))
    }

    /// Notes a wake-up at `now`; `armed` tells whether deadlines run from
    /// now on. Returns how long the emperor was away, when it was (a gap
    /// over twice the pulse since the last wake-up with deadlines armed).
    pub(super) fn woke(&mut self, now: Instant, armed: bool, heartbeat_timeout: Duration) -> Option<Duration> {
        let gap = self.awake_at.map(|at| now.saturating_duration_since(at));
        self.awake_at = armed.then_some(now);
        gap.filter(|gap| *gap > 2 * Self::pulse(heartbeat_timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: Duration = Duration::from_secs(8);

    #[test]
    fn regular_wakeups_are_no_stall() {
        let t0 = Instant::now();
        let mut clock = StallClock::default();
        assert_eq!(clock.woke(t0, true, HB), None);
        assert_eq!(clock.next_pulse(HB), Some(t0 + Duration::from_secs(2)));
        assert_eq!(clock.woke(t0 + Duration::from_secs(2), true, HB), None);
        assert_eq!(clock.woke(t0 + Duration::from_secs(6), true, HB), None, "within twice the pulse");
    }

    #[test]
    fn a_late_wakeup_reports_the_time_away() {
        let t0 = Instant::now();
        let mut clock = StallClock::default();
        clock.woke(t0, true, HB);
        assert_eq!(clock.woke(t0 + Duration::from_secs(30), true, HB), Some(Duration::from_secs(30)));
        assert_eq!(clock.woke(t0 + Duration::from_secs(31), true, HB), None, "reported once");
    }

    #[test]
    fn the_pulse_has_a_floor_and_no_overflow() {
        assert_eq!(StallClock::pulse(Duration::ZERO), MIN_PULSE);
        let mut clock = StallClock::default();
        let t0 = Instant::now();
        clock.woke(t0, true, Duration::MAX);
        assert!(clock.next_pulse(Duration::MAX).is_none_or(|at| at > t0), "no panic, no pulse in the past");
        assert_eq!(clock.woke(t0 + Duration::from_secs(3600), true, Duration::MAX), None);
    }

    #[test]
    fn idle_time_without_deadlines_is_no_stall() {
        let t0 = Instant::now();
        let mut clock = StallClock::default();
        clock.woke(t0, false, HB);
        assert_eq!(clock.next_pulse(HB), None, "nothing to keep a pulse for");
        assert_eq!(clock.woke(t0 + Duration::from_secs(600), true, HB), None);
    }
}
