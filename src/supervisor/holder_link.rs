//! The emperor's link to its fd holder, kept alive: every fd handed to the
//! holder is also kept here (one registry, whatever the fd is for) except
//! the vassals' control channels, which their process entries keep open
//! anyway (a copy here would make two fds per uWSGI vassal); the connection
//! is watched, and a holder that dies is replaced and handed every fd again.
//!
//! Without this, a holder killed while the emperor runs would leave the
//! uWSGI vassals with no second copy of their channels: the next emperor
//! crash would then close them and take every such vassal down.

use super::fdholder::{self, FdHolder};
use super::logs;
use crate::sys::pidfd::Pidfd;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

/// The first delay before a failed holder start is tried again; it doubles
/// up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(200);
/// The longest delay between holder starts.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A live connection to the holder, and a watch on its process: a pidfd
/// turns readable once the process has exited, by which time its listening
/// socket is closed too, so that a new holder is started rather than the
/// dying one reached again.
struct Connected {
    holder: FdHolder,
    exit: AsyncFd<Pidfd>,
}

/// The supervisor's side of the fd holder; see the module docs.
pub(super) struct HolderLink {
    state_dir: PathBuf,
    log_dir: PathBuf,
    conn: Option<Connected>,
    /// Our own copy of every fd the holder should keep, by key (control
    /// channels apart: see [`owned_elsewhere`]). A vassal generation's
    /// keys follow from its name ([`CHANNEL_KINDS`]), so no list of them
    /// is kept per vassal.
    held: HashMap<String, OwnedFd>,
    /// When to try again to reach a holder, and the delay after that.
    retry: Option<(Instant, Duration)>,
    /// The singletons' watchdog deadlines (pid, CLOCK_MONOTONIC ns), by name,
    /// to give a new holder too.
    watches: HashMap<String, (i32, u64)>,
}

impl HolderLink {
    /// Connects to the holder of `state_dir`, starting one if none answers;
    /// when that fails, says so once and keeps trying in the background.
    pub(super) fn new(state_dir: PathBuf, log_dir: PathBuf) -> Self {
        let mut link =
            Self { state_dir, log_dir, conn: None, held: HashMap::new(), retry: None, watches: HashMap::new() };
        if let Err(e) = link.connect() {
            tracing::warn!(error = %e, "no fd holder: uWSGI vassals will not survive an emperor crash until one starts");
            link.retry = Some((Instant::now() + RETRY_MIN, RETRY_MIN));
        }
        link
    }

    /// Connects (or starts) a holder and watches the connection.
    fn connect(&mut self) -> io::Result<()> {
        let log = logs::open_named(&self.log_dir, "fd-holder.log")?;
        let holder = FdHolder::connect_or_spawn(&self.state_dir, log)?;
        let exit = Pidfd::open(holder.pid()?)?.into_async()?;
        self.conn = Some(Connected { holder, exit });
        Ok(())
    }

    /// Hands the holder a copy of `fd` under `key`, keeping one here too so
    /// that a new holder can be given it again. Fails only when no copy
    /// can be made (the emperor is out of fds).
    pub(super) fn put(&mut self, key: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.keep(key, fd)?;
        if let Some(conn) = &self.conn {
            if let Err(e) = conn.holder.put(key, fd) {
                // A dead holder is noticed through its pidfd and replaced.
                tracing::debug!(key, error = %e, "cannot hand an fd to the fd holder");
            }
        }
        Ok(())
    }

    /// Keeps a copy of `fd` under `key` without sending it (the holder
    /// already has it: an fd taken back after a restart).
    pub(super) fn keep(&mut self, key: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
        if !owned_elsewhere(key) {
            let copy = fd.try_clone_to_owned()?;
            self.held.insert(key.to_owned(), copy);
        }
        Ok(())
    }

    /// Makes the holder (and this registry) close the fd kept under `key`.
    pub(super) fn drop_key(&mut self, key: &str) {
        self.held.remove(key);
        if let Some(conn) = &self.conn {
            let _ = conn.holder.drop_key(key);
        }
    }

    /// A link to no holder, for tests of what hands fds to it.
    #[cfg(test)]
    pub(super) fn detached() -> Self {
        Self {
            state_dir: PathBuf::new(),
            log_dir: PathBuf::new(),
            conn: None,
            held: HashMap::new(),
            retry: None,
            watches: HashMap::new(),
        }
    }

    /// Makes the holder (and this registry) close every fd of generation
    /// `generation` of the vassal `name`.
    /// Every kind is dropped, whether this emperor handed it over or not:
    /// a holder may keep it from an emperor before this one.
    pub(super) fn release(&mut self, name: &str, generation: u64) {
        for kind in CHANNEL_KINDS {
            let key = fdholder::key(kind, generation, name);
            self.held.remove(&key);
            if let Some(conn) = &self.conn {
                let _ = conn.holder.drop_key(&key);
            }
        }
    }

    /// Takes back a copy of every fd the holder keeps (empty when there is
    /// no holder).
    pub(super) fn list(&self) -> io::Result<Vec<(String, OwnedFd)>> {
        match &self.conn {
            Some(conn) => conn.holder.list(),
            None => Ok(Vec::new()),
        }
    }

