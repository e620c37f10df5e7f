//! Table sources (`pg://`, `mongodb://`, `zoo://`, `ldap://`): a query whose rows are vassals,
//! re-run when the server says something changed, published as complete
//! snapshots; a backend whose server says which rows changed re-reads only
//! those, published as one upsert or removal each.
//!
//! A backend only knows its server: how to connect, how to fetch and decode
//! every row (or a few named ones), and how to wait for the next change. The
//! one driver, [`run`], owns everything else: retry with backoff and one
//! warning per outage, the query timeout, coalescing of change bursts into
//! one fetch ([`dirty`]), reporting each bad row once, and publishing only
//! what changed (the last snapshot stays in force during an outage). The
//! whole query stays the safety net: on connecting, every period, when a
//! burst names too many rows, and whenever a lookup cannot answer.

pub mod dirty;
pub mod ldap;
pub mod mongodb;
pub mod pg;
pub mod publish;
pub mod rows;
pub mod zoo;

use crate::source::util::retry::Outage;
use crate::source::{SourceContext, SourceError};
use dirty::Dirty;
use publish::Publisher;
use rows::{Complaints, Row};
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Longest a connection attempt or a query may take before the connection
/// is considered dead.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// What waiting for a change ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The server signalled a change: fetch again.
    Changed,
    /// The server signalled which rows changed (possibly none, or too many
    /// to name): fetch those.
    Rows(Dirty),
    /// Nothing was signalled within the wait: fetch again as a safety net.
    Quiet,
    /// The connection is gone: reconnect.
    Lost(String),
}

/// Why a fetch produced no rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The connection is gone: reconnect.
    Lost(String),
    /// The query failed on a working connection: retry on it.
    Query(String),
}

/// One server kind behind a table source.
pub trait Backend: Send + Sync + 'static {
    /// An open connection (plus whatever delivers its change signals).
    type Conn: Send;
    /// The server's name for log lines (`PostgreSQL`).
    const NAME: &'static str;

    /// Connects and subscribes to changes (before the first fetch, so that
    /// no change made between the two is missed).
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, String>> + Send;
    /// Runs the query once and decodes every row.
    fn fetch(&self, conn: &mut Self::Conn) -> impl Future<Output = Result<Vec<Row>, Failure>> + Send;
    /// Re-reads only the rows named `names`; `Ok(None)` when this backend
    /// or its query cannot (the driver then runs the whole query).
    fn fetch_rows(
        &self,
        _conn: &mut Self::Conn,
        _names: &BTreeSet<String>,
    ) -> impl Future<Output = Result<Option<Vec<Row>>, Failure>> + Send {
        std::future::ready(Ok(None))
    }
    /// Waits at most `wait` for the server to signal a change. Must be
    /// cancel-safe: the driver polls it with a zero wait to drain a burst.
    fn changed(&self, conn: &mut Self::Conn, wait: Duration) -> impl Future<Output = Change> + Send;
    /// The longest time between two fetches on `conn` (a polling interval,
    /// or the resync period when the server signals changes).
    fn period(&self, conn: &Self::Conn, resync: Duration) -> Duration;
}

/// Where the driver stands.
enum State<C> {
    /// Opening a connection.
    Connecting,
    /// Connected: run the query (the whole of it, or for the rows marked).
    Fetching(C, Dirty),
    /// Connected: wait for a change, at most until then (the next whole query).
    Waiting(C, Instant),
    /// Disconnected: wait this long before connecting again.
    Backoff(Duration),
}

/// Runs a table source until the emperor stops listening (it retries
/// every failure itself, so it never ends with an error).
pub async fn run<B: Backend>(backend: B, ctx: SourceContext) -> Result<(), SourceError> {
    let mut driver = Driver {
        outage: Outage::new(ctx.id.clone()),
        publisher: Publisher::new(ctx.clone()),
        complaints: Complaints::default(),
        synced: false,
        next_full: Instant::now(),
        backend,
        ctx,
    };
    tracing::info!(source = %driver.ctx.id, server = B::NAME, "table source started");
    let mut state = State::Connecting;
    loop {
        state = match state {
            State::Connecting => driver.connect().await,
            State::Fetching(conn, dirty) => match driver.fetch(conn, dirty).await {
                Some(next) => next,
                None => return Ok(()),
            },
            State::Waiting(conn, until) => driver.wait(conn, until).await,
            State::Backoff(delay) => {
                tokio::time::sleep(delay).await;
                State::Connecting
            }
        };
    }
}

/// Adds what a wait for a change ended with to `dirty`: `Ok(false)` when
/// nothing was signalled, `Err` when the connection is gone.
fn absorb(change: Result<Change, tokio::time::error::Elapsed>, dirty: &mut Dirty) -> Result<bool, String> {
    match change {
        Ok(Change::Lost(e)) => Err(e),
        Ok(Change::Changed) => {
            dirty.mark_full();
            Ok(true)
        }
        Ok(Change::Rows(rows)) => {
            dirty.merge(rows);
            Ok(true)
        }
        Ok(Change::Quiet) | Err(_) => Ok(false),
    }
}

