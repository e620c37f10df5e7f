//! Table sources (`pg://`, `mongodb://`, `zoo://`, `ldap://`): a query whose rows are vassals,
//! re-run when the server says something changed, published as complete
//! snapshots.
//!
//! A backend only knows its server: how to connect, how to fetch and decode
//! every row, and how to wait for the next change. The one driver, [`run`],
//! owns everything else: retry with backoff and one warning per outage, the
//! query timeout, coalescing of change bursts, reporting each bad row once,
//! and publishing a snapshot only when it changed (the last one stays in
//! force during an outage).

pub mod ldap;
pub mod mongodb;
pub mod pg;
pub mod rows;
pub mod zoo;

use crate::source::util::retry::Outage;
use crate::source::{SourceContext, SourceError};
use rows::{Complaints, Publisher, Row};
use std::future::Future;
use std::time::Duration;

/// Longest a connection attempt or a query may take before the connection
/// is considered dead.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// What waiting for a change ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The server signalled a change: fetch again.
    Changed,
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
    /// Connected: run the query.
    Fetching(C),
    /// Connected: wait for a change, at most this long.
    Waiting(C, Duration),
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
        backend,
        ctx,
    };
    tracing::info!(source = %driver.ctx.id, server = B::NAME, "table source started");
    let mut state = State::Connecting;
    loop {
        state = match state {
            State::Connecting => driver.connect().await,
            State::Fetching(conn) => match driver.fetch(conn).await {
                Some(next) => next,
                None => return Ok(()),
            },
            State::Waiting(conn, wait) => driver.wait(conn, wait).await,
            State::Backoff(delay) => {
                tokio::time::sleep(delay).await;
                State::Connecting
            }
        };
    }
}

/// The state a table source keeps across connections.
struct Driver<B> {
    backend: B,
    ctx: SourceContext,
    outage: Outage,
    publisher: Publisher,
    complaints: Complaints,
}

impl<B: Backend> Driver<B> {
    async fn connect(&mut self) -> State<B::Conn> {
        match tokio::time::timeout(QUERY_TIMEOUT, self.backend.connect()).await {
            Ok(Ok(conn)) => State::Fetching(conn),
            Ok(Err(e)) => self.lost(&format!("connecting to {} failed", B::NAME), &e),
            Err(_) => self.lost(&format!("connecting to {} failed", B::NAME), &"timed out"),
        }
    }

    /// Fetches and publishes; `None` once the emperor stops listening.
    async fn fetch(&mut self, mut conn: B::Conn) -> Option<State<B::Conn>> {
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
                State::Waiting(conn, period)
            }
            Ok(Err(Failure::Query(e))) => {
                self.ctx.report_down(format!("the vassal query failed: {e}"));
                let delay = self.outage.failed("the vassal query failed", &e);
                State::Waiting(conn, delay.min(period))
            }
            Ok(Err(Failure::Lost(e))) => self.lost(&format!("the {} connection failed", B::NAME), &e),
            Err(_) => {
                let e = format!("query timed out after {QUERY_TIMEOUT:?}");
                self.lost(&format!("the {} connection failed", B::NAME), &e)
            }
        })
    }

    /// Waits for a change, then drains whatever else is already signalled,
    /// so that a burst of changes costs one query.
    async fn wait(&mut self, mut conn: B::Conn, wait: Duration) -> State<B::Conn> {
        match self.backend.changed(&mut conn, wait).await {
            Change::Lost(e) => return self.lost(&format!("the {} connection failed", B::NAME), &e),
            Change::Quiet => return State::Fetching(conn),
            Change::Changed => {}
        }
        loop {
            match tokio::time::timeout(Duration::ZERO, self.backend.changed(&mut conn, Duration::ZERO)).await {
                Ok(Change::Changed) => continue,
                Ok(Change::Lost(e)) => return self.lost(&format!("the {} connection failed", B::NAME), &e),
                Ok(Change::Quiet) | Err(_) => return State::Fetching(conn),
            }
        }
    }

    /// A failure that ends the connection: the source is down until a
    /// fetch works again (a stalled server is caught by the query timeout).
    fn lost(&mut self, problem: &str, error: &dyn std::fmt::Display) -> State<B::Conn> {
        self.ctx.report_down(format!("{problem}: {error}"));
        State::Backoff(self.outage.failed(problem, error))
    }
}

#[cfg(test)]
mod tests;
