//! The coalescing map between the status table the main loop publishes and
//! what the status store holds: which rows to write or delete, and when.
//!
//! Nothing here does I/O. The writer tells it what the emperor shows now
//! ([`Dirty::observe`]) and what the store holds (after a read-back,
//! [`Dirty::stored`]); it keeps one pending entry per vassal (the newest
//! value wins), due 200 ms after the change for an urgent one (a crash, a
//! stop, a held config) and 1 s after it otherwise. [`Dirty::batch`] takes
//! what is pending, at most [`MAX_ROWS`] rows per statement; only a
//! successful write ([`Dirty::written`]) changes what the store is known to
//! hold, so a failed write is simply retried with whatever is newest then.

use crate::control::{State, Table, VassalView};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// How soon an urgent change (crashed, stopping, stopped, held) is written.
pub const URGENT: Duration = Duration::from_millis(200);
/// How soon any other change (and a removal) is written.
pub const NORMAL: Duration = Duration::from_secs(1);
/// The most rows one statement writes or deletes.
pub const MAX_ROWS: usize = 1000;

/// One vassal's status row, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Its state, as `ctl list` prints it.
    pub state: &'static str,
    /// Its current process.
    pub pid: Option<i32>,
    /// When it entered its state, in seconds since the epoch on this host's
    /// clock; `None` when unknown (a row read back from the store).
    pub since: Option<f64>,
    /// How many times it was started again since the emperor started.
    pub restarts: i32,
    /// How its last process ended (`code 1`, `signal SIGKILL`, `unknown`).
    pub last_exit: Option<String>,
}

impl Row {
    /// The row of a vassal of the table.
    pub fn of(view: &VassalView) -> Self {
        Self {
            state: view.state.as_str(),
            pid: view.pid,
            since: view.since,
            restarts: i32::try_from(view.restarts).unwrap_or(i32::MAX),
            last_exit: view.last_exit.map(|exit| exit.to_string()),
        }
    }

    /// Whether `self` (what the emperor shows) needs no write over `stored`.
    /// A stored `since` that is unknown counts as equal: the store's own is kept.
    fn matches(&self, stored: &Row) -> bool {
        self.state == stored.state
            && self.pid == stored.pid
            && self.restarts == stored.restarts
            && self.last_exit == stored.last_exit
            && (stored.since.is_none() || self.since == stored.since)
    }

    /// Whether writing `self` over `stored` is urgent: a change to a state
    /// that needs attention (crashed, stopping, stopped, held), or a process
    /// that ended (a crash respawned at once shows only as a new `last_exit`
    /// or another restart).
    fn is_urgent_over(&self, stored: Option<&Row>) -> bool {
        const URGENT_STATES: [State; 4] = [State::Crashed, State::Stopping, State::Stopped, State::Held];
        let urgent_state = URGENT_STATES.iter().any(|s| s.as_str() == self.state);
        match stored {
            None => urgent_state,
            Some(stored) => {
                (urgent_state && stored.state != self.state)
                    || stored.last_exit != self.last_exit
                    || stored.restarts != self.restarts
            }
        }
    }
}

/// The state named `text` as the static name rows hold (`unknown` for a
/// name this emperor does not know, which no vassal of it ever matches).
pub fn state_name(text: &str) -> &'static str {
    const ALL: [State; 7] =
        [State::Running, State::Waiting, State::Starting, State::Stopping, State::Crashed, State::Held, State::Stopped];
    ALL.iter().map(|s| s.as_str()).find(|name| *name == text).unwrap_or("unknown")
}

/// The rows of every vassal of `table`.
pub fn rows_of(table: &Table) -> BTreeMap<String, Row> {
    table.vassals.values().map(|view| (view.name.clone(), Row::of(view))).collect()
}

/// One row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Upsert {
    /// The vassal.
    pub name: String,
    /// Its row.
    pub row: Row,
    /// How long ago it entered its state, when `since` must be (re)written;
    /// `None` keeps the stored `since`.
    pub age: Option<f64>,
}

/// What one round of writing does: upserts and deletes, each list at most
/// [`MAX_ROWS`] long.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Rows to insert or update.
    pub upserts: Vec<Upsert>,
    /// Names whose rows to delete.
    pub deletes: Vec<String>,
}

impl Batch {
    /// Whether it writes nothing.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }
}

/// The coalescing map (see the module doc).
#[derive(Debug, Default)]
pub struct Dirty {
    /// What the emperor shows now.
    desired: BTreeMap<String, Row>,
    /// What the store holds, as far as this emperor knows.
    written: HashMap<String, Row>,
    /// Names whose store row differs from `desired`, and when each is due.
    pending: BTreeMap<String, Instant>,
}

