//! Where each source stands in its server's change stream, kept with the
//! rest of the store.

use crate::{room, SourceId, StateError, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

impl Store {
    /// The source cursors of this store, for the sources to keep their
    /// position with (made durable with the rest by the next flush).
    pub fn cursors(&self) -> Cursors {
        Cursors { tree: self.cursors.clone(), written: self.written.clone(), room: self.room.clone() }
    }
}

/// Where each source stands in its server's change stream (an LDAP sync
/// cookie, say), as opaque bytes keyed by source id: a restarted emperor
/// resumes from it instead of reading everything again. A cheap clone that
/// a source task may hold.
#[derive(Debug, Clone)]
pub struct Cursors {
    tree: sled::Tree,
    /// The store's "written since the last flush" flag.
    written: Arc<AtomicBool>,
    /// The store's free-space check.
    room: room::Room,
}

impl Cursors {
    /// The cursor last stored for `source`.
    pub fn get(&self, source: &SourceId) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.tree.get(source.0.as_str())?.map(|v| v.to_vec()))
    }

    /// Stores `cursor` for `source`, replacing the previous one.
    pub fn put(&self, source: &SourceId, cursor: &[u8]) -> Result<(), StateError> {
        self.room.check()?;
        self.tree.insert(source.0.as_str(), cursor)?;
        self.written.store(true, Ordering::Release);
        Ok(())
    }

    /// Forgets the cursor of `source`.
    pub fn remove(&self, source: &SourceId) -> Result<(), StateError> {
        self.room.check()?;
        self.tree.remove(source.0.as_str())?;
        self.written.store(true, Ordering::Release);
        Ok(())
    }
}
