//! How the supervisor reaches one vassal process: our own children by pid
//! (their exits arrive through SIGCHLD), re-adopted ones through a pidfd
//! (which also tells when they exit).

use crate::sys::pidfd::Pidfd;
use crate::sys::signal;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;

/// How the supervisor reaches one vassal process.
#[derive(Debug, Clone)]
pub enum Handle {
    /// Our child: its pid (and group id) cannot be reused before we reap it,
    /// and SIGCHLD tells us when it exits.
    Child(i32),
    /// A re-adopted process: reached only through its pidfd, which also
    /// tells us when it exits.
    Adopted(i32, Arc<AsyncFd<Pidfd>>),
}

impl Handle {
    /// The process id.
    pub fn pid(&self) -> i32 {
        match self {
            Handle::Child(pid) | Handle::Adopted(pid, _) => *pid,
        }
    }

    /// Sends `signal` to the process itself.
    pub fn signal(&self, sig: i32) -> std::io::Result<()> {
        match self {
            Handle::Child(pid) => signal::kill(*pid, sig),
            Handle::Adopted(_, pidfd) => pidfd.get_ref().signal(sig),
        }
    }

    /// Sends `signal` to the process group the process leads.
    pub fn signal_group(&self, sig: i32) -> std::io::Result<()> {
        match self {
            Handle::Child(pid) => signal::kill_group(*pid, sig),
            Handle::Adopted(pid, pidfd) => pidfd.get_ref().signal_group(*pid, sig, false),
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
