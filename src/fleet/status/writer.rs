//! The task that writes status: it follows the table the main loop
//! publishes, flushes the coalesced changes when they are due, renews the
//! heartbeat, and reconnects with the sources' backoff. The main loop never
//! waits for it.

use super::dirty::{rows_of, Dirty};
use super::{Claim, Me, StatusError, Store, LEASE_PERIODS};
use crate::control::{Table, VassalCounts};
use crate::source::util::retry::Outage;
use reconciler::SourceId;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

/// Longest one statement (or a connection attempt) may take.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the emperor's start waits for the store, to check its host name.
pub const START_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the rows are read back and compared, besides every reconnect.
pub const ANTI_ENTROPY: Duration = Duration::from_secs(600);

/// Why a connection was given up.
#[derive(Debug)]
enum Failure {
    /// The store failed: reconnect after a backoff.
    Lost(String),
    /// Another emperor holds this host name: stop writing.
    Taken(Claim),
    /// Nothing more to write.
    Ended,
}

/// The writer's state across connections.
struct Writer<S: Store> {
    store: S,
    me: Me,
    table: watch::Receiver<Arc<Table>>,
    dirty: Dirty,
    outage: Outage,
    /// Whether the main loop has published a table since the writer
    /// started: until then nothing is written (the empty table of a start
    /// would delete every row of the host).
    ready: bool,
    /// Notified when the emperor stopped every vassal on a stop signal.
    stop: Arc<Notify>,
}

/// Connects and claims the host name (waiting at most [`START_TIMEOUT`]),
/// then runs the writer as a task of its own.
pub async fn start<S: Store>(
    store: S,
    me: Me,
    table: watch::Receiver<Arc<Table>>,
    stop: Arc<Notify>,
) -> Result<JoinHandle<()>, StatusError> {
    let outage = Outage::new(SourceId(format!("{} (status)", store.source())));
    let mut writer = Writer { store, me, table, dirty: Dirty::default(), outage, ready: false, stop };
    tracing::info!(source = %writer.store.source(), host = %writer.me.host, "writing this host's vassal status back to the source's server");
    let first = match timeout(START_TIMEOUT, writer.open()).await {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(Failure::Taken(claim))) => return Err(writer.taken(claim)),
        Ok(Err(failure)) => {
            writer.failed(&failure);
            None
        }
        Err(_) => {
            writer.failed(&Failure::Lost("timed out".into()));
            None
        }
    };
    Ok(tokio::spawn(writer.run(first)))
}

impl<S: Store> Writer<S> {
    /// The lease of a heartbeat.
    fn lease(&self) -> Duration {
        self.store.heartbeat() * LEASE_PERIODS
    }

    /// The error that names the other emperor.
    fn taken(&self, claim: Claim) -> StatusError {
        let (emperor_id, pid) = match claim {
            Claim::Taken { emperor_id, pid } => (emperor_id, pid.map_or_else(|| "?".to_owned(), |p| p.to_string())),
            Claim::Ours => (String::new(), String::new()),
        };
        StatusError::HostTaken {
            host: self.me.host.clone(),
            store: self.store.source().to_owned(),
            emperor_id,
            pid,
            lease: self.lease(),
        }
    }