    /// Resolves when the link needs [`HolderLink::repair`]: the holder went
    /// away, or a new attempt to start one is due.
    pub(super) async fn broken(&self) {
        match (&self.conn, self.retry) {
            (Some(conn), _) => {
                let _ = conn.exit.readable().await;
            }
            (None, Some((at, _))) => tokio::time::sleep_until(at.into()).await,
            (None, None) => std::future::pending().await,
        }
    }

    /// Replaces a holder that went away (or tries again to start one) and
    /// hands the new one every fd of the registry. Logs the loss once and
    /// the recovery once; failed attempts in between are retried quietly
    /// with a growing delay.
    pub(super) fn repair<'a>(&mut self, control: impl IntoIterator<Item = (String, BorrowedFd<'a>)>) {
        if self.conn.take().is_some() {
            tracing::warn!(
                fds = self.held.len(),
                "the fd holder went away; starting a new one and handing it every channel again"
            );
        }
        let delay = self.retry.map_or(RETRY_MIN, |(_, delay)| delay);
        match self.connect().and_then(|()| self.resend(control)) {
            Ok(sent) => {
                self.retry = None;
                tracing::info!(fds = sent, "fd holder running again; uWSGI vassals survive an emperor crash again");
            }
            Err(e) => {
                if self.retry.is_none() {
                    tracing::error!(error = %e, retry_in = ?delay, "cannot start a new fd holder; retrying until it works");
                }
                self.conn = None;
                self.retry = Some((Instant::now() + delay, (delay * 2).min(RETRY_MAX)));
            }
        }
    }

    /// Hands the holder every fd of the registry, the `control` channels
    /// (by key) and every watch; how many fds.
    fn resend<'a>(&self, control: impl IntoIterator<Item = (String, BorrowedFd<'a>)>) -> io::Result<usize> {
        let conn = self.conn.as_ref().ok_or_else(|| io::Error::other("no fd holder"))?;
        for (key, fd) in &self.held {
            conn.holder.put(key, fd.as_fd())?;
        }
        let mut sent = self.held.len();
        for (key, fd) in control {
            conn.holder.put(&key, fd)?;
            sent += 1;
        }
        for (name, (pid, deadline_ns)) in &self.watches {
            send_watch(&conn.holder, name, *pid, *deadline_ns);
        }
        Ok(sent)
    }

    /// Makes the holder kill the singleton `name` (process `pid`) at
    /// `deadline_ns` of CLOCK_MONOTONIC unless a later deadline comes
    /// (see [`watchdog`](super::watchdog)).
    pub(super) fn watch(&mut self, name: &str, pid: i32, deadline_ns: u64) {
        self.watches.insert(name.to_owned(), (pid, deadline_ns));
        if let Some(conn) = &self.conn {
            send_watch(&conn.holder, name, pid, deadline_ns);
        }
    }

    /// Ends the holder's watch of the singleton `name`.
    pub(super) fn unwatch(&mut self, name: &str) {
        if self.watches.remove(name).is_some() {
            if let Some(conn) = &self.conn {
                let _ = conn.holder.unwatch(name);
            }
        }
    }

    /// Ends the holder (after every vassal has stopped).
    pub(super) fn quit(&mut self) {
        self.retry = None;
        if let Some(conn) = self.conn.take() {
            conn.holder.quit();
        }
    }
}

/// Sends one watch (with a new pidfd of `pid`); a process already gone needs none.
fn send_watch(holder: &FdHolder, name: &str, pid: i32, deadline_ns: u64) {
    let sent = Pidfd::open(pid).and_then(|pidfd| holder.watch(name, pid, deadline_ns, pidfd.as_fd()));
    if let Err(e) = sent {
        tracing::debug!(vassal = name, pid, error = %e, "cannot give the fd holder a singleton's deadline");
    }
}

/// The kinds of fd kept for one vassal generation, under
/// [`fdholder::key`]`(kind, generation, name)`.
const CHANNEL_KINDS: [&str; 3] = ["control", "config", super::output::HELD_KIND];

/// Whether the fd under `key` stays open elsewhere in the emperor for as
/// long as the holder must keep it: a vassal's control channel is owned by
/// its process entry, so the registry keeps no copy of it.
fn owned_elsewhere(key: &str) -> bool {
    fdholder::parse_key(key).is_some_and(|(kind, _, _)| kind == "control")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_control_channel_is_kept_without_a_copy_other_channels_with_one() {
        let mut link = HolderLink::detached();
        let (control, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let (config, _peer2) = std::os::unix::net::UnixStream::pair().unwrap();
        let (log, _peer3) = std::os::unix::net::UnixStream::pair().unwrap();
        link.put(&fdholder::key("control", 3, "a.ini"), control.as_fd()).unwrap();
        link.put(&fdholder::key("config", 3, "a.ini"), config.as_fd()).unwrap();
        link.put(&fdholder::key("log", 3, "a.ini"), log.as_fd()).unwrap();
        link.put(&fdholder::key("config", 4, "a.ini"), config.as_fd()).unwrap();
        let mut kept: Vec<&String> = link.held.keys().collect();
        kept.sort();
        assert_eq!(kept, ["config:3:a.ini", "config:4:a.ini", "log:3:a.ini"], "one fd per control channel, not two");
        link.release("a.ini", 3);
        assert_eq!(link.held.keys().collect::<Vec<_>>(), ["config:4:a.ini"], "the other generation stays");
    }
}
