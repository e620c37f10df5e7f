//! The timeouts of a singleton's lease, and the rules that keep them safe.
//!
//! With `L` the lease, `R` the renew period, `D` the renew deadline, `M`
//! the safety margin and `Δ` the start delay: the holder renews every `R`
//! (± 20 %), sends SIGTERM at `confirmed + D` and SIGKILL at
//! `confirmed + L − M`, where `confirmed` is the local *send* time of the
//! last renewal the store confirmed; a new holder starts the vassal `Δ`
//! after it acquired the expired lease. The kill grace `K = L − M − D` is
//! what the vassal has between the two signals.

use std::time::Duration;

/// The jitter on the renew period, as a fraction of it.
pub const JITTER: f64 = 0.2;

/// The lease timeouts, checked: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// `L`: how long the store keeps a lease after its last renewal.
    pub lease: Duration,
    /// `R`: how often the holder renews (and a candidate tries to acquire).
    pub renew: Duration,
    /// `D`: how long after the last confirmed renewal the holder stops the vassal.
    pub deadline: Duration,
    /// `M`: how long before the lease can expire the vassal is dead.
    pub margin: Duration,
    /// `Δ`: how long a new holder waits after acquiring before it starts the vassal.
    pub delay: Duration,
}

/// Why a combination of lease timeouts is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimingError {
    /// The renew period is too long for the lease.
    #[error("--lease-renew ({renew:?}) must be at most a quarter of --lease ({lease:?})")]
    RenewTooLong {
        /// R.
        renew: Duration,
        /// L.
        lease: Duration,
    },
    /// The renew deadline leaves no room for a retry with jitter.
    #[error("--lease-deadline ({deadline:?}) must be more than 1.2 × --lease-renew ({renew:?})")]
    DeadlineTooShort {
        /// D.
        deadline: Duration,
        /// R.
        renew: Duration,
    },
    /// SIGTERM, the kill grace and the margin do not fit in the lease.
    #[error("--lease-deadline ({deadline:?}) + --lease-margin ({margin:?}) must be less than --lease ({lease:?}), leaving a kill grace")]
    NoKillGrace {
        /// D.
        deadline: Duration,
        /// M.
        margin: Duration,
        /// L.
        lease: Duration,
    },
    /// A timeout of zero.
    #[error("{what} must be more than 0")]
    Zero {
        /// The option.
        what: &'static str,
    },
}

impl Timing {
    /// The default timeouts: L = 15 s, R = 3 s, D = 10 s, M = 2 s, Δ = 1 s.
    pub fn default_for(lease: Duration) -> Self {
        let part = |num: u32, den: u32| lease * num / den;
        Self { lease, renew: part(1, 5), deadline: part(2, 3), margin: part(2, 15), delay: part(1, 15) }
    }

    /// The timeouts for `lease`, each other one given or derived in
    /// proportion to it (as the defaults are to 15 s); refused when they
    /// break a rule, as client-go's leader election does.
    pub fn new(
        lease: Duration,
        renew: Option<Duration>,
        deadline: Option<Duration>,
        margin: Option<Duration>,
        delay: Option<Duration>,
    ) -> Result<Self, TimingError> {
        let derived = Self::default_for(lease);
        let timing = Self {
            lease,
            renew: renew.unwrap_or(derived.renew),
            deadline: deadline.unwrap_or(derived.deadline),
            margin: margin.unwrap_or(derived.margin),
            delay: delay.unwrap_or(derived.delay),
        };
        timing.check()?;
        Ok(timing)
    }

    fn check(&self) -> Result<(), TimingError> {
        for (what, value) in
            [("--lease", self.lease), ("--lease-renew", self.renew), ("--lease-deadline", self.deadline)]
        {
            if value.is_zero() {
                return Err(TimingError::Zero { what });
            }
        }
        if self.renew * 4 > self.lease {
            return Err(TimingError::RenewTooLong { renew: self.renew, lease: self.lease });
        }
        if self.renew.mul_f64(1.0 + JITTER) >= self.deadline {
            return Err(TimingError::DeadlineTooShort { deadline: self.deadline, renew: self.renew });
        }
        if self.deadline + self.margin >= self.lease {
            return Err(TimingError::NoKillGrace { deadline: self.deadline, margin: self.margin, lease: self.lease });
        }
        Ok(())
    }

    /// `K`: between SIGTERM and SIGKILL.
    pub fn kill_grace(&self) -> Duration {
        self.lease - self.margin - self.deadline
    }

    /// `L − M`: from a confirmed renewal's send time to the SIGKILL.
    pub fn kill_after(&self) -> Duration {
        self.lease - self.margin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let t = Timing::new(S(15), None, None, None, None).unwrap();
        assert_eq!((t.lease, t.renew, t.deadline, t.margin, t.delay), (S(15), S(3), S(10), S(2), S(1)));
        assert_eq!((t.kill_grace(), t.kill_after()), (S(3), S(13)));
        let short = Timing::new(S(6), None, None, None, None).unwrap();
        assert_eq!(short.renew, Duration::from_millis(1200));
        assert_eq!(short.deadline, S(4));
    }

    #[test]
    fn bad_combinations_are_refused() {
        let err = |r, d, m| Timing::new(S(15), r, d, m, None).unwrap_err();
        assert!(matches!(err(Some(S(5)), None, None), TimingError::RenewTooLong { .. }));
        assert!(matches!(err(None, Some(S(3)), None), TimingError::DeadlineTooShort { .. }));
        assert!(matches!(err(None, Some(S(13)), None), TimingError::NoKillGrace { .. }));
        assert!(matches!(err(None, None, Some(S(5))), TimingError::NoKillGrace { .. }));
        assert!(matches!(err(Some(S(0)), None, None), TimingError::Zero { what: "--lease-renew" }));
        assert!(err(Some(S(5)), None, None).to_string().contains("quarter of --lease"));
    }
}
