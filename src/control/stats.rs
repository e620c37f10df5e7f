//! `--stats`: the uWSGI Emperor's stats server. Each connection gets one
//! JSON object, with upstream's field names and types, and is closed; the
//! tools written for `--emperor-stats` (uwsgitop, scripts) read it as they
//! read upstream's.
//!
//! What the emperor does not track is reported as upstream reports an
//! unset value: 0 or "". Vassals an operator stopped are left out (upstream
//! has no such state); vassals backing off after a crash are also listed
//! in `blacklist`, upstream's list of throttled vassals.

use super::hook::Handle;
use super::listen::{Connection, Listener};
use super::server::Context;
use super::table::{State, Table, VassalView};
use crate::source::supervise::StatusBoard;
use crate::source::util::secret;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long a client may take to read the object.
const DEADLINE: Duration = Duration::from_secs(10);

/// What the stats server reads from.
#[derive(Clone)]
pub struct StatsContext {
    handle: Handle,
    sources: StatusBoard,
}

impl StatsContext {
    /// Reads the table and the sources the control task reads.
    pub fn new(control: &Context) -> Self {
        Self { handle: control.handle.clone(), sources: control.sources.clone() }
    }
}

/// The whole object, in upstream's field order.
#[derive(Debug, Serialize)]
struct Stats {
    version: &'static str,
    pid: u32,
    uid: u32,
    gid: u32,
    cwd: String,
    emperor: Vec<String>,
    emperor_tyrant: u64,
    throttle_level: u64,
    vassals: Vec<Vassal>,
    blacklist: Vec<Blacklisted>,
}

/// One vassal, as upstream's `vassals[]` shows it; times are seconds since
/// the epoch.
#[derive(Debug, Serialize)]
struct Vassal {
    id: String,
    pid: i64,
    born: u64,
    last_mod: u64,
    last_heartbeat: u64,
    loyal: u64,
    ready: u64,
    accepting: u64,
    last_loyal: u64,
    last_ready: u64,
    last_accepting: u64,
    first_run: u64,
    last_run: u64,
    cursed: u64,
    zerg: u64,
    on_demand: String,
    uid: u64,
    gid: u64,
    monitor: String,
    respawns: u64,
}

/// A vassal backing off after a crash, as upstream's `blacklist[]` shows a
/// throttled one.
#[derive(Debug, Serialize)]
struct Blacklisted {
    id: String,
    throttle_level: u64,
    attempt: u64,
    first_attempt: u64,
    last_attempt: u64,
}

/// Serves `listener` until the task is dropped.
pub async fn serve_stats(listener: Listener, context: StatsContext) {
    tracing::info!(addr = %listener.local_addr(), "stats: serving the uWSGI emperor stats");
    let context = Arc::new(context);
    listener.serve(DEADLINE, |stream| dump(stream, context.clone())).await;
}

/// Writes the object and closes the connection.
async fn dump(mut stream: Box<dyn Connection>, context: Arc<StatsContext>) {
    let text = tokio::task::spawn_blocking(move || {
        let table = context.handle.table.borrow().clone();
        let sources = context.sources.statuses().into_iter().map(|(id, _)| id.0).collect();
        serde_json::to_string(&stats(&table, sources)).unwrap_or_default()
    });
    let Ok(text) = text.await else { return };
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn stats(table: &Table, sources: Vec<String>) -> Stats {
    let listed =
        || table.vassals.values().map(|v| &**v).filter(|v| !matches!(v.state, State::Stopped | State::Standby));
    Stats {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        cwd: std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        emperor: sources.iter().map(|s| secret::mask(s)).collect(),
        emperor_tyrant: 0,
        throttle_level: 0,
        vassals: listed().map(vassal).collect(),
        blacklist: listed().filter(|v| v.state == State::Crashed).map(blacklisted).collect(),
    }
}

fn vassal(view: &VassalView) -> Vassal {
    let running = view.state == State::Running;
    let born = if running { seconds(view.since) } else { 0 };
    Vassal {
        id: view.name.clone(),
        pid: view.pid.map_or(0, i64::from),
        born,
        last_mod: last_mod(&view.version),
        last_heartbeat: 0,
        loyal: 0,
        ready: 0,
        accepting: 0,
        last_loyal: 0,
        last_ready: 0,
        last_accepting: 0,
        first_run: born,
        last_run: born,
        cursed: if view.state == State::Stopping { seconds(view.since) } else { 0 },
        zerg: 0,
        on_demand: String::new(),
        uid: 0,
        gid: 0,
        monitor: secret::mask(&view.source),
        respawns: u64::from(view.restarts),
    }
}

fn blacklisted(view: &VassalView) -> Blacklisted {
    let since = seconds(view.since);
    Blacklisted {
        id: view.name.clone(),
        throttle_level: seconds(view.restart_at).saturating_sub(since),
        attempt: u64::from(view.restarts) + 1,
        first_attempt: since,
        last_attempt: since,
    }
}

/// Whole seconds of an optional epoch time; 0 when unset.
fn seconds(at: Option<f64>) -> u64 {
    at.map_or(0, |s| s.max(0.0) as u64)
}

/// The config's modification time, in seconds since the epoch, from its
/// version: a file's is `HASH@MTIME_NS`, a table row's its timestamp; 0
/// when the version is no time (a content hash).
fn last_mod(version: &str) -> u64 {
    let stamp = version.rsplit('@').next().unwrap_or(version);
    match stamp.parse::<u64>() {
        // Nanoseconds (file mtimes), else already seconds.
        Ok(ns) if ns >= 100_000_000_000_000_000 => ns / 1_000_000_000,
        Ok(secs) => secs,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_mod_reads_file_mtimes_and_row_timestamps() {
        assert_eq!(last_mod("00ff00ff00ff00ff@1764680000123456789"), 1_764_680_000);
        assert_eq!(last_mod("1764680000"), 1_764_680_000);
        assert_eq!(last_mod("deadbeef"), 0);
    }
}
