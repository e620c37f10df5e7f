//! CLOCK_MONOTONIC as a number: the one clock every process of the machine
//! shares, so that a deadline computed by the emperor means the same moment
//! to its fd holder.

use std::time::{Duration, Instant};

/// Nanoseconds of CLOCK_MONOTONIC now.
pub fn monotonic_ns() -> u64 {
    now_ns(libc::CLOCK_MONOTONIC)
}

/// Nanoseconds of CLOCK_BOOTTIME now (the clock of process start times).
pub fn boottime_ns() -> u64 {
    now_ns(libc::CLOCK_BOOTTIME)
}

/// Nanoseconds of `clock` now.
fn now_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live timespec the call fills in; both clocks used
    // here exist on every kernel the emperor runs on (CLOCK_BOOTTIME since
    // Linux 2.6.39).
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `at` (a std `Instant`, itself CLOCK_MONOTONIC on Linux) in nanoseconds
/// of CLOCK_MONOTONIC; a past instant maps to now.
pub fn monotonic_ns_at(at: Instant) -> u64 {
    let now = Instant::now();
    let ahead = at.saturating_duration_since(now);
    monotonic_ns() + ahead.as_nanos() as u64
}

/// How long until CLOCK_MONOTONIC reaches `deadline_ns` (zero once past).
pub fn until_ns(deadline_ns: u64) -> Duration {
    Duration::from_nanos(deadline_ns.saturating_sub(monotonic_ns()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_map_onto_the_shared_clock() {
        let before = monotonic_ns();
        let at = monotonic_ns_at(Instant::now() + Duration::from_secs(5));
        assert!(at >= before + 4_900_000_000 && at <= monotonic_ns() + 5_000_000_000);
        assert!(until_ns(before) == Duration::ZERO);
    }
}
