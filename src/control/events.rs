//! The event stream: what happened to vassals and sources, one JSON object
//! per event, each with a sequence number that only grows (also across
//! emperor restarts).
//!
//! The main loop records events while a round runs, writes them to the
//! state store just before the round's one flush, and publishes them on a
//! broadcast channel after it, so a follower only ever sees durable events
//! and the loop never waits for a reader. The store keeps the last
//! [`state::Events::KEEP`] events for `since` to resume from.

use crate::supervisor::LastExit;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// How many published events a follower may fall behind before it is told
/// how many it missed.
const BACKLOG: usize = 4096;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A process was started (`pid`, `generation`).
    Spawned,
    /// A running process took a new config.
    Reloaded,
    /// A new config was unusable; the old process runs on (`reason`).
    ReloadRefused,
    /// A process was asked to stop.
    Stopping,
    /// A process ended (`code` or `signal`; neither when its status is
    /// unknown, as for a re-adopted process).
    Exited,
    /// A vassal will be started again after a delay (`respawn_in` seconds).
    Crashed,
    /// A vassal's config cannot be used; it waits for a new one (`reason`).
    /// Or its start is held for a cause that passes (a full state dir, no
    /// fds or processes to spare) and retried with backoff: said once, when
    /// the hold begins.
    Held,
    /// A source delivers again.
    SourceUp,
    /// A source failed (`error`); it is restarted with backoff.
    SourceDown,
    /// A source delivered its complete listing (`vassals`).
    SourceSynced,
}

/// What an event says beyond its kind; absent fields are left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detail {
    /// The process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// The vassal's generation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// The exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// The signal that ended the process (`SIGKILL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Seconds until the next start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub respawn_in: Option<f64>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A source's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many vassals a source listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vassals: Option<usize>,
}

impl Detail {
    /// The detail of an exit.
    pub fn exit(generation: u64, exit: Option<LastExit>) -> Self {
        let (code, signal) = match exit {
            Some(LastExit::Code(code)) => (Some(code), None),
            Some(LastExit::Signal(signal)) => (None, Some(crate::sys::signal::name(signal))),
            Some(LastExit::Unknown) | None => (None, None),
        };
        Self { generation: Some(generation), code, signal, ..Self::default() }
    }
}

/// One event as it is stored and streamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its sequence number.
    pub seq: u64,
    /// When it happened, in seconds since the epoch (milliseconds precise).
    pub time: f64,
    /// What happened.
    pub event: Kind,
    /// The vassal it concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vassal: Option<String>,
    /// The source it concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The rest.
    #[serde(flatten)]
    pub detail: Detail,
}

/// Whom an event concerns.
#[derive(Debug, Clone)]
pub enum Subject {
    /// A vassal, by name.
    Vassal(String),
    /// A source, by id.
    Source(String),
}

/// An event with its JSON line (no newline), shared by every follower.
#[derive(Debug)]
pub struct Posted {
    /// The event.
    pub event: Event,
    /// Its JSON text.
    pub line: String,
}

/// The loop's side: numbers, stores and publishes events.
pub(crate) struct EventLog {
    next_seq: u64,
    /// Recorded this round, not stored yet.
    pending: Vec<Arc<Posted>>,
    /// How many of `pending` are stored (and released at the next publish).
    stored: usize,
    store: Option<state::Events>,
    tx: broadcast::Sender<Arc<Posted>>,
}

/// The control task's side: the stored tail and the live events.
#[derive(Clone)]
pub(crate) struct EventFeed {
    tx: broadcast::Sender<Arc<Posted>>,
    store: Option<state::Events>,
}

impl EventLog {
    /// A log numbering on from what `store` holds (from 1 without a store),
    /// and the feed that reads it.
    pub(crate) fn new(store: Option<state::Events>) -> (Self, EventFeed) {
        let last = store.as_ref().map_or(0, |s| {
            s.last_seq().unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot read the last event number; numbering from 1");
                0
            })
        });
        let (tx, _) = broadcast::channel(BACKLOG);
        let feed = EventFeed { tx: tx.clone(), store: store.clone() };
        (Self { next_seq: last + 1, pending: Vec::new(), stored: 0, store, tx }, feed)
    }

    /// Records an event; followers see it after the round's flush.
    pub(crate) fn record(&mut self, event: Kind, subject: Subject, detail: Detail) {
        let (vassal, source) = match subject {
            Subject::Vassal(name) => (Some(name), None),
            Subject::Source(id) => (None, Some(id)),
        };
        let event = Event { seq: self.next_seq, time: unix_now(), event, vassal, source, detail };
        self.next_seq += 1;
        let line = serde_json::to_string(&event).unwrap_or_default();
        self.pending.push(Arc::new(Posted { event, line }));
    }

    /// Writes the events recorded so far to the store (made durable by the
    /// flush that follows).
    pub(crate) fn stage(&mut self) {
        let new = &self.pending[self.stored..];
        if new.is_empty() {
            return;
        }
        if let Some(store) = &self.store {
            let rows: Vec<(u64, Vec<u8>)> = new.iter().map(|p| (p.event.seq, p.line.clone().into_bytes())).collect();
            match store.append(&rows) {
                Ok(()) => {}
                // Said once, by the store's other writers.
                Err(e @ state::StateError::Full { .. }) => {
                    tracing::debug!(error = %e, events = rows.len(), "cannot store events")
                }
                Err(e) => tracing::error!(error = %e, events = rows.len(), "cannot store events"),
            }
        }
        self.stored = self.pending.len();
    }

    /// Publishes the stored events to the followers.
    pub(crate) fn release(&mut self) {
        for posted in self.pending.drain(..self.stored) {
            let _ = self.tx.send(posted);
        }
        self.stored = 0;
    }
}

impl EventFeed {
    /// The live events from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Posted>> {
        self.tx.subscribe()
    }

    /// The stored events after `since` (read off the loop's thread).
    pub(crate) async fn stored_after(&self, since: u64) -> state::EventTail {
        let Some(store) = self.store.clone() else { return state::EventTail::default() };
        let read = tokio::task::spawn_blocking(move || store.after(since)).await;
        match read {
            Ok(Ok(tail)) => tail,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the stored events");
                state::EventTail::default()
            }
            Err(_) => state::EventTail::default(),
        }
    }
}

/// The line telling a reader that `count` events are not shown (fell out
/// of the stored tail, or were published while it lagged).
pub(crate) fn missed_line(count: u64) -> String {
    serde_json::json!({ "event": "missed", "missed": count }).to_string()
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_millis() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_on_stored_then_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = state::Store::open(dir.path()).unwrap();
        store.events().append(&[(41, b"{}".to_vec())]).unwrap();
        let (mut log, feed) = EventLog::new(Some(store.events()));
        let mut rx = feed.subscribe();
        let exit = Detail::exit(3, Some(LastExit::Signal(9)));
        log.record(Kind::Exited, Subject::Vassal("a.ini".into()), exit);
        log.release();
        assert!(rx.try_recv().is_err(), "not stored yet, not released");
        log.stage();
        assert_eq!(store.events().last_seq().unwrap(), 42);
        log.release();
        let posted = rx.try_recv().unwrap();
        assert_eq!(posted.event.seq, 42);
        let json: serde_json::Value = serde_json::from_str(&posted.line).unwrap();
        assert_eq!(json["event"], "exited");
        assert_eq!(
            (&json["vassal"], &json["signal"], &json["generation"]),
            (&"a.ini".into(), &"SIGKILL".into(), &3.into())
        );
        assert!(json.get("code").is_none() && json.get("source").is_none(), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&posted.line).unwrap(), posted.event);
    }
}
