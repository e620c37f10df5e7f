//! Singleton vassals: a lease per singleton, held in the vassal's own
//! source, decides which emperor of a fleet runs it.
//!
//! [`machine`] is the holder of one lease as a pure state machine;
//! [`task`] runs the machines of one source against its [`LeaseStore`]
//! (its own connection) and tells the main loop when a singleton may run,
//! and when it must stop; [`timing`] holds the timeouts and their rules.

pub mod machine;
pub mod task;
pub mod timing;

pub use timing::{Timing, TimingError};

use std::future::Future;
use std::pin::Pin;

/// Whether vassals of `source` may be singletons: its scheme keeps leases
/// (`pg://`, `mongodb://`, `mongodb2://`, `zoo://`). A singleton from any
/// other source is refused.
pub fn holds_leases(source: &reconciler::SourceId) -> bool {
    ["pg://", "mongodb://", "mongodb2://", "zoo://"].iter().any(|scheme| source.0.starts_with(scheme))
}

/// Why the emperor refuses to start: a source's server will not keep a
/// lease as long as the lease options ask.
#[derive(Debug, thiserror::Error)]
#[error("singleton leases of {source_id}: {why}")]
pub struct LeaseRefused {
    /// The source.
    pub source_id: String,
    /// What its server grants, and what to change.
    pub why: String,
}

/// A future a [`LeaseStore`] returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Where a source keeps its leases: one row (or document) per singleton with
/// its holder, fencing token and expiry, by the store's own clock, or (in
/// ZooKeeper) a queue of nodes that expire with their session. Every call
/// is one conditional write or queue, so that two emperors never both win.
pub trait LeaseStore: Send + 'static {
    /// Takes every lease of `names` that has expired or is already ours;
    /// returns the ones taken, with their tokens (a new token whenever the
    /// holder changes or the lease had expired).
    fn acquire<'a>(&'a mut self, names: &'a [String]) -> StoreFuture<'a, Vec<(String, u64)>>;
    /// Renews each lease that is still ours under the token given; returns
    /// the names renewed.
    fn renew<'a>(&'a mut self, held: &'a [(String, u64)]) -> StoreFuture<'a, Vec<String>>;
    /// Gives up leases of ours whose vassal is gone, so a peer need not
    /// wait for them to expire.
    fn release<'a>(&'a mut self, names: &'a [String]) -> StoreFuture<'a, ()>;
    /// Drops the connection (after a call timed out); the next call connects again.
    fn reset(&mut self);
    /// Checks at start that the store will keep leases as long as asked:
    /// `Some(why)` refuses the start, `Err` means it could not tell (the
    /// store is checked again whenever it connects). Stores whose leases
    /// are whatever length they are given have nothing to check.
    fn refusal(&mut self) -> StoreFuture<'_, Option<String>> {
        Box::pin(async { Ok(None) })
    }
    /// Notified when a lease a candidate waits for may have been freed, so
    /// that it tries at once rather than at its next period; `None` for a
    /// store that cannot tell.
    fn wakeup(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}
