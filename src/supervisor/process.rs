//! How the supervisor reaches one vassal process: our own children by pid
//! (their exits arrive through SIGCHLD), re-adopted ones through a pidfd
//! (which also tells when they exit). A re-adopted process with a control
//! channel keeps no pidfd open: its exit first shows as the channel's
//! hang-up, and a pidfd is opened only then (or for a signal), checked
//! against the recorded start time, so that one fd per vassal suffices.

use crate::sys::pidfd::Pidfd;
use crate::sys::{proc, signal};
use std::io;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;

/// How the supervisor reaches one vassal process.
#[derive(Debug, Clone)]
pub enum Handle {
    /// Our child: its pid (and group id) cannot be reused before we reap it,
    /// and SIGCHLD tells us when it exits; with its start time when the
    /// spawn knew it (see [`proc::BootWindow`]).
    Child(i32, Option<u64>),
    /// A re-adopted process: reached only through a pidfd.
    Adopted(Adopted),
}

/// A re-adopted process (not our child): its pid and start time, which
/// together name it across pid reuse, and its pidfd when one is kept open.
#[derive(Debug, Clone)]
pub struct Adopted {
    /// The process id.
    pub pid: i32,
    /// Its start time (clock ticks since boot), to check a pidfd opened later.
    pub start_time: u64,
    /// A pidfd kept open, which tells when the process exits; `None` when
    /// its control channel's hang-up tells that first (the watch waits
    /// for a kept pidfd only once the channel, if any, has hung up).
    pub pidfd: Option<Arc<AsyncFd<Pidfd>>>,
}

impl Adopted {
    /// A pidfd of exactly this process: the one kept, or a new one checked
    /// against the start time (`NotFound` once the process is gone or its
    /// pid belongs to another process).
    pub fn pidfd(&self) -> io::Result<Arc<AsyncFd<Pidfd>>> {
        if let Some(pidfd) = &self.pidfd {
            return Ok(pidfd.clone());
        }
        Ok(Arc::new(open_checked(self.pid, self.start_time)?.into_async()?))
    }

    /// Sends `sig` to the process (`group`: to the group it leads).
    fn signal(&self, sig: i32, group: bool) -> io::Result<()> {
        let opened;
        let pidfd = match &self.pidfd {
            Some(kept) => kept.get_ref(),
            None => {
                opened = open_checked(self.pid, self.start_time)?;
                &opened
            }
        };
        match group {
            true => pidfd.signal_group(self.pid, sig, false),
            false => pidfd.signal(sig),
        }
    }
}

/// Opens a pidfd of `pid` if it is still the process that started at
/// `start_time` (the pidfd pins it before the check).
pub fn open_checked(pid: i32, start_time: u64) -> io::Result<Pidfd> {
    let pidfd = Pidfd::open(pid)?;
    match proc::start_time(pid) == Some(start_time) {
        true => Ok(pidfd),
        false => Err(io::Error::new(io::ErrorKind::NotFound, format!("process {pid} is gone"))),
    }
}

impl Handle {
    /// The process id.
    pub fn pid(&self) -> i32 {
        match self {
            Handle::Child(pid, _) | Handle::Adopted(Adopted { pid, .. }) => *pid,
        }
    }

    /// The process id and start time, which together name the process in
    /// its record; the start time is read from `/proc` unless known.
    pub fn identity(&self) -> (i32, Option<u64>) {
        match self {
            Handle::Child(pid, known) => (*pid, known.or_else(|| proc::start_time(*pid))),
            Handle::Adopted(adopted) => (adopted.pid, Some(adopted.start_time)),
        }
    }

    /// Sends `signal` to the process itself.
    pub fn signal(&self, sig: i32) -> std::io::Result<()> {
        match self {
            Handle::Child(pid, _) => signal::kill(*pid, sig),
            Handle::Adopted(adopted) => adopted.signal(sig, false),
        }
    }

    /// Sends `signal` to the process group the process leads.
    pub fn signal_group(&self, sig: i32) -> std::io::Result<()> {
        match self {
            Handle::Child(pid, _) => signal::kill_group(*pid, sig),
            Handle::Adopted(adopted) => adopted.signal(sig, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sys::wait::{reap, reap_soon, Exit};
    use crate::sys::{pidfd::Pidfd, proc};

    #[test]
    #[allow(clippy::zombie_processes)] // reaped through waitid, not Child::wait
    fn pidfd_signals_and_reaps_a_child() {
        let child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let fd = Pidfd::open(pid).unwrap();
        assert!(proc::start_time(pid).is_some());
        assert_eq!(reap(pid).unwrap(), None);
        fd.signal(libc::SIGTERM).unwrap();
        let exit = reap_soon(pid);
        assert_eq!(exit, Exit::Signal(libc::SIGTERM));
        assert_eq!(exit.to_string(), "killed by signal 15 (SIGTERM)");
        assert!(proc::start_time(pid).is_none() || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok());
    }
}
