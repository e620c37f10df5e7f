//! Pidfds: a handle on one process that a reused pid can never alias.
//! Signals through it reach exactly that process, and it becomes readable
//! when the process exits.

use super::signal::{checked, pid};
use rustix::process::PidfdFlags;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use tokio::io::unix::AsyncFd;

/// An open pidfd.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// Opens a pidfd for `pid` (close-on-exec; works on an unreaped zombie too).
    pub fn open(target: i32) -> io::Result<Self> {
        Ok(Self(rustix::process::pidfd_open(pid(target)?, PidfdFlags::empty())?))
    }

    /// A pidfd received from another process (`SCM_RIGHTS`).
    pub fn from_owned(fd: OwnedFd) -> Self {
        Self(fd)
    }

    /// Sends `signal` to exactly this process (never to a reused pid).
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        Ok(rustix::process::pidfd_send_signal(&self.0, checked(signal)?)?)
    }

    /// Sends `signal` to the process group this process leads (Linux 6.9+);
    /// on older kernels, falls back to `killpg` for our own children (whose
    /// group id cannot be reused while they are unreaped) and to the process
    /// alone otherwise.
    pub fn signal_group(&self, pid: i32, signal: i32, own_child: bool) -> io::Result<()> {
        const PIDFD_SIGNAL_PROCESS_GROUP: libc::c_uint = 1 << 2;
        let signal = checked(signal)?.as_raw();
        // SAFETY: plain syscall on an fd we own, with integer arguments; a
        // null siginfo is allowed.
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
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) if own_child => super::signal::kill_group(pid, signal),
            Some(libc::EINVAL) => self.signal(signal),
            _ => Err(e),
        }
    }

    /// Registers the pidfd with the runtime, to await the process's exit
    /// (the pidfd turns readable).
    pub fn into_async(self) -> io::Result<AsyncFd<Pidfd>> {
        // SAFETY: a Pidfd owns its fd for its whole life and always reports
        // that same fd, as registration requires.
        unsafe { AsyncFd::register(self) }.map_err(io::Error::from)
    }
}

impl From<Pidfd> for OwnedFd {
    fn from(pidfd: Pidfd) -> OwnedFd {
        pidfd.0
    }
}

impl AsRawFd for Pidfd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}
