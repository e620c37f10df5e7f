//! File descriptors kept for the emperor itself: a start goes ahead only
//! while, after it, enough fds would be left for the sources, the control
//! socket and the log files. When the fd limit is reached, it is vassal
//! starts that wait (and are retried), never the emperor's own work.

use std::fs::File;
use std::time::{Duration, Instant};

/// Fds that must stay free for the emperor's own needs.
pub(super) const RESERVE: usize = 32;
/// The most fds one start takes (log file, two channel pairs, copies for
/// the fd holder, the spawn's own).
const PER_START: usize = 10;

/// How many starts one probe may vouch for during a burst of starts: it
/// checks that the fds of this many starts are free besides the reserve,
/// and the starts that follow it closely go ahead without a probe of their
/// own (a probe costs two system calls per fd, a large share of a start's
/// CPU). A lone start probes for itself alone.
const VOUCHED: usize = 16;

/// How long a probe vouches for the starts that follow it: the starts of
/// one round, not the fds the emperor may open later.
const VOUCHED_FOR: Duration = Duration::from_millis(50);

/// The probe; see the module docs.
#[derive(Debug)]
pub(super) struct FdReserve {
    /// An open `/dev/null`, duplicated to count free fds.
    probe: Option<File>,
    /// Starts the last probe vouched for that have not happened yet, and
    /// until when it vouches for them (and a start is part of a burst).
    vouched: (usize, Instant),
}

impl FdReserve {
    /// A probe on `/dev/null` (no check at all if it cannot be opened).
    pub(super) fn new() -> Self {
        Self { probe: File::open("/dev/null").ok(), vouched: (0, Instant::now()) }
    }

    /// Whether a start may go ahead: `RESERVE + PER_START` fds can be
    /// opened now (or could be when a recent probe vouched for this start).
    pub(super) fn check(&mut self) -> Result<(), String> {
        let Some(probe) = &self.probe else { return Ok(()) };
        let now = Instant::now();
        let burst = now < self.vouched.1;
        if burst && self.vouched.0 > 0 {
            self.vouched.0 -= 1;
            return Ok(());
        }
        let free = match Self::free(probe, RESERVE + PER_START * if burst { VOUCHED } else { 1 }) {
            Ok(free) => free,
            Err((free, e)) if free < RESERVE + PER_START => {
                return Err(format!(
                    "too few file descriptors left ({e}): {free} free, a start needs {PER_START} and the emperor keeps {RESERVE} for its sources, control socket and logs; raise RLIMIT_NOFILE"
                ))
            }
            Err((free, _)) => free,
        };
        self.vouched = ((free - RESERVE) / PER_START - 1, now + VOUCHED_FOR);
        Ok(())
    }

    /// How many fds could be opened, `wanted` at most (the copies are
    /// closed again at once); short of `wanted`, with the error that
    /// stopped the count.
    fn free(probe: &File, wanted: usize) -> Result<usize, (usize, std::io::Error)> {
        let mut copies = Vec::with_capacity(wanted);
        while copies.len() < wanted {
            match probe.try_clone() {
                Ok(copy) => copies.push(copy),
                Err(e) => return Err((copies.len(), e)),
            }
        }
        Ok(wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_with_fds_to_spare_may_start_vassals() {
        assert_eq!(FdReserve::new().check(), Ok(()));
        let mut unchecked = FdReserve { probe: None, vouched: (0, Instant::now()) };
        assert_eq!(unchecked.check(), Ok(()), "no probe, no check");
    }

    #[test]
    fn a_probe_vouches_for_the_starts_that_closely_follow_it() {
        let mut reserve = FdReserve::new();
        reserve.check().unwrap();
        assert_eq!(reserve.vouched.0, 0, "a lone start probes for itself");
        reserve.check().unwrap();
        assert_eq!(reserve.vouched.0, VOUCHED - 1, "the next one, close after it, for a burst");
        for left in (0..VOUCHED - 1).rev() {
            reserve.check().unwrap();
            assert_eq!(reserve.vouched.0, left);
        }
        reserve.check().unwrap();
        assert_eq!(reserve.vouched.0, VOUCHED - 1, "a new probe once they are used up");
        reserve.vouched.1 = Instant::now();
        reserve.check().unwrap();
        assert_eq!(reserve.vouched.0, 0, "a lone start again once its time is up");
    }
}
