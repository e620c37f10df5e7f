//! A vassal process seen through a pidfd: exit notification without polling,
//! signals that cannot hit a reused pid, and the start time that pairs with
//! the pid in the state store.

use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;

/// An open pidfd.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

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
            Exit::Signal(s) => write!(f, "killed by signal {s} ({})", signal_name(*s)),
        }
    }
}

impl Pidfd {
    /// Opens a pidfd for `pid` (close-on-exec; works on an unreaped zombie too).
    pub fn open(pid: i32) -> std::io::Result<Self> {
        // SAFETY: plain syscall with integer arguments; a non-negative result is a new fd we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd to us and nobody else owns it.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Sends `signal` to exactly this process (never to a reused pid).
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        // SAFETY: plain syscall on an fd we own; a null siginfo is allowed.
        let r = unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, self.0.as_raw_fd(), signal, std::ptr::null::<u8>(), 0)
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends `signal` to the process group this process leads (Linux 6.9+);
    /// falls back to `killpg` for our own children, whose group id cannot
    /// be reused while they are unreaped.
    pub fn signal_group(&self, pid: i32, signal: i32, own_child: bool) -> std::io::Result<()> {
        const PIDFD_SIGNAL_PROCESS_GROUP: libc::c_uint = 1 << 2;
        // SAFETY: plain syscall on an fd we own; a null siginfo is allowed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<u8>(),
                PIDFD_SIGNAL_PROCESS_GROUP,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) if own_child => signal_group(pid, signal),
            Some(libc::EINVAL) => self.signal(signal),
            _ => Err(e),
        }
    }
}

impl AsRawFd for Pidfd {
    fn as_raw_fd(&self) -> i32 {
        self.0.as_raw_fd()
    }
}

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
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        match self {
            // SAFETY: plain syscall; an unreaped child's pid cannot be reused.
            Handle::Child(pid) => match unsafe { libc::kill(*pid, signal) } {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            },
            Handle::Adopted(_, pidfd) => pidfd.get_ref().signal(signal),
        }
    }

    /// Sends `signal` to the process group the process leads.
    pub fn signal_group(&self, signal: i32) -> std::io::Result<()> {
        match self {
            Handle::Child(pid) => signal_group(*pid, signal),
            Handle::Adopted(pid, pidfd) => pidfd.get_ref().signal_group(*pid, signal, false),
        }
    }
}

/// The next exited child, left unreaped (so its group id stays reserved
/// until [`reap`]); `None` when no child has exited.
pub fn next_exited_child() -> Option<i32> {
    // SAFETY: siginfo_t is plain data; waitid fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: valid pointer to a zeroed siginfo_t.
    if unsafe { libc::waitid(libc::P_ALL, 0, &mut info, flags) } < 0 {
        return None;
    }
    // SAFETY: filled by waitid; 0 when no child has exited.
    let pid = unsafe { info.si_pid() };
    (pid != 0).then_some(pid)
}

/// Reaps the exited child `pid`; its exit, `None` if it has not exited.
pub fn reap(pid: i32) -> std::io::Result<Option<Exit>> {
    // SAFETY: siginfo_t is plain data; waitid fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a zeroed siginfo_t.
    if unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(exit_of(&info))
}

fn exit_of(info: &libc::siginfo_t) -> Option<Exit> {
    // SAFETY: filled by waitid (si_pid is 0 when nothing was reaped).
    let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
    if pid == 0 {
        return None;
    }
    Some(match code {
        libc::CLD_EXITED => Exit::Code(status),
        _ => Exit::Signal(status),
    })
}

/// Sends `signal` to the process group `pgid`. Only safe while the group
/// leader is our unreaped child (then the id cannot have been reused).
pub fn signal_group(pgid: i32, signal: i32) -> std::io::Result<()> {
    // SAFETY: plain syscall with integer arguments.
    if unsafe { libc::killpg(pgid, signal) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The start time of `pid` in clock ticks since boot (`/proc/PID/stat` field 22).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past its last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A signal's conventional name (`SIGTERM`), or its number.
pub fn signal_name(signal: i32) -> String {
    let known = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
    ];
    known.iter().find(|(n, _)| *n == signal).map_or_else(|| signal.to_string(), |(_, s)| (*s).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::zombie_processes)] // reaped through the pidfd, not Child::wait
    fn pidfd_signals_and_reaps_a_child() {
        let child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let fd = Pidfd::open(pid).unwrap();
        assert!(start_time(pid).is_some());
        assert_eq!(reap(pid).unwrap(), None);
        fd.signal(libc::SIGTERM).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let exit = loop {
            if let Some(exit) = reap(pid).unwrap() {
                break exit;
            }
            assert!(std::time::Instant::now() < deadline, "child did not exit");
            std::thread::yield_now();
        };
        assert_eq!(exit, Exit::Signal(libc::SIGTERM));
        assert_eq!(exit.to_string(), "killed by signal 15 (SIGTERM)");
        assert!(start_time(pid).is_none() || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok());
    }

    #[test]
    fn start_time_of_self_parses() {
        assert!(start_time(std::process::id() as i32).unwrap() > 0);
    }
}