/// The state a table source keeps across connections.
struct Driver<B> {
    backend: B,
    ctx: SourceContext,
    outage: Outage,
    publisher: Publisher,
    complaints: Complaints,
    /// Whether the last whole query on this connection worked (rows re-read
    /// alone are applied to its result).
    synced: bool,
    /// When the whole query runs again if nothing asks for it sooner.
    next_full: Instant,
}

impl<B: Backend> Driver<B> {
    async fn connect(&mut self) -> State<B::Conn> {
        self.synced = false;
        match tokio::time::timeout(QUERY_TIMEOUT, self.backend.connect()).await {
            Ok(Ok(conn)) => State::Fetching(conn, Dirty::full()),
            Ok(Err(e)) => self.lost(&format!("connecting to {} failed", B::NAME), &e),
            Err(_) => self.lost(&format!("connecting to {} failed", B::NAME), &"timed out"),
        }
    }

    /// Re-reads the rows `dirty` names, or the whole query; `None` once the
    /// emperor stops listening.
    async fn fetch(&mut self, mut conn: B::Conn, dirty: Dirty) -> Option<State<B::Conn>> {
        if dirty.is_full() || !self.synced || !self.publisher.has_snapshot() {
            return self.fetch_all(conn).await;
        }
        let fetched = tokio::time::timeout(QUERY_TIMEOUT, self.backend.fetch_rows(&mut conn, dirty.names())).await;
        let rows = match fetched {
            Ok(Ok(Some(rows))) => rows,
            Ok(Ok(None)) => return self.fetch_all(conn).await,
            Ok(Err(Failure::Query(e))) => {
                tracing::debug!(source = %self.ctx.id, error = %e, "re-reading the changed rows failed; running the whole query");
                return self.fetch_all(conn).await;
            }
            Ok(Err(Failure::Lost(e))) => return Some(self.lost(&format!("the {} connection failed", B::NAME), &e)),
            Err(_) => return Some(self.timed_out()),
        };
        let Some(found) = rows::collect_some(&self.ctx.id, &rows, &mut self.complaints) else {
            return self.fetch_all(conn).await;
        };
        if !self.publisher.apply(dirty.names(), found).await {
            return None;
        }
        Some(State::Waiting(conn, self.next_full))
    }

    /// Runs the whole query and publishes its result; `None` once the
    /// emperor stops listening.
    async fn fetch_all(&mut self, mut conn: B::Conn) -> Option<State<B::Conn>> {
        let period = self.backend.period(&conn, self.ctx.resync);
        let fetched = tokio::time::timeout(QUERY_TIMEOUT, self.backend.fetch(&mut conn)).await;
        Some(match fetched {
            Ok(Ok(rows)) => {
                if self.outage.is_down() {
                    self.ctx.report_up();
                }
                self.outage.ok();
                let specs = rows::collect(&self.ctx.id, &rows, &mut self.complaints);
                if !self.publisher.publish(specs).await {
                    return None;
                }
                self.synced = true;
                self.next_full = Instant::now() + period;
                State::Waiting(conn, self.next_full)
            }
            Ok(Err(Failure::Query(e))) => {
                self.synced = false;
                self.ctx.report_down(format!("the vassal query failed: {e}"));
                let delay = self.outage.failed("the vassal query failed", &e);
                State::Waiting(conn, Instant::now() + delay.min(period))
            }
            Ok(Err(Failure::Lost(e))) => self.lost(&format!("the {} connection failed", B::NAME), &e),
            Err(_) => self.timed_out(),
        })
    }

    /// Waits for a change, then drains whatever else is already signalled,
    /// so that a burst of changes costs one query.
    async fn wait(&mut self, mut conn: B::Conn, until: Instant) -> State<B::Conn> {
        let mut dirty = Dirty::default();
        let wait = until.saturating_duration_since(Instant::now());
        let first = tokio::time::timeout(wait, self.backend.changed(&mut conn, wait)).await;
        match absorb(first, &mut dirty) {
            Err(e) => return self.lost(&format!("the {} connection failed", B::NAME), &e),
            Ok(false) => return State::Fetching(conn, Dirty::full()),
            Ok(true) => {}
        }
        loop {
            let next = tokio::time::timeout(Duration::ZERO, self.backend.changed(&mut conn, Duration::ZERO)).await;
            match absorb(next, &mut dirty) {
                Err(e) => return self.lost(&format!("the {} connection failed", B::NAME), &e),
                Ok(true) => {}
                Ok(false) if dirty.is_empty() => return State::Waiting(conn, until),
                Ok(false) => return State::Fetching(conn, dirty),
            }
        }
    }

    /// A query that did not answer in time: the connection is dead.
    fn timed_out(&mut self) -> State<B::Conn> {
        let e = format!("query timed out after {QUERY_TIMEOUT:?}");
        self.lost(&format!("the {} connection failed", B::NAME), &e)
    }

    /// A failure that ends the connection: the source is down until a
    /// fetch works again (a stalled server is caught by the query timeout).
    fn lost(&mut self, problem: &str, error: &dyn std::fmt::Display) -> State<B::Conn> {
        self.synced = false;
        self.ctx.report_down(format!("{problem}: {error}"));
        State::Backoff(self.outage.failed(problem, error))
    }
}

#[cfg(test)]
mod tests;
