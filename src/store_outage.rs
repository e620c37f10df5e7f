//! Saying once that the state store cannot be written (a full disk, say),
//! and once that it can again, whichever part of the emperor hits it: a
//! write retried every round must not fill the log with the same error.

use state::{StateError, Store};

/// Reports a failed write of `what`: as an error the first time since the
/// store was last written, quietly after that.
pub(crate) fn write_failed(store: &Store, what: &str, error: &StateError) {
    if store.outage_began() {
        tracing::error!(%error, what, "cannot write the state store: running vassals keep running; new vassals wait until it can be written");
    } else {
        tracing::debug!(%error, what, "cannot write the state store");
    }
}

/// Reports a successful flush, which ends an outage.
pub(crate) fn write_succeeded(store: &Store) {
    if store.outage_ended() {
        tracing::info!("the state store can be written again");
    }
}
