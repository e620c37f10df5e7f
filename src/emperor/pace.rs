//! The pace of the rounds that start vassals: how many starts a round is
//! offered, and when it must stop making them.
//!
//! The main loop serves nothing else while a round runs: not a source's new
//! config, not an exit, not an operator's command. A round that starts
//! thousands of vassals is therefore cut into short rounds, bounded by time
//! ([`ROUND_TIME`]) as well as by count ([`ROUND_STARTS`]): the count a round
//! is offered follows the measured cost of a start, so that the starts it
//! admits fit in its time; and once the time is spent, or a stop signal has
//! arrived, it makes no further start. A round that records intents for the
//! backlog records them for [`ROUND_STARTS`] starts all the same, whatever it
//! makes: the rounds that follow make the rest without a flush of their own.

use crate::sys::signal::StopFlag;
use std::time::Duration;
use tokio::time::Instant;

/// The time one round may spend starting vassals. A change that arrives
/// during a large start waits about this long, plus its own round.
const ROUND_TIME: Duration = Duration::from_millis(20);

/// The most starts one round makes, however cheap they are.
const ROUND_STARTS: usize = 64;

/// How long the rounds of a large start may go without a commit of the
/// journal: between two commits only their own starts happened, whose
/// intents were made durable before them, so the commit (the events it
/// releases, the pids recorded) can wait this long. Each commit offers a
/// status table, which `control::hook` builds less often while starts are
/// held back (each build is O(N)).
const COMMIT_EVERY: Duration = Duration::from_millis(100);

/// How much of the last round's measured cost per start goes into the
/// estimate (the rest is the estimate so far), in quarters: a single slow
/// round does not shrink the next ones to one start.
const NEW_QUARTERS: u32 = 2;

/// The pace of the rounds; see the module docs.
#[derive(Debug)]
pub(super) struct Pace {
    /// The time a round may spend.
    time: Duration,
    /// The most starts a round is offered.
    most: usize,
    /// The estimated cost of one start (with its share of the round).
    per_start: Option<Duration>,
    /// When the round in progress began.
    began: Instant,
    /// Starts the round in progress has made so far.
    made: usize,
    /// Raised by a stop signal's handler: no further start.
    stop: StopFlag,
    /// When the journal was last committed.
    committed: Instant,
}

impl Default for Pace {
    fn default() -> Self {
        Self::new(ROUND_TIME, ROUND_STARTS)
    }
}

impl Pace {
    /// Rounds of at most `time` and at most `most` starts.
    pub(super) fn new(time: Duration, most: usize) -> Self {
        Self {
            time,
            most: most.max(1),
            per_start: None,
            began: Instant::now(),
            made: 0,
            stop: StopFlag::default(),
            committed: Instant::now(),
        }
    }

    /// The flag that ends every round at once (see [`Pace::may_start`]).
    pub(super) fn stop_flag(&self) -> &StopFlag {
        &self.stop
    }

    /// How many starts the next round is offered: as many as its time holds
    /// at the estimated cost of one, at least one and at most the maximum.
    pub(super) fn round_starts(&self) -> usize {
        match self.per_start {
            Some(cost) if !cost.is_zero() => {
                let fit = self.time.as_nanos() / cost.as_nanos();
                usize::try_from(fit).unwrap_or(usize::MAX).clamp(1, self.most)
            }
            _ => self.most,
        }
    }

    /// How many starts a round that records intents announces in all (see
    /// [`reconciler::Controller::set_intent_batch`]): the most a round makes,
    /// so that a large start flushes its intents once per that many starts.
    pub(super) fn intent_batch(&self) -> usize {
        self.most
    }

    /// A round begins at `now`.
    pub(super) fn begin(&mut self, now: Instant) {
        self.began = now;
        self.made = 0;
    }

    /// Whether the round may make one more start at `now`: never once a stop
    /// was asked for; otherwise while its time lasts, and always its first
    /// start (however long recording the intents took, each round makes
    /// progress).
    pub(super) fn may_start(&mut self, now: Instant) -> bool {
        if self.stop.is_raised() {
            return false;
        }
        let go = self.made == 0 || now.saturating_duration_since(self.began) < self.time;
        if go {
            self.made += 1;
        }
        go
    }

