//! The tail of the emperor's event stream: each event under its sequence
//! number, the last [`Events::KEEP`] of them, so that a reader can resume
//! with `since` across an emperor restart and no number is ever handed out
//! twice.

use crate::{StateError, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The stored events (opaque bytes, one JSON object each) by sequence
/// number. Written by the emperor's loop, made durable by the store's next
/// flush (the round's one flush), read by the control socket: a cheap clone.
#[derive(Debug, Clone)]
pub struct Events {
    tree: sled::Tree,
    /// The store's "written since the last flush" flag.
    written: Arc<AtomicBool>,
    /// The store's free-space check: a full disk refuses the append.
    room: crate::room::Room,
}

/// Stored events after some sequence number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTail {
    /// The oldest sequence number still stored (0 when none is).
    pub oldest: u64,
    /// The newest sequence number stored (0 when none is).
    pub last: u64,
    /// The events, oldest first, with their sequence numbers.
    pub events: Vec<(u64, Vec<u8>)>,
}

impl Store {
    /// The event tail of this store.
    pub fn events(&self) -> Events {
        Events { tree: self.events.clone(), written: self.written.clone(), room: self.room.clone() }
    }
}

impl Events {
    /// How many events are kept: older ones are dropped as new ones come.
    pub const KEEP: u64 = 10_000;

    /// The highest sequence number stored (0 for none).
    pub fn last_seq(&self) -> Result<u64, StateError> {
        Ok(self.tree.last()?.map_or(0, |(key, _)| seq_of(&key)))
    }

    /// Appends events (their sequence numbers increasing) in one batch and
    /// drops those older than the last [`Events::KEEP`].
    pub fn append(&self, events: &[(u64, Vec<u8>)]) -> Result<(), StateError> {
        let Some(&(last, _)) = events.last() else { return Ok(()) };
        self.room.check()?;
        let mut batch = sled::Batch::default();
        for (seq, event) in events {
            batch.insert(&seq.to_be_bytes(), event.as_slice());
        }
        let keep_from = last.saturating_sub(Self::KEEP - 1);
        for key in self.tree.range(..keep_from.to_be_bytes()).keys() {
            batch.remove(key?);
        }
        self.tree.apply_batch(batch)?;
        self.written.store(true, Ordering::Release);
        Ok(())
    }

    /// Every stored event whose sequence number is above `since`.
    pub fn after(&self, since: u64) -> Result<EventTail, StateError> {
        let oldest = self.tree.first()?.map_or(0, |(key, _)| seq_of(&key));
        let last = self.last_seq()?;
        let from = since.saturating_add(1).to_be_bytes();
        let events =
            self.tree.range(from..).map(|kv| kv.map(|(k, v)| (seq_of(&k), v.to_vec()))).collect::<Result<_, _>>()?;
        Ok(EventTail { oldest, last, events })
    }
}

fn seq_of(key: &[u8]) -> u64 {
    key.try_into().map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64) -> (u64, Vec<u8>) {
        (seq, format!("{{\"seq\":{seq}}}").into_bytes())
    }

    #[test]
    fn events_resume_after_a_sequence_number_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let events = store.events();
            assert_eq!(events.last_seq().unwrap(), 0);
            events.append(&[line(1), line(2)]).unwrap();
            events.append(&[line(3)]).unwrap();
            assert!(store.flush_if_written().unwrap(), "an append is a write to flush");
        }
        let events = Store::open(dir.path()).unwrap().events();
        assert_eq!(events.last_seq().unwrap(), 3);
        let tail = events.after(1).unwrap();
        assert_eq!(tail, EventTail { oldest: 1, last: 3, events: vec![line(2), line(3)] });
        assert!(events.after(3).unwrap().events.is_empty());
    }

    #[test]
    fn only_the_last_events_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let events = Store::open(dir.path()).unwrap().events();
        let all: Vec<_> = (1..=Events::KEEP + 5).map(line).collect();
        events.append(&all[..100]).unwrap();
        events.append(&all[100..]).unwrap();
        let tail = events.after(0).unwrap();
        assert_eq!(tail.oldest, 6);
        assert_eq!(tail.events.len() as u64, Events::KEEP);
        assert_eq!(tail.events.last(), all.last());
    }
}
