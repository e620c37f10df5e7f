//! Shared harness for the black-box tests: runs the real `emperor` binary
//! against `emperor-stub-vassal` in a private temp dir and reads back what the
//! stub recorded.
//!
//! * [`proc`]: what `/proc` says about a process;
//! * [`stub`]: the stub vassal's records;
//! * [`harness`]: the temp dir, the emperor runs in it, and their cleanup;
//! * [`scenarios`]: waits and assertions that several test files share.
//!
//! Every wait is a condition polled against a deadline ([`wait_until`]); the
//! [`Harness`] drop guard SIGKILLs the emperor and every process that carries
//! this harness's `STUB_RECORD`, and prints the emperor's log and the stub
//! records when the test is failing (or always, with `EMPEROR_TEST_DUMP=1`).
#![allow(dead_code, unused_imports, unsafe_code)]

pub mod harness;
pub mod proc;
pub mod scenarios;
pub mod stub;

pub use harness::*;
pub use proc::*;
pub use scenarios::*;
pub use stub::*;

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How long any single condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How often conditions are re-checked.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `check` every `every` until it returns `Some`; `None` once
/// `timeout` has passed (for callers that handle the timeout themselves).
pub fn poll_until<T>(timeout: Duration, every: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Polls `check` every `every` until it returns `Some`, panicking with `what`
/// once `timeout` has passed.
pub fn wait_every<T>(timeout: Duration, every: Duration, what: impl Display, check: impl FnMut() -> Option<T>) -> T {
    poll_until(timeout, every, check).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for: {what}"))
}

/// [`wait_every`] with the default poll interval.
pub fn wait_until<T>(timeout: Duration, what: impl Display, check: impl FnMut() -> Option<T>) -> T {
    wait_every(timeout, POLL, what, check)
}

/// Turns a bool condition into the `Option` form [`wait_until`] takes.
pub fn cond(ok: bool) -> Option<()> {
    ok.then_some(())
}
