//! Status write-back: the emperor writes what runs on its host to a table
//! (`pg://…;status=TABLE`), a collection (`mongodb://…;status=COLLECTION`)
//! or a subtree (`zoo://…?register=PATH&status=1`, see [`zoo`]) next to its
//! vassal source, so one query shows the whole fleet.
//!
//! Two records, written separately:
//! * one heartbeat row per emperor in `TABLE_hosts` (`host, emperor_id, pid,
//!   started_at, heartbeat_at, vassals, stopped_at`), renewed every
//!   heartbeat period (10 s by default, `status-heartbeat=SECONDS`); a row
//!   older than [`LEASE_PERIODS`] periods belongs to a dead emperor, unless
//!   `stopped_at` says it stopped cleanly ([`finish`]: its vassal rows then
//!   all say `stopped`);
//! * one row per vassal in `TABLE` (`host, name, state, pid, since,
//!   restarts, last_exit, updated_at`), written only when it changes
//!   ([`dirty`]), deleted when the vassal is removed.
//!
//! Timestamps come from the store's clock. The writer ([`writer`]) is a task
//! of its own with its own connection: an outage of the store never touches
//! supervision, and the backlog is written, coalesced, when the store is back.
//! Two live emperors with one host name on one store are refused: the
//! heartbeat row names the emperor (its id kept in the state dir, so a
//! restart of the same emperor is not another one).

pub mod dirty;
pub mod mongodb;
pub mod pg;
pub mod writer;
pub mod zoo;

use crate::control::Table;
use dirty::{Batch, Row};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// How often the heartbeat row is renewed by default.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// How many heartbeat periods a heartbeat stays fresh: an emperor silent
/// for longer is dead (and its host name free for another emperor).
pub const LEASE_PERIODS: u32 = 3;

/// This emperor, as its heartbeat row names it.
#[derive(Debug, Clone)]
pub struct Me {
    /// Its host name (`--host`).
    pub host: String,
    /// Its id, random per state dir.
    pub emperor_id: String,
    /// Its pid.
    pub pid: i32,
}

/// What claiming the heartbeat row found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The row is ours now.
    Ours,
    /// Another emperor with the same host name holds a fresh heartbeat.
    Taken {
        /// That emperor's id.
        emperor_id: String,
        /// Its pid (on its machine).
        pid: Option<i32>,
    },
}

/// Why status write-back cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Another emperor with this host name is alive on this store.
    #[error(
        "another emperor (id {emperor_id}, pid {pid}) is alive as host {host:?} on the status store of {store}: \
         give this one another --host, or stop that one (its heartbeat expires {lease:?} after it stops)"
    )]
    HostTaken {
        /// The host name both use.
        host: String,
        /// The source whose status store it is.
        store: String,
        /// The other emperor's id.
        emperor_id: String,
        /// The other emperor's pid, or `?`.
        pid: String,
        /// How long a heartbeat stays fresh.
        lease: Duration,
    },
}

