//! The fd holder's watchdog over singleton vassals.
//!
//! Singletons are the one exception to "vassals survive the emperor": one
//! must be dead before its lease can expire, or a peer could start a second
//! copy. After each renewal the emperor gives the holder the vassal's pidfd
//! and its SIGKILL deadline on CLOCK_MONOTONIC (`WATCH`); if the emperor
//! dies, hangs or is stopped and no newer deadline comes, the holder kills
//! the vassal's process group at that deadline. `UNWATCH` ends the watch.

use crate::sys::pidfd::Pidfd;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::time::Duration;

/// One watched singleton.
struct Watch {
    pidfd: Pidfd,
    pid: i32,
    deadline_ns: u64,
}

/// The singletons the holder watches, by vassal name.
#[derive(Default)]
pub(super) struct Watchdog {
    watched: HashMap<String, Watch>,
}

/// The text of a `WATCH` message (the pidfd travels with it).
pub(super) fn watch_message(name: &str, pid: i32, deadline_ns: u64) -> String {
    format!("WATCH {deadline_ns} {pid} {name}")
}

impl Watchdog {
    /// Handles the argument of a `WATCH` message and its pidfd; a newer
    /// deadline replaces the last one.
    pub(super) fn watch(&mut self, arg: &str, fd: OwnedFd) {
        let mut parts = arg.splitn(3, ' ');
        let (Some(deadline), Some(pid), Some(name)) = (parts.next(), parts.next(), parts.next()) else { return };
        let (Ok(deadline_ns), Ok(pid)) = (deadline.parse(), pid.parse()) else { return };
        self.watched.insert(name.to_owned(), Watch { pidfd: Pidfd::from_owned(fd), pid, deadline_ns });
    }

    /// Ends the watch of `name`.
    pub(super) fn unwatch(&mut self, name: &str) {
        self.watched.remove(name);
    }

    /// How long until the next deadline.
    pub(super) fn timeout(&self) -> Option<Duration> {
        self.watched.values().map(|w| crate::sys::clock::until_ns(w.deadline_ns)).min()
    }

    /// Kills the process group of every singleton past its deadline.
    pub(super) fn fire(&mut self) {
        let now = crate::sys::clock::monotonic_ns();
        self.watched.retain(|name, w| {
            if w.deadline_ns > now {
                return true;
            }
            match w.pidfd.signal_group(w.pid, libc::SIGKILL, false) {
                Ok(()) => tracing::warn!(vassal = %name, pid = w.pid, "singleton past its lease deadline and no emperor renewed it: killed its process group"),
                Err(e) => tracing::debug!(vassal = %name, pid = w.pid, error = %e, "singleton already gone at its deadline"),
            }
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_past_its_deadline_is_killed() {
        let mut child = std::os::unix::process::CommandExt::process_group(&mut std::process::Command::new("sleep"), 0)
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut dog = Watchdog::default();
        let fd: OwnedFd = Pidfd::open(pid).unwrap().into();
        dog.watch(&format!("{} {pid} a.ini", u64::MAX), fd);
        dog.fire();
        assert!(child.try_wait().unwrap().is_none(), "killed before its deadline");
        let fd: OwnedFd = Pidfd::open(pid).unwrap().into();
        dog.watch(&format!("{} {pid} a.ini", crate::sys::clock::monotonic_ns()), fd);
        assert_eq!(dog.timeout(), Some(Duration::ZERO));
        dog.fire();
        let status = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
        assert_eq!(dog.timeout(), None);
    }
}
