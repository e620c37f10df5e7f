//! What the emperor tells its service manager (systemd's `sd_notify`
//! protocol) and its log about the vassals as a whole: `READY=1` once every
//! source has delivered its first listing and the rounds acting on it have
//! started every vassal it names, `STATUS=` with the `ctl list` footer, `WATCHDOG=1` from the main
//! loop, `STOPPING=1` on shutdown; and one summary line in the log whenever
//! the counts change.

use super::table::VassalCounts;
use reconciler::SourceId;
use std::collections::BTreeSet;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;
use tokio::time::Instant;

/// The environment variables through which a service manager talks to the
/// process it started; they concern the emperor only, never its vassals.
pub const SERVICE_MANAGER_VARIABLES: &[&str] =
    &["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];

/// How long `READY=1` waits for sources that have not delivered anything.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The service manager's datagram socket (`NOTIFY_SOCKET`).
#[derive(Debug)]
struct Socket {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Socket {
    /// The socket named by `path`; a leading `@` names an abstract socket.
    fn open(path: &std::ffi::OsStr) -> std::io::Result<Self> {
        let addr = match path.as_bytes().strip_prefix(b"@") {
            Some(name) => <SocketAddr as SocketAddrExt>::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(path)?,
        };
        let socket = UnixDatagram::unbound()?;
        // A service manager that does not read must not stop the loop.
        socket.set_nonblocking(true)?;
        Ok(Self { socket, addr })
    }

    fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.addr) {
            tracing::warn!(error = %e, message, "cannot notify the service manager");
        }
    }
}

/// The main loop's reporter of overall state, to the service manager and
/// to the log.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<Socket>,
    /// Half the service manager's watchdog timeout, and the next ping.
    watchdog: Option<(Duration, Instant)>,
    /// Sources that have not delivered anything yet.
    waiting: BTreeSet<SourceId>,
    /// When `READY=1` goes out even with sources still waiting; `None`
    /// once it is sent (or when nobody listens).
    ready_by: Option<Instant>,
    /// The last `STATUS=` sent.
    status: String,
    /// The counts of the last summary line; `None` before the first.
    logged: Option<VassalCounts>,
    /// Vassals re-adopted at start, named in the first summary line.
    adopted: usize,
}

