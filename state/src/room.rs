//! Room on the state dir's filesystem, checked before every write.
//!
//! sled handles a write error (`ENOSPC`) by failing every later operation of
//! the open database, for good: a store that once hit a full disk stays
//! unwritable even after space returns. So the store refuses to write
//! while less than [`MIN_FREE`] bytes are free, before sled sees the
//! error, and writes again once space returns. An outage is reported once
//! ([`Store::outage_began`], [`Store::outage_ended`]).

use crate::{StateError, Store};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The free space below which the store refuses writes: several times
/// what one reconcile round of a large fleet writes.
pub const MIN_FREE: u64 = 1 << 20;

/// The state dir's filesystem, and whether writes are failing.
#[derive(Debug, Clone)]
pub(crate) struct Room {
    dir: PathBuf,
    failing: Arc<AtomicBool>,
}

impl Room {
    /// Watches the filesystem of `dir`.
    pub(crate) fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned(), failing: Arc::default() }
    }

    /// Refuses a write while fewer than [`MIN_FREE`] bytes are free (to an
    /// unprivileged user; root's reserve is not counted on).
    pub(crate) fn check(&self) -> Result<(), StateError> {
        let Ok(stat) = rustix::fs::statvfs(&self.dir) else { return Ok(()) };
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        if free < MIN_FREE {
            return Err(StateError::Full { dir: self.dir.clone(), free });
        }
        Ok(())
    }
}

impl Store {
    /// Notes that a write failed; `true` the first time since the store was
    /// last written successfully (the moment to say so).
    pub fn outage_began(&self) -> bool {
        !self.room.failing.swap(true, Ordering::AcqRel)
    }

    /// Notes that a write succeeded; `true` when writes were failing until
    /// now (the moment to say they work again).
    pub fn outage_ended(&self) -> bool {
        self.room.failing.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_reported_once_each_way() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let other = store.clone();
        assert!(!store.outage_ended(), "no outage yet");
        assert!(store.outage_began());
        assert!(!other.outage_began(), "shared by every handle");
        assert!(other.outage_ended());
        assert!(!store.outage_ended());
    }

    #[test]
    fn a_roomy_filesystem_takes_writes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Room::new(dir.path()).check().is_ok());
    }
}
