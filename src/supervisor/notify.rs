//! The native vassals' `NOTIFY_SOCKET` (systemd's `sd_notify` protocol):
//! one datagram socket for every vassal, in the abstract namespace, named
//! after the state dir, so an emperor that restarts after a crash binds the
//! same name and keeps hearing the vassals it re-adopts.
//!
//! The kernel attaches each sender's pid to its datagrams; a message counts
//! only when that pid is the main process of a native vassal (systemd's
//! `NotifyAccess=main`), so one vassal can never speak for another.
//! Understood: `READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=…`,
//! `WATCHDOG=1` and `WATCHDOG=trigger`; anything else is ignored.

use super::executor::stop_timeout;
use super::launch::Launch;
use super::Supervisor;
use crate::source::util::hash::fnv1a;
use crate::sys::dgram;
use reconciler::VassalName;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Instant, SystemTime};
use tokio::io::unix::AsyncFd;

/// The variable naming the socket, in a native vassal's environment.
pub(super) const VARIABLE: &str = "NOTIFY_SOCKET";

/// The longest notification read; longer ones are cut.
const MAX_MESSAGE: usize = 4096;

/// The socket's name for the emperor of `state_dir`, as `NOTIFY_SOCKET`
/// spells it (a leading `@` marks the abstract namespace).
pub(super) fn socket_name(state_dir: &Path) -> String {
    format!("@emperor-notify-{:016x}", fnv1a(state_dir.as_os_str().as_encoded_bytes()))
}

/// The bound socket and its name.
pub(super) struct NotifySocket {
    /// The `NOTIFY_SOCKET` value vassals get.
    pub(super) name: String,
    fd: AsyncFd<OwnedFd>,
}

impl NotifySocket {
    /// Binds the socket of the emperor of `state_dir`.
    pub(super) fn bind(state_dir: &Path) -> std::io::Result<Self> {
        let name = socket_name(state_dir);
        let fd = dgram::bind_abstract(&name.as_bytes()[1..])?;
        Ok(Self { name, fd: dgram::into_async(fd)? })
    }

    /// Waits until a datagram may be queued.
    pub(super) async fn readable(&self) {
        if self.fd.readable().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Every datagram queued now, with its sender's pid.
    fn drain(&self) -> Vec<(Option<i32>, String)> {
        use futures::FutureExt;
        // The readiness the reactor has seen, taken before reading: a
        // datagram that arrives during the reads leaves the socket readable.
        let mut seen = self.fd.readable().now_or_never().and_then(Result::ok);
        let mut out = Vec::new();
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            match dgram::recv(self.fd.get_ref().as_fd(), &mut buf) {
                Ok(got) => out.push((got.pid, String::from_utf8_lossy(&buf[..got.len]).into_owned())),
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        tracing::warn!(error = %e, "cannot read the vassals' notify socket");
                    }
                    if let Some(guard) = seen.as_mut() {
                        guard.clear_ready();
                    }
                    return out;
                }
            }
        }
    }
}

/// What one datagram says, of what the emperor understands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Notification {
    /// `READY=1`.
    pub(super) ready: bool,
    /// `RELOADING=1`.
    pub(super) reloading: bool,
    /// `STOPPING=1`.
    pub(super) stopping: bool,
    /// `WATCHDOG=1`.
    pub(super) watchdog: bool,
    /// `WATCHDOG=trigger`.
    pub(super) trigger: bool,
    /// `STATUS=…`.
    pub(super) status: Option<String>,
}

impl Notification {
    /// Reads the newline-separated `KEY=VALUE` lines of a datagram.
    pub(super) fn parse(text: &str) -> Self {
        let mut n = Self::default();
        for (key, value) in text.lines().filter_map(|line| line.split_once('=')) {
            match (key, value) {
                ("READY", "1") => n.ready = true,
                ("RELOADING", "1") => n.reloading = true,
                ("STOPPING", "1") => n.stopping = true,
                ("WATCHDOG", "1") => n.watchdog = true,
                ("WATCHDOG", "trigger") => n.trigger = true,
                ("STATUS", text) => n.status = Some(text.to_owned()),
                _ => {}
            }
        }
        n
    }
}

