//! Signals: the one table of names and numbers, and sending them by pid.

use rustix::process::{Pid, Signal};
use std::io;

/// Signal names without the `SIG` prefix, with their numbers. Where two
/// names share a number (`ABRT`, `IOT`), the first is the one displayed.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("SYS", libc::SIGSYS),
];

/// The number of the signal called `name` (upper case, without `SIG`).
pub fn by_name(name: &str) -> Option<i32> {
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, num)| *num)
}

/// A signal's conventional name (`SIGTERM`), or its number.
pub fn name(signal: i32) -> String {
    SIGNALS.iter().find(|(_, n)| *n == signal).map_or_else(|| signal.to_string(), |(s, _)| format!("SIG{s}"))
}

/// The highest signal number the platform accepts.
pub fn max() -> i32 {
    libc::SIGRTMAX()
}

/// The signal numbered `signal`, if a process may be sent it: a named
/// signal, or a real-time one that the C library does not reserve.
pub(super) fn checked(signal: i32) -> io::Result<Signal> {
    if let Some(named) = Signal::from_named_raw(signal) {
        return Ok(named);
    }
    if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&signal) {
        // SAFETY: `signal` is a valid, non-zero number in the real-time range
        // the C library leaves to applications (from its SIGRTMIN on).
        return Ok(unsafe { Signal::from_raw_unchecked(signal) });
    }
    Err(io::Error::from_raw_os_error(libc::EINVAL))
}

/// A process id as the kernel takes it.
pub(super) fn pid(pid: i32) -> io::Result<Pid> {
    Pid::from_raw(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))
}

/// Sends `signal` to the process `pid`. Only safe for a pid that cannot have
/// been reused: an unreaped child of ours.
pub fn kill(target: i32, signal: i32) -> io::Result<()> {
    Ok(rustix::process::kill_process(pid(target)?, checked(signal)?)?)
}

/// Sends `signal` to the process group `pgid`. Only safe while the group
/// leader is our unreaped child (then the id cannot have been reused).
pub fn kill_group(pgid: i32, signal: i32) -> io::Result<()> {
    Ok(rustix::process::kill_process_group(pid(pgid)?, checked(signal)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        assert_eq!(name(libc::SIGABRT), "SIGABRT");
        assert_eq!(name(64), "64");
        assert_eq!(by_name("USR1"), Some(libc::SIGUSR1));
        assert_eq!(by_name("SIGUSR1"), None);
        for (n, num) in SIGNALS {
            assert_eq!(by_name(n), Some(*num));
        }
    }

    #[test]
    fn only_sendable_signals_are_accepted() {
        assert!(checked(libc::SIGTERM).is_ok());
        assert!(checked(libc::SIGRTMAX()).is_ok());
        assert!(checked(0).is_err());
        assert!(checked(1000).is_err());
    }
}