/// One kind of status store: its connection and the few statements the
/// writer needs. Every error is a message; the writer reconnects on any.
pub trait Store: Send + Sync + 'static {
    /// An open connection.
    type Conn: Send;

    /// The source the store belongs to (for log lines and errors).
    fn source(&self) -> &str;
    /// How often the heartbeat is renewed.
    fn heartbeat(&self) -> Duration;
    /// Connects (and creates the tables or indexes when missing).
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, String>> + Send;
    /// Takes this host's heartbeat row when it is ours or stale (older than
    /// `lease` by the store's clock), recording `counts` (JSON).
    fn claim(
        &self,
        conn: &mut Self::Conn,
        me: &Me,
        lease: Duration,
        counts: &str,
    ) -> impl Future<Output = Result<Claim, String>> + Send;
    /// Renews the heartbeat; `false` when the row is no longer ours.
    fn beat(&self, conn: &mut Self::Conn, me: &Me, counts: &str) -> impl Future<Output = Result<bool, String>> + Send;
    /// The last heartbeat of an emperor that stopped every vassal on a stop
    /// signal: `heartbeat_at` and `stopped_at` set to now (a claim clears
    /// `stopped_at` again); `false` when the row is no longer ours.
    fn stopped(
        &self,
        conn: &mut Self::Conn,
        me: &Me,
        counts: &str,
    ) -> impl Future<Output = Result<bool, String>> + Send;
    /// Every vassal row of `host` (with `since` unknown).
    fn read(
        &self,
        conn: &mut Self::Conn,
        host: &str,
    ) -> impl Future<Output = Result<HashMap<String, Row>, String>> + Send;
    /// Writes one batch (its upserts, then its deletes).
    fn write(
        &self,
        conn: &mut Self::Conn,
        host: &str,
        batch: &Batch,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Where a source wants status written.
#[derive(Debug, Clone)]
pub enum Target {
    /// A PostgreSQL table.
    Pg(pg::PgStatus),
    /// A MongoDB collection.
    Mongo(mongodb::MongoStatus),
    /// A ZooKeeper subtree.
    Zoo(zoo::ZooStatus),
}

/// Starts writing status to `target` for `me`, from the tables the main loop
/// publishes on `table`. Refuses to start when another live emperor holds
/// `me.host` there; a store that cannot be reached only delays the writes.
pub async fn start(target: Target, me: Me, table: watch::Receiver<Arc<Table>>) -> Result<StatusTask, StatusError> {
    let stop = Arc::new(Notify::new());
    let task = match target {
        Target::Pg(store) => writer::start(store, me, table, stop.clone()).await,
        Target::Mongo(store) => writer::start(store, me, table, stop.clone()).await,
        Target::Zoo(store) => writer::start(store, me, table, stop.clone()).await,
    }?;
    Ok(StatusTask { task, stop })
}

/// How long a clean stop waits for the final status of every store.
pub const FINAL_WAIT: Duration = Duration::from_secs(1);

/// A running status writer, and how to end it.
#[derive(Debug)]
pub struct StatusTask {
    task: JoinHandle<()>,
    /// Tells the writer that every vassal was stopped.
    stop: Arc<Notify>,
}

/// Ends the status writers. After a clean stop (`stopped`: the emperor
/// stopped every vassal on a stop signal) each first marks its host's rows
/// `stopped` and gives its heartbeat row a last beat with `stopped_at`,
/// waiting at most [`FINAL_WAIT`] in all: a store that does not answer never
/// holds up the stop. Otherwise (the emperor leaves its vassals running for
/// the next one) the rows are left as they are.
pub async fn finish(mut tasks: Vec<StatusTask>, stopped: bool) {
    if stopped && !tasks.is_empty() {
        tasks.iter().for_each(|t| t.stop.notify_one());
        let all = futures::future::join_all(tasks.iter_mut().map(|t| &mut t.task));
        if tokio::time::timeout(FINAL_WAIT, all).await.is_err() {
            tracing::warn!("the final status could not be written in time; the heartbeat rows expire instead");
        }
    }
    tasks.iter().for_each(|t| t.task.abort());
}

/// The status options of a source's URI: `status=NAME` (the table or
/// collection; the heartbeats go to `NAME_hosts`) and
/// `status-heartbeat=SECONDS` (the heartbeat period).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// Where status goes; `None`: not written.
    pub name: Option<String>,
    /// The heartbeat period, when not the default.
    pub heartbeat: Option<Duration>,
}

impl Options {
    /// Takes `key=value` when it is a status option (`Ok(false)` when not).
    pub fn take(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key.trim() {
            "status" if value.trim().is_empty() => return Err("status= needs a table or collection name".into()),
            "status" => self.name = Some(value.trim().to_owned()),
            "status-heartbeat" => {
                let secs = crate::source::util::seconds::parse_positive(value)
                    .map_err(|e| format!("status-heartbeat: {e}"))?;
                self.heartbeat = Some(secs);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Splits the trailing `;status…=…` segments off `rest`.
    pub fn strip_trailing(rest: &str) -> Result<(&str, Options), String> {
        let mut options = Options::default();
        let mut head = rest;
        while let Some((before, last)) = head.rsplit_once(';') {
            let Some((key, value)) = last.split_once('=') else { break };
            if !options.take(key, value)? {
                break;
            }
            head = before;
        }
        options.check()?;
        Ok((head, options))
    }

    /// Refuses a heartbeat period without a status name.
    pub fn check(&self) -> Result<(), String> {
        match (&self.name, self.heartbeat) {
            (None, Some(_)) => Err("status-heartbeat= needs status=".into()),
            _ => Ok(()),
        }
    }

    /// The heartbeat period.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat.unwrap_or(DEFAULT_HEARTBEAT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_options() {
        let (rest, o) = Options::strip_trailing("h:1,e.v,{a:1};status=st;status-heartbeat=0.5").unwrap();
        assert_eq!(rest, "h:1,e.v,{a:1}");
        assert_eq!((o.name.as_deref(), o.heartbeat()), (Some("st"), Duration::from_millis(500)));
        let (rest, o) = Options::strip_trailing("h:1,e.v,{a:'x;y=z'}").unwrap();
        assert_eq!((rest, o), ("h:1,e.v,{a:'x;y=z'}", Options::default()));
        assert_eq!(Options::default().heartbeat(), DEFAULT_HEARTBEAT);
        assert!(Options::strip_trailing("h;status-heartbeat=1").is_err());
        assert!(Options::strip_trailing("h;status=").is_err());
        assert!(Options::strip_trailing("h;status=x;status-heartbeat=-1").is_err());
    }
}