impl Supervisor {
    /// Reads and applies every queued notification.
    pub(super) fn read_notifications(&mut self) {
        let Some(socket) = &self.notify else { return };
        for (pid, text) in socket.drain() {
            self.on_notification(pid, &text);
        }
    }

    /// Applies one datagram from `pid`, if that is a native vassal's main process.
    fn on_notification(&mut self, pid: Option<i32>, text: &str) {
        let name = pid.and_then(|pid| self.native_pids.get(&pid)).cloned();
        let Some(name) = name.filter(|name| self.procs.get(name).is_some_and(|p| Some(p.pid()) == pid)) else {
            tracing::debug!(
                pid,
                notification = ?text,
                "notification from a process that is no vassal's main process; ignored"
            );
            return;
        };
        self.apply_notification(&name, Notification::parse(text));
    }

    fn apply_notification(&mut self, name: &VassalName, n: Notification) {
        let Some(proc) = self.procs.get_mut(name) else { return };
        let watchdog = proc.watchdog();
        if n.reloading {
            tracing::info!(vassal = %name, "vassal is reloading");
            if proc.readiness.reloading() {
                self.news.readiness();
            }
        }
        if n.ready && proc.readiness.ready(SystemTime::now()) {
            tracing::info!(vassal = %name, pid = proc.pid(), "vassal is ready");
            self.news.readiness();
        }
        if n.status.as_deref().is_some_and(|text| proc.readiness.set_status(text)) {
            self.news.status();
        }
        if n.watchdog && watchdog.is_some() {
            proc.state.heartbeat(Instant::now());
        }
        if n.trigger && watchdog.is_some() {
            tracing::warn!(vassal = %name, pid = proc.pid(), "vassal triggered its watchdog; killing it for a respawn");
            Self::signal_group(proc, libc::SIGKILL);
        }
        if n.stopping && !proc.state.is_stopping() {
            tracing::info!(vassal = %name, "vassal is stopping on its own; it will be respawned");
            proc.state.stop(Instant::now() + stop_timeout(&proc.launch, &self.settings));
            self.timed.insert(name.clone());
        }
    }

    /// The environment a native vassal gets for the notify protocol.
    pub(super) fn notify_env(&self, launch: &Launch) -> Vec<(String, String)> {
        let (Launch::Native(native), Some(socket)) = (launch, &self.notify) else { return Vec::new() };
        let mut vars = vec![(VARIABLE.to_owned(), socket.name.clone())];
        if let Some(every) = native.readiness.watchdog {
            vars.push(("WATCHDOG_USEC".to_owned(), every.as_micros().to_string()));
        }
        vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_read_key_by_key() {
        let n = Notification::parse("READY=1\nSTATUS=serving 3 clients\nX_OTHER=1\nWATCHDOG=1");
        assert!(n.ready && n.watchdog && !n.stopping && !n.reloading && !n.trigger);
        assert_eq!(n.status.as_deref(), Some("serving 3 clients"));
        assert_eq!(
            Notification::parse("READY=0\nWATCHDOG=trigger"),
            Notification { trigger: true, ..Default::default() }
        );
        let n = Notification::parse("RELOADING=1\nMONOTONIC_USEC=5\nSTOPPING=1\nSTATUS=");
        assert!(n.reloading && n.stopping && !n.ready);
        assert_eq!(n.status.as_deref(), Some(""));
    }

    #[test]
    fn the_name_depends_only_on_the_state_dir() {
        let a = socket_name(Path::new("/var/lib/emperor"));
        assert_eq!(a, socket_name(Path::new("/var/lib/emperor")));
        assert_ne!(a, socket_name(Path::new("/var/lib/emperor2")));
        assert!(a.starts_with("@emperor-notify-") && a.len() == "@emperor-notify-".len() + 16);
    }
}