    /// Whether a round that only went on with a large start must commit
    /// the journal at `now` all the same: once [`COMMIT_EVERY`] has passed
    /// since the last commit.
    pub(super) fn commit_due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.committed) >= COMMIT_EVERY
    }

    /// The journal was committed at `now`.
    pub(super) fn committed(&mut self, now: Instant) {
        self.committed = now;
    }

    /// The round ends at `now`: its cost per start updates the estimate.
    pub(super) fn end(&mut self, now: Instant) {
        if self.made == 0 {
            return;
        }
        let made = u32::try_from(self.made).unwrap_or(u32::MAX);
        let cost = now.saturating_duration_since(self.began) / made;
        self.per_start = Some(match self.per_start {
            Some(old) => (old * (4 - NEW_QUARTERS) + cost * NEW_QUARTERS) / 4,
            None => cost,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A round at `t0` that makes `starts` starts of `each` apiece, as many
    /// as the pace lets it; returns how many it made.
    fn round(pace: &mut Pace, t0: Instant, starts: usize, each: Duration) -> usize {
        pace.begin(t0);
        let mut now = t0;
        let mut made = 0;
        for _ in 0..starts {
            if !pace.may_start(now) {
                break;
            }
            now += each;
            made += 1;
        }
        pace.end(now);
        made
    }

    #[test]
    fn a_round_stops_starting_once_its_time_is_spent() {
        let mut pace = Pace::new(20 * MS, 64);
        assert_eq!(pace.round_starts(), 64, "no estimate yet: the most");
        assert_eq!(round(&mut pace, Instant::now(), 64, 3 * MS), 7, "0, 3, ... 18 ms: seven starts begin within 20 ms");
    }

    #[test]
    fn the_count_offered_follows_the_cost_of_a_start() {
        let mut pace = Pace::new(20 * MS, 64);
        let t0 = Instant::now();
        round(&mut pace, t0, 64, 4 * MS);
        assert_eq!(pace.round_starts(), 5, "20 ms at 4 ms a start");
        for _ in 0..20 {
            round(&mut pace, t0, 64, Duration::from_micros(100));
        }
        assert_eq!(pace.round_starts(), 64, "cheap starts: the most, not 200");
        round(&mut pace, t0, 64, 200 * MS);
        assert!(pace.round_starts() >= 1, "one very slow start: still at least one");
    }

    #[test]
    fn a_round_makes_its_first_start_even_late() {
        let mut pace = Pace::new(20 * MS, 64);
        let t0 = Instant::now();
        pace.begin(t0);
        assert!(pace.may_start(t0 + 50 * MS), "the first start of a round that spent its time on intents");
        assert!(!pace.may_start(t0 + 50 * MS));
    }

    #[test]
    fn no_start_once_a_stop_was_asked_for() {
        let mut pace = Pace::default();
        let t0 = Instant::now();
        pace.begin(t0);
        assert!(pace.may_start(t0));
        pace.stop_flag().clone().raise();
        assert!(!pace.may_start(t0), "not even within the round's time");
        pace.begin(t0);
        assert!(!pace.may_start(t0), "nor the first start of a round");
    }

    #[test]
    fn a_commit_is_due_once_its_interval_has_passed() {
        let mut pace = Pace::default();
        let t0 = Instant::now();
        pace.committed(t0);
        assert!(!pace.commit_due(t0 + 99 * MS));
        assert!(pace.commit_due(t0 + COMMIT_EVERY));
        pace.committed(t0 + COMMIT_EVERY);
        assert!(!pace.commit_due(t0 + COMMIT_EVERY + MS));
    }

    #[test]
    fn a_round_without_starts_leaves_the_estimate() {
        let mut pace = Pace::new(20 * MS, 64);
        let t0 = Instant::now();
        round(&mut pace, t0, 64, 2 * MS);
        let offered = pace.round_starts();
        pace.begin(t0);
        pace.end(t0 + 100 * MS);
        assert_eq!(pace.round_starts(), offered);
    }
}