    /// Runs one store operation with the timeout.
    async fn op<T>(&self, what: &str, future: impl Future<Output = Result<T, String>>) -> Result<T, Failure> {
        match timeout(OP_TIMEOUT, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Failure::Lost(format!("{what}: {e}"))),
            Err(_) => Err(Failure::Lost(format!("{what}: timed out after {OP_TIMEOUT:?}"))),
        }
    }

    /// The per-state counts of the latest table, as JSON.
    fn counts(&self) -> String {
        serde_json::to_string(&self.table.borrow().counts()).unwrap_or_else(|_| "{}".into())
    }

    /// Connects, claims the host name, and reads back this host's rows.
    async fn open(&mut self) -> Result<S::Conn, Failure> {
        let mut conn = self.op("connecting", self.store.connect()).await?;
        self.claim(&mut conn).await?;
        let stored = self.op("reading back the status rows", self.store.read(&mut conn, &self.me.host)).await?;
        self.dirty.stored(stored, Instant::now());
        self.outage.ok();
        tracing::debug!(source = %self.store.source(), host = %self.me.host, "status store connected");
        Ok(conn)
    }

    /// Takes (or keeps) the heartbeat row.
    async fn claim(&mut self, conn: &mut S::Conn) -> Result<(), Failure> {
        let counts = self.counts();
        match self.op("claiming the host name", self.store.claim(conn, &self.me, self.lease(), &counts)).await? {
            Claim::Ours => Ok(()),
            taken => Err(Failure::Taken(taken)),
        }
    }

    /// Notes the latest table (after the main loop published one).
    fn observe(&mut self) {
        self.ready = true;
        let rows = rows_of(&self.table.borrow_and_update());
        self.dirty.observe(rows, Instant::now());
    }

    /// Logs a failure (one warning per outage) and returns the backoff.
    fn failed(&mut self, failure: &Failure) -> Duration {
        match failure {
            Failure::Lost(e) => self.outage.failed("the status store failed", e),
            Failure::Taken(_) | Failure::Ended => Duration::ZERO,
        }
    }

    /// Writes until the main loop is gone or another emperor takes the host name.
    async fn run(mut self, mut conn: Option<S::Conn>) {
        loop {
            let failure = match conn.take() {
                Some(conn) => self.serve(conn).await,
                None => match self.open().await {
                    Ok(conn) => self.serve(conn).await,
                    Err(failure) => failure,
                },
            };
            match failure {
                Failure::Ended => return,
                Failure::Taken(claim) => {
                    let error = self.taken(claim);
                    tracing::error!(source = %self.store.source(), host = %self.me.host, "{error}; status is no longer written");
                    return;
                }
                Failure::Lost(_) => {
                    let delay = self.failed(&failure);
                    if !self.wait(delay).await {
                        return self.finish_anew().await;
                    }
                }
            }
        }
    }

    /// Waits out a backoff; `false` if the emperor stopped every vassal
    /// meanwhile.
    async fn wait(&mut self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                changed = self.table.changed() => match changed {
                    Ok(()) => self.observe(),
                    Err(_) => {
                        self.stopped().await;
                        return false;
                    }
                },
                () = self.stop.notified() => return false,
                () = tokio::time::sleep_until(until) => return true,
            }
        }
    }

    /// Waits until the emperor says it stopped every vassal, once the main
    /// loop is gone. When it leaves them running instead (to the next
    /// emperor), it ends this task and the rows stay as they are.
    async fn stopped(&self) {
        self.stop.notified().await;
    }

    /// Serves one connection: writes changes when due, beats, reads back.
    async fn serve(&mut self, mut conn: S::Conn) -> Failure {
        let period = self.store.heartbeat();
        let mut next_beat = Instant::now() + period;
        let mut next_sync = Instant::now() + ANTI_ENTROPY;
        loop {
            let due = self.dirty.due().filter(|_| self.ready);
            let wake = due.map_or(next_beat, |due| due.min(next_beat)).min(next_sync);
            tokio::select! {
                changed = self.table.changed() => {
                    if changed.is_err() {
                        self.stopped().await;
                        return self.finish(&mut conn).await;
                    }
                    self.observe();
                    continue;
                }
                () = self.stop.notified() => return self.finish(&mut conn).await,
                () = tokio::time::sleep_until(wake) => {}
            }
            let now = Instant::now();
            let step = async {
                if due.is_some_and(|due| due <= now) {
                    self.flush(&mut conn).await?;
                }
                if now >= next_beat {
                    self.beat(&mut conn).await?;
                    next_beat = now + period;
                }
                if now >= next_sync {
                    let stored =
                        self.op("reading back the status rows", self.store.read(&mut conn, &self.me.host)).await?;
                    self.dirty.stored(stored, now);
                    next_sync = now + ANTI_ENTROPY;
                }
                Ok::<(), Failure>(())
            };
            if let Err(failure) = step.await {
                return failure;
            }
        }
    }

    /// Writes the final status of a clean stop on `conn`: every row of this
    /// host `stopped`, then the heartbeat row's last beat with `stopped_at`.
    async fn finish(&mut self, conn: &mut S::Conn) -> Failure {
        self.dirty.stop_all(self.ready, SystemTime::now(), Instant::now());
        let rows = self.dirty.vassals();
        let counts = serde_json::to_string(&VassalCounts { stopped: rows, ..VassalCounts::default() })
            .unwrap_or_else(|_| "{}".into());
        let result = async {
            self.flush(conn).await?;
            self.op("writing the last heartbeat", self.store.stopped(conn, &self.me, &counts)).await
        };
        match result.await {
            Ok(_) => {
                tracing::info!(source = %self.store.source(), host = %self.me.host, vassals = rows, "status: every vassal stopped, the host stopped")
            }
            Err(Failure::Lost(e)) => {
                tracing::warn!(source = %self.store.source(), host = %self.me.host, error = %e, "the final status could not be written; the heartbeat row expires instead")
            }
            Err(_) => {}
        }
        Failure::Ended
    }

    /// Connects to write the final status of a clean stop (the connection
    /// was lost before it).
    async fn finish_anew(&mut self) {
        match self.open().await {
            Ok(mut conn) => {
                self.finish(&mut conn).await;
            }
            Err(failure) => {
                self.failed(&failure);
            }
        }
    }

    /// Writes everything pending, one statement's worth at a time.
    async fn flush(&mut self, conn: &mut S::Conn) -> Result<(), Failure> {
        while !self.dirty.is_clean() {
            let batch = self.dirty.batch(SystemTime::now());
            if batch.is_empty() {
                break;
            }
            self.op("writing status rows", self.store.write(conn, &self.me.host, &batch)).await?;
            self.dirty.written(&batch);
            tracing::debug!(
                source = %self.store.source(), upserts = batch.upserts.len(), deletes = batch.deletes.len(),
                "status rows written"
            );
        }
        Ok(())
    }

    /// Renews the heartbeat; claims the row again when it is no longer ours.
    async fn beat(&mut self, conn: &mut S::Conn) -> Result<(), Failure> {
        let counts = self.counts();
        if !self.op("renewing the heartbeat", self.store.beat(conn, &self.me, &counts)).await? {
            self.claim(conn).await?;
        }
        Ok(())
    }
}
