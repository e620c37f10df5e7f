//! Signals: the one table of names and numbers, sending them by pid, and a
//! flag raised by the signal handler itself.

use rustix::process::{Pid, Signal};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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

/// A flag that the handler of a stop signal raises at once, when the
/// signal arrives: code busy with a long piece of work (a round of starts)
/// checks it between steps, without waiting for the event loop to hear of
/// the signal. Clones share one flag.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Whether the flag was raised.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Raises the flag (a stop asked for by other means than a signal).
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Raises the flag whenever one of `signals` arrives, until the returned
    /// guard is dropped. Other handlers of those signals (tokio's) still run.
    pub fn raise_on(&self, signals: &[i32]) -> io::Result<RaiseOn> {
        let mut ids = Vec::with_capacity(signals.len());
        for &signal in signals {
            let flag = Arc::clone(&self.0);
            // SAFETY: the action only stores into an atomic, which is
            // async-signal-safe; it allocates nothing and takes no lock.
            let id = unsafe { signal_hook_registry::register(signal, move || flag.store(true, Ordering::SeqCst)) }?;
            ids.push(id);
        }
        Ok(RaiseOn(ids))
    }
}

/// Keeps a [`StopFlag`]'s signal actions installed; dropping it removes them.
#[derive(Debug)]
pub struct RaiseOn(Vec<signal_hook_registry::SigId>);

impl Drop for RaiseOn {
    fn drop(&mut self) {
        for id in self.0.drain(..) {
            signal_hook_registry::unregister(id);
        }
    }
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

    #[test]
    fn a_signal_raises_the_flag_while_the_guard_lives() {
        let flag = StopFlag::default();
        let guard = flag.raise_on(&[libc::SIGUSR1]).unwrap();
        assert!(!flag.is_raised());
        // SIGUSR1 to this thread: the flag's action handles it (no other
        // code of the crate uses SIGUSR1) before raise() returns.
        // SAFETY: raise() only sends a signal, which has a handler now.
        assert_eq!(unsafe { libc::raise(libc::SIGUSR1) }, 0);
        assert!(flag.is_raised(), "raised by the handler");
        drop(guard);
        let other = StopFlag::default();
        other.raise();
        assert!(other.is_raised() && flag.clone().is_raised());
    }
}
