//! Respawn throttling as a plain value: exponential, capped, reset by a
//! healthy run.

/// The throttling policy shared by every vassal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Delay after the second consecutive quick failure (the first respawns at once), in ms.
    pub min_ms: u64,
    /// Longest delay, in ms.
    pub max_ms: u64,
    /// A run at least this long (ms) counts as healthy and forgets earlier failures.
    pub reset_after_ms: u64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self { min_ms: 1_000, max_ms: 60_000, reset_after_ms: 10_000 }
    }
}

/// One vassal's throttling state: how many quick failures in a row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Records an exit after `uptime_ms` of running and returns how long to
    /// wait before the next start.
    ///
    /// The first failure after a healthy run respawns at once; each further
    /// quick failure doubles the delay from `min_ms` up to `max_ms`.
    pub fn on_exit(&mut self, policy: &BackoffPolicy, uptime_ms: u64) -> u64 {
        if uptime_ms >= policy.reset_after_ms {
            self.reset();
        }
        self.failures = self.failures.saturating_add(1);
        self.delay(policy)
    }

    /// The delay that the current failure count calls for.
    pub fn delay(&self, policy: &BackoffPolicy) -> u64 {
        match self.failures {
            0 | 1 => 0,
            n => {
                let shift = (n - 2).min(32);
                policy.min_ms.saturating_mul(1u64 << shift).min(policy.max_ms)
            }
        }
    }

    /// Forgets every failure (after a healthy run or an operator's restart).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Quick failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: BackoffPolicy = BackoffPolicy { min_ms: 100, max_ms: 1_000, reset_after_ms: 5_000 };

    #[test]
    fn first_failure_respawns_at_once_then_doubles_up_to_the_cap() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..7).map(|_| b.on_exit(&P, 10)).collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn a_healthy_run_resets() {
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.on_exit(&P, 10);
        }
        assert_eq!(b.on_exit(&P, 5_000), 0);
        assert_eq!(b.failures(), 1);
        assert_eq!(b.on_exit(&P, 1), 100);
    }

    #[test]
    fn many_failures_never_overflow() {
        let mut b = Backoff::default();
        for _ in 0..1_000 {
            assert!(b.on_exit(&P, 0) <= P.max_ms);
        }
    }

    #[test]
    fn reset_forgets() {
        let mut b = Backoff::default();
        b.on_exit(&P, 0);
        b.on_exit(&P, 0);
        b.reset();
        assert_eq!(b.delay(&P), 0);
    }
}
