//! The one retry policy of every source: exponential backoff from
//! [`MIN_DELAY`] doubling up to [`MAX_DELAY`], each delay lengthened by a
//! random jitter of up to [`JITTER_PERCENT`] so that the emperors of a fleet
//! do not all reconnect at the same instant after a server restart; one
//! warning per outage (not per retry) and one info line when the server
//! answers again. The source supervisor restarts a failed source with the
//! same policy.

use reconciler::SourceId;
use std::fmt::Display;
use std::time::{Duration, Instant};

/// First retry delay.
pub const MIN_DELAY: Duration = Duration::from_millis(200);
/// Longest retry delay.
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// The most a delay is lengthened by, in percent of it.
pub const JITTER_PERCENT: u64 = 20;

/// Delays between retries: [`MIN_DELAY`], doubling up to [`MAX_DELAY`],
/// plus jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    delay: Duration,
    /// Random per process and per backoff (std's hasher keys are random).
    jitter: std::collections::hash_map::RandomState,
    tries: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { delay: MIN_DELAY, jitter: std::collections::hash_map::RandomState::new(), tries: 0 }
    }
}

impl Backoff {
    /// The delay before the next retry (each call doubles the next one, up
    /// to the cap), lengthened by up to [`JITTER_PERCENT`].
    pub fn next_delay(&mut self) -> Duration {
        use std::hash::BuildHasher;
        let base = self.delay;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        self.tries += 1;
        let permille = self.jitter.hash_one(self.tries) % (JITTER_PERCENT * 10 + 1);
        base + base.mul_f64(permille as f64 / 1000.0)
    }

    /// Starts over from [`MIN_DELAY`] after a success.
    pub fn reset(&mut self) {
        self.delay = MIN_DELAY;
    }
}

/// Whether a source's server is reachable, and how long to wait before the
/// next try when it is not.
#[derive(Debug)]
pub struct Outage {
    source: SourceId,
    since: Option<Instant>,
    backoff: Backoff,
}

impl Outage {
    /// A source that has not failed yet.
    pub fn new(source: SourceId) -> Self {
        Self { source, since: None, backoff: Backoff::default() }
    }

    /// Whether an outage is going on.
    pub fn is_down(&self) -> bool {
        self.since.is_some()
    }

    /// Records a failure, described by `problem` (a whole phrase such as
    /// "the PostgreSQL connection failed"); warns on the first failure of an
    /// outage only. Returns how long to wait before retrying.
    pub fn failed(&mut self, problem: &str, error: &dyn Display) -> Duration {
        let delay = self.backoff.next_delay();
        if self.since.is_none() {
            self.since = Some(Instant::now());
            tracing::warn!(
                source = %self.source, error = %error,
                "{problem}; running vassals are kept, retrying with backoff (up to {}s)", MAX_DELAY.as_secs() * (100 + JITTER_PERCENT) / 100
            );
        } else {
            tracing::debug!(source = %self.source, error = %error, retry_in = ?delay, "{problem}; still retrying");
        }
        delay
    }

    /// Records a success; logs the recovery once when an outage ends.
    pub fn ok(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(source = %self.source, down_for = ?since.elapsed(), "source recovered");
        }
        self.backoff.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut o = Outage::new(SourceId("pg://x".into()));
        let delays: Vec<Duration> = (0..8).map(|_| o.failed("the query failed", &"boom")).collect();
        let within = |d: Duration, base: Duration| d >= base && d <= base.mul_f64(1.0 + JITTER_PERCENT as f64 / 100.0);
        assert!(within(delays[0], MIN_DELAY), "{delays:?}");
        assert!(within(delays[1], MIN_DELAY * 2), "{delays:?}");
        assert!(within(*delays.last().unwrap(), MAX_DELAY), "{delays:?}");
        o.ok();
        assert!(within(o.failed("the query failed", &"boom"), MIN_DELAY));
    }

    #[test]
    fn two_backoffs_do_not_retry_in_step() {
        let (mut a, mut b) = (Backoff::default(), Backoff::default());
        let a: Vec<Duration> = (0..8).map(|_| a.next_delay()).collect();
        let b: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert_ne!(a, b, "jitter spreads retries");
    }
}
