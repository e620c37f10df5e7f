//! Waiting for our children: which one exited, and how it ended.

use rustix::process::{WaitId, WaitIdOptions};
use std::fmt;
use std::io;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s} ({})", super::signal::name(*s)),
        }
    }
}

/// The next exited child, left unreaped (so its group id stays reserved
/// until [`reap`]); `None` when no child has exited.
pub fn next_exited_child() -> Option<i32> {
    // rustix reports how a child ended but not which child it was: the
    // pid of `waitid(P_ALL)` needs the raw siginfo.
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` points at a zeroed siginfo_t that waitid may fill in.
    if unsafe { libc::waitid(libc::P_ALL, 0, info.as_mut_ptr(), flags) } < 0 {
        return None;
    }
    // SAFETY: a zeroed siginfo_t is a valid value, filled in or left as is by waitid.
    let info = unsafe { info.assume_init() };
    // SAFETY: after waitid(WEXITED) the siginfo is a SIGCHLD one (or zeroed:
    // si_pid 0 when no child has exited), so its pid field is set.
    let pid = unsafe { info.si_pid() };
    (pid != 0).then_some(pid)
}

/// Reaps the exited child `pid`; its exit, `None` if it has not exited.
pub fn reap(pid: i32) -> io::Result<Option<Exit>> {
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
    let Some(status) = rustix::process::waitid(WaitId::Pid(super::signal::pid(pid)?), options)? else {
        return Ok(None);
    };
    Ok(Some(match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Signal(0),
    }))
}

/// Reaps the child `pid` once it has exited; panics after five seconds.
#[cfg(test)]
pub(crate) fn reap_soon(pid: i32) -> Exit {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(exit) = reap(pid).unwrap() {
            return exit;
        }
        assert!(std::time::Instant::now() < deadline, "child {pid} did not exit");
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::zombie_processes)] // reaped through `reap`, not Child::wait
    fn reaps_a_child_and_tells_how_it_ended() {
        let child = std::process::Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let exit = reap_soon(child.id() as i32);
        assert_eq!(exit, Exit::Code(3));
        assert_eq!(exit.to_string(), "exit code 3");
        assert_eq!(Exit::Signal(libc::SIGKILL).to_string(), "killed by signal 9 (SIGKILL)");
    }
}
