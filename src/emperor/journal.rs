//! The desired-state journal: every source event is written to the state
//! store before the controller sees it, so a restarted emperor knows the
//! last desired state of every source; a source waiting for durability (a
//! broker message to acknowledge) hears back only after the flush.

use crate::source::SourceEvent;
use state::Store;
use tokio::sync::oneshot;

/// Writes desired-state events and the generation counter, and completes
/// the acks of what it made durable.
pub(crate) struct Journal {
    store: Store,
    /// Sources waiting to hear that their events are durable.
    acks: Vec<oneshot::Sender<()>>,
    /// The next generation as last written.
    next_generation: u64,
}

impl Journal {
    /// A journal writing to `store`, whose generation counter reads `next_generation`.
    pub(crate) fn new(store: Store, next_generation: u64) -> Self {
        Self { store, acks: Vec::new(), next_generation }
    }

    /// Writes one source event. Its ack completes after the next
    /// [`Journal::commit`]; an event that could not be written drops its
    /// ack, which tells the source it is not durable.
    pub(crate) fn record(&mut self, event: &SourceEvent, ack: Option<oneshot::Sender<()>>) {
        let written = match event {
            SourceEvent::Snapshot { source, specs } => self.store.replace_specs(source, specs, true),
            SourceEvent::Upsert(spec) => self.store.put_spec(spec),
            SourceEvent::Remove { source, name } => self.store.remove_spec(source, name),
        };
        match written {
            Ok(()) => self.acks.extend(ack),
            Err(e) => {
                crate::store_outage::write_failed(&self.store, &format!("desired state of {}", source_of(event)), &e)
            }
        }
    }

    /// Notes the next unused generation; written only when it moved.
    pub(crate) fn set_next_generation(&mut self, next: u64) {
        if next == self.next_generation {
            return;
        }
        match self.store.set_next_generation(next) {
            Ok(()) => self.next_generation = next,
            Err(e) => crate::store_outage::write_failed(&self.store, "generation counter", &e),
        }
    }

    /// Records that an operator stopped `name` (or started it again),
    /// durably, before the emperor acts on it.
    pub(crate) fn set_stopped(
        &mut self,
        name: &reconciler::VassalName,
        stopped: bool,
    ) -> Result<(), state::StateError> {
        self.store.set_stopped(name, stopped)
    }

    /// Makes every write since the last commit durable (one flush, none if
    /// nothing was written), then completes the acks waiting for it.
    pub(crate) fn commit(&mut self) {
        match self.store.flush_if_written() {
            Ok(flushed) => {
                if flushed {
                    crate::store_outage::write_succeeded(&self.store);
                }
                for ack in self.acks.drain(..) {
                    let _ = ack.send(());
                }
            }
            Err(e) => {
                // Dropping the senders tells the sources their events are not durable.
                self.acks.clear();
                crate::store_outage::write_failed(&self.store, "flush", &e);
            }
        }
    }
}

/// The source an event comes from, for logs.
fn source_of(event: &SourceEvent) -> &reconciler::SourceId {
    match event {
        SourceEvent::Snapshot { source, .. } | SourceEvent::Remove { source, .. } => source,
        SourceEvent::Upsert(spec) => &spec.source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconciler::{ConfigRef, SourceId, VassalName, VassalSpec};

    fn upsert(name: &str) -> SourceEvent {
        SourceEvent::Upsert(VassalSpec {
            name: VassalName::parse(name).unwrap(),
            source: SourceId("amqp://x".into()),
            config: ConfigRef::Inline(String::new()),
            version: "1".into(),
            owner: None,
            socket: None,
        })
    }

    #[test]
    fn acks_complete_only_after_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut journal = Journal::new(store.clone(), 1);
        let (tx, mut rx) = oneshot::channel();
        journal.record(&upsert("a.ini"), Some(tx));
        assert!(rx.try_recv().is_err(), "not durable yet");
        journal.commit();
        assert_eq!(rx.try_recv(), Ok(()));
        assert!(!store.flush_if_written().unwrap(), "the commit flushed the event");
    }

    #[test]
    fn the_generation_counter_is_written_only_when_it_moves() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut journal = Journal::new(store.clone(), 4);
        journal.set_next_generation(4);
        assert!(!store.flush_if_written().unwrap());
        journal.set_next_generation(6);
        journal.commit();
        assert_eq!(store.next_generation().unwrap(), 6);
    }
}
