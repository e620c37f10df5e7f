//! Real database servers for the source tests, each in its own temp dir on
//! a free loopback port, stopped by PID when dropped:
//!
//! * [`Postgres`]: a private PostgreSQL cluster (initdb + pg_ctl as user
//!   `postgres` when run as root), with [`PgClient`] to change it;
//! * [`Mongo`]: a SecantusDB server (`secantusd-py`, MongoDB wire protocol
//!   with change streams) from `target/test-venv`, with [`MongoClient`];
//! * [`ZooKeeper`]: a standalone ZooKeeper (Debian `zookeeper` jar under
//!   Java), with [`ZkClient`];
//! * [`Slapd`]: a private OpenLDAP slapd (syncprov, optionally TLS), with
//!   [`LdapClient`];
//! * [`Proxy`]: a TCP proxy a test cuts to simulate a lost connection.
//!
//! `shared()` gives one server per test binary (each test then uses its own
//! database); `private()` gives a server of its own to a test that stops and
//! restarts it. Missing binaries fail the test naming
//! `deploy/install-test-deps.sh`.
#![allow(dead_code, unused_imports, unsafe_code)]

mod mongo;
mod postgres;
mod proxy;
mod slapd;
mod zookeeper;

pub use mongo::{Mongo, MongoClient};
pub use postgres::{lit, PgClient, Postgres};
pub use proxy::Proxy;
pub use slapd::{LdapClient, Slapd, SlapdOptions, READER, READER_PASSWORD, SUFFIX};
pub use zookeeper::{ZkClient, ZooKeeper};

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How long a server may take to start or stop.
const SERVER_DEADLINE: Duration = Duration::from_secs(60);

/// A free TCP port on 127.0.0.1 (free when asked; servers retry on a clash).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind an ephemeral port").port()
}

fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn pid_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    !matches!(stat.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next()), Some('Z' | 'X'))
}

/// Waits until a just-spawned server is `ready`: keeps it and returns
/// `true`, or returns `false` (the child killed) when it exited first or
/// did not become ready within [`SERVER_DEADLINE`] (a port clash, say: the
/// caller retries on another port).
fn started(
    slot: &mut Option<std::process::Child>,
    mut child: std::process::Child,
    mut ready: impl FnMut() -> bool,
) -> bool {
    let outcome = crate::common::poll_until(SERVER_DEADLINE, Duration::from_millis(20), || {
        if ready() {
            Some(true)
        } else if child.try_wait().expect("try_wait").is_some() {
            Some(false)
        } else {
            None
        }
    });
    if outcome == Some(true) {
        *slot = Some(child);
        return true;
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Waits up to `within` for `gone`; `false` when it did not happen.
fn gone_within(within: Duration, mut gone: impl FnMut() -> bool) -> bool {
    crate::common::poll_until(within, Duration::from_millis(20), || crate::common::cond(gone())).is_some()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    crate::common::wait_until(SERVER_DEADLINE, what, || crate::common::cond(ok()));
}

/// A current-thread runtime for the test-side clients.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

fn shared<T>(slot: &Mutex<Weak<T>>, start: impl FnOnce() -> T) -> Arc<T> {
    let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(server) = guard.upgrade() {
        return server;
    }
    let server = Arc::new(start());
    *guard = Arc::downgrade(&server);
    server
}