impl Notifier {
    /// A notifier for an emperor with these sources and `adopted` vassals
    /// re-adopted at start, talking to the service manager named in the
    /// environment, if any.
    pub fn from_env(sources: Vec<SourceId>, adopted: usize) -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty()).and_then(|path| {
            Socket::open(&path)
                .inspect_err(|e| tracing::warn!(socket = ?path, error = %e, "NOTIFY_SOCKET unusable"))
                .ok()
        });
        let watchdog = socket.as_ref().and_then(|_| watchdog_interval());
        Self::new(socket, watchdog, sources, adopted)
    }

    /// A notifier that only writes the summary line (in-process tests,
    /// embedders).
    pub fn log_only(sources: Vec<SourceId>) -> Self {
        Self::new(None, None, sources, 0)
    }

    fn new(socket: Option<Socket>, watchdog: Option<Duration>, sources: Vec<SourceId>, adopted: usize) -> Self {
        let now = Instant::now();
        Self {
            ready_by: socket.as_ref().map(|_| now + READY_TIMEOUT),
            socket,
            watchdog: watchdog.map(|every| (every, now)),
            waiting: sources.into_iter().collect(),
            status: String::new(),
            logged: None,
            adopted,
        }
    }

    /// `source` delivered its first event: it no longer holds `READY=1` back.
    pub fn settled(&mut self, source: &SourceId) {
        self.waiting.remove(source);
    }

    /// Whether every source has delivered its first event (what `READY=1`
    /// waits for, and `/healthz`).
    pub fn all_settled(&self) -> bool {
        self.waiting.is_empty()
    }

    /// After a round: logs the summary line if the counts changed, updates
    /// `STATUS=`, and sends `READY=1` once no source is waiting and the
    /// rounds hold back no start (`held_starts`): a first listing of many
    /// vassals is started in several short rounds, and the service manager
    /// hears "ready" after the last of them.
    pub fn published(&mut self, counts: VassalCounts, held_starts: usize) {
        if self.logged != Some(counts) {
            let adopted = if self.logged.is_none() { self.adopted } else { 0 };
            tracing::info!("{}", counts.summary(adopted));
            self.logged = Some(counts);
        }
        let status = counts.to_string();
        let ready = self.ready_by.is_some() && self.waiting.is_empty() && held_starts == 0;
        if ready || status != self.status {
            let ready = if ready { "READY=1\n" } else { "" };
            self.send(&format!("{ready}STATUS={status}"));
            self.status = status;
        }
        if ready {
            self.ready_by = None;
        }
    }

    /// When [`on_timer`](Self::on_timer) is next due, if ever.
    pub fn next_timer(&self) -> Option<Instant> {
        let ping = self.watchdog.map(|(_, at)| at);
        match (ping, self.ready_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Pings the watchdog when due, and gives up waiting for the sources
    /// when `READY=1` is overdue.
    pub fn on_timer(&mut self) {
        let now = Instant::now();
        if let Some((every, at)) = &mut self.watchdog {
            if *at <= now {
                *at = now + *every;
                self.send("WATCHDOG=1");
            }
        }
        if self.ready_by.is_some_and(|by| by <= now) {
            let waiting: Vec<&str> = self.waiting.iter().map(|s| s.0.as_str()).collect();
            tracing::warn!(sources = ?waiting, "ready without a first listing from every source");
            self.ready_by = None;
            self.send("READY=1");
        }
    }

    /// The emperor is stopping.
    pub fn stopping(&mut self) {
        self.send("STOPPING=1");
    }

    fn send(&self, message: &str) {
        if let Some(socket) = &self.socket {
            socket.send(message);
        }
    }
}

/// Half of `WATCHDOG_USEC`, when the watchdog is on and meant for this
/// process (`WATCHDOG_PID`, when set, names it).
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok().filter(|&u| u > 0)?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (tempfile::TempDir, UnixDatagram, Socket) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&path).expect("bind");
        let socket = Socket::open(path.as_os_str()).expect("open");
        (dir, server, socket)
    }

    fn recv(server: &UnixDatagram) -> String {
        server.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).expect("a message");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn ready_waits_for_every_source_and_status_follows_the_counts() {
        let (_dir, server, socket) = listener();
        let (a, b) = (SourceId("dir:///a".into()), SourceId("dir:///b".into()));
        let mut n = Notifier::new(Some(socket), None, vec![a.clone(), b.clone()], 0);
        n.settled(&a);
        n.published(VassalCounts { running: 1, ..VassalCounts::default() }, 0);
        assert_eq!(recv(&server), "STATUS=1 vassals: 1 running, 0 crashed (backing off), 0 held, 0 stopped");
        n.settled(&b);
        n.published(VassalCounts { running: 2, ..VassalCounts::default() }, 1);
        assert!(recv(&server).starts_with("STATUS=2 vassals: 2 running"), "a start held back holds READY=1 back");
        n.published(VassalCounts { running: 3, ..VassalCounts::default() }, 0);
        assert!(recv(&server).starts_with("READY=1\nSTATUS=3 vassals: 3 running"));
        n.published(VassalCounts { held: 1, ..VassalCounts::default() }, 0);
        assert!(recv(&server).starts_with("STATUS=1 vassals: 0 running, 0 crashed (backing off), 1 held"));
        n.stopping();
        assert_eq!(recv(&server), "STOPPING=1");
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_is_pinged_and_ready_is_sent_when_a_source_stays_silent() {
        let (_dir, server, socket) = listener();
        let every = Duration::from_secs(15);
        let mut n = Notifier::new(Some(socket), Some(every), vec![SourceId("amqp://q".into())], 0);
        n.on_timer();
        assert_eq!(recv(&server), "WATCHDOG=1");
        assert_eq!(n.next_timer(), Some(Instant::now() + every));
        tokio::time::advance(every).await;
        n.on_timer();
        assert_eq!(recv(&server), "WATCHDOG=1");
        tokio::time::advance(READY_TIMEOUT - every).await;
        n.on_timer();
        assert_eq!((recv(&server), recv(&server)), ("WATCHDOG=1".into(), "READY=1".into()));
        assert_eq!(n.next_timer(), Some(Instant::now() + every), "only the watchdog is left");
    }

    #[test]
    fn summary_names_only_the_states_in_use() {
        let counts = VassalCounts { running: 998, held: 2, ..VassalCounts::default() };
        assert_eq!(counts.summary(1000), "1000 vassals: 998 running (1000 re-adopted), 2 held");
        assert_eq!(counts.summary(0), "1000 vassals: 998 running, 2 held");
        assert_eq!(VassalCounts::default().summary(0), "0 vassals");
    }
}