impl Dirty {
    /// Notes what the emperor shows now (the rows of the latest table).
    pub fn observe(&mut self, desired: BTreeMap<String, Row>, now: Instant) {
        self.desired = desired;
        let gone = self.written.keys().filter(|name| !self.desired.contains_key(*name));
        // Only the names that are or become pending are touched (and cloned):
        // an idle round costs one comparison per vassal.
        let changes: Vec<(String, Option<Instant>)> = self
            .desired
            .keys()
            .chain(gone)
            .filter_map(|name| {
                let due = self.due_of(name, now);
                (due.is_some() || self.pending.contains_key(name)).then(|| (name.clone(), due))
            })
            .collect();
        for (name, due) in changes {
            self.set_due(name, due);
        }
        self.pending.retain(|name, _| self.desired.contains_key(name) || self.written.contains_key(name));
    }

    /// Marks every vassal `stopped` since `wall`, without a process (the
    /// emperor stopped them all on a stop signal): the vassals of the last
    /// table (`shown`), or else those the store holds.
    pub fn stop_all(&mut self, shown: bool, wall: SystemTime, now: Instant) {
        let since = wall.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let last = match shown {
            true => std::mem::take(&mut self.desired),
            false => self.written.iter().map(|(name, row)| (name.clone(), row.clone())).collect(),
        };
        let stopped = last
            .into_iter()
            .map(|(name, row)| (name, Row { state: State::Stopped.as_str(), pid: None, since: Some(since), ..row }))
            .collect();
        self.observe(stopped, now);
    }

    /// How many vassals the emperor shows.
    pub fn vassals(&self) -> usize {
        self.desired.len()
    }

    /// Notes what the store holds for this host (read back at start, after
    /// a reconnect, and now and then): only the differences become pending.
    pub fn stored(&mut self, stored: HashMap<String, Row>, now: Instant) {
        self.written = stored;
        self.pending.clear();
        let desired = std::mem::take(&mut self.desired);
        self.observe(desired, now);
    }

    /// When a write of `name` would be due if it became pending `now`;
    /// `None` when the store already holds what the emperor shows.
    fn due_of(&self, name: &str, now: Instant) -> Option<Instant> {
        match (self.desired.get(name), self.written.get(name)) {
            (Some(row), Some(stored)) if row.matches(stored) => None,
            (Some(row), stored) if row.is_urgent_over(stored) => Some(now + URGENT),
            (Some(_), _) | (None, Some(_)) => Some(now + NORMAL),
            (None, None) => None,
        }
    }

    /// Makes `name` pending until `due` (an entry keeps its earlier
    /// deadline), or not pending.
    fn set_due(&mut self, name: String, due: Option<Instant>) {
        match due {
            None => {
                self.pending.remove(&name);
            }
            Some(due) => {
                let at = self.pending.entry(name).or_insert(due);
                *at = (*at).min(due);
            }
        }
    }

    /// When the earliest pending change is due; `None` when nothing is.
    pub fn due(&self) -> Option<Instant> {
        self.pending.values().min().copied()
    }

    /// Whether anything waits to be written.
    pub fn is_clean(&self) -> bool {
        self.pending.is_empty()
    }

    /// The next statement's worth of pending changes (all of them are
    /// taken once one is due, so that one statement carries as many as it
    /// can); `wall` is this host's clock, for the ages of new states.
    pub fn batch(&self, wall: SystemTime) -> Batch {
        let now = wall.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let mut batch = Batch::default();
        for name in self.pending.keys() {
            match self.desired.get(name) {
                Some(row) if batch.upserts.len() < MAX_ROWS => {
                    let stored = self.written.get(name);
                    let new_since =
                        stored.is_none_or(|s| s.state != row.state || s.since.is_some_and(|t| Some(t) != row.since));
                    let age = new_since.then(|| row.since.map(|since| (now - since).max(0.0))).flatten();
                    batch.upserts.push(Upsert { name: name.clone(), row: row.clone(), age });
                }
                None if batch.deletes.len() < MAX_ROWS => batch.deletes.push(name.clone()),
                _ => {}
            }
        }
        batch
    }

    /// Notes that `batch` is now in the store.
    pub fn written(&mut self, batch: &Batch) {
        for upsert in &batch.upserts {
            let mut row = upsert.row.clone();
            if let Some(stored) = self.written.get(&upsert.name).filter(|_| upsert.age.is_none()) {
                row.since = stored.since;
            }
            self.written.insert(upsert.name.clone(), row);
        }
        for name in &batch.deletes {
            self.written.remove(name);
        }
        let names: Vec<String> = batch.upserts.iter().map(|u| &u.name).chain(&batch.deletes).cloned().collect();
        let now = Instant::now();
        for name in names {
            let due = self.due_of(&name, now);
            self.set_due(name, due);
        }
    }
}

#[cfg(test)]
#[path = "dirty_tests.rs"]
mod tests;
