//! The two sides the plan compares: what the sources want ([`Desired`]) and
//! what runs ([`Actual`]).

use crate::{Backoff, SourceId, VassalName, VassalSpec};
use std::collections::{BTreeMap, BTreeSet};

/// One source's current wishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `false` until the source has finished its first full listing; an
    /// incomplete source never causes a stop.
    pub complete: bool,
    /// The vassals it wants, by name.
    pub specs: BTreeMap<VassalName, VassalSpec>,
}

/// The same name offered by two sources; the first registered source wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The contested name.
    pub name: VassalName,
    /// The source whose spec is used.
    pub winner: SourceId,
    /// The source whose spec is ignored.
    pub loser: SourceId,
}

/// The union of every source's snapshot, in registration order, less the
/// names an operator stopped.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    sources: Vec<(SourceId, Snapshot)>,
    /// Names an operator stopped: kept stopped whatever the sources say,
    /// until started again.
    stopped: BTreeSet<VassalName>,
    /// Singletons this emperor does not hold the lease of: another emperor
    /// of the fleet may run them, so this one does not.
    standby: BTreeSet<VassalName>,
}

impl Desired {
    /// Registers a source (incomplete, empty); order decides name conflicts.
    pub fn add_source(&mut self, id: SourceId) {
        if !self.sources.iter().any(|(s, _)| *s == id) {
            self.sources.push((id, Snapshot::default()));
        }
    }

    /// The snapshot of a source, created (and registered) on first use.
    pub fn snapshot_mut(&mut self, id: &SourceId) -> &mut Snapshot {
        self.add_source(id.clone());
        let at = self.sources.iter().position(|(s, _)| s == id).expect("just added");
        &mut self.sources[at].1
    }

    /// The snapshot of a source, if registered.
    pub fn snapshot(&self, id: &SourceId) -> Option<&Snapshot> {
        self.sources.iter().find(|(s, _)| s == id).map(|(_, snap)| snap)
    }

    /// The spec in force for `name`: the first source offering it, unless
    /// an operator stopped it.
    pub fn get(&self, name: &VassalName) -> Option<&VassalSpec> {
        self.offered(name).filter(|_| !self.stopped.contains(name) && !self.standby.contains(name))
    }

    /// Marks `name` a singleton on standby (or no longer); returns whether
    /// that changed anything.
    pub fn set_standby(&mut self, name: &VassalName, standby: bool) -> bool {
        mark(&mut self.standby, name, standby)
    }

    /// Whether `name` is a singleton on standby.
    pub fn is_standby(&self, name: &VassalName) -> bool {
        self.standby.contains(name)
    }

    /// The singletons on standby.
    pub fn standby(&self) -> &BTreeSet<VassalName> {
        &self.standby
    }

    /// The spec the sources offer for `name`, whether or not an operator
    /// stopped it.
    pub fn offered(&self, name: &VassalName) -> Option<&VassalSpec> {
        self.sources.iter().find_map(|(_, snap)| snap.specs.get(name))
    }

    /// Marks `name` stopped by an operator (or no longer); returns whether
    /// that changed anything.
    pub fn set_stopped(&mut self, name: &VassalName, stopped: bool) -> bool {
        mark(&mut self.stopped, name, stopped)
    }

    /// Whether an operator stopped `name`.
    pub fn is_stopped(&self, name: &VassalName) -> bool {
        self.stopped.contains(name)
    }

    /// The names an operator stopped.
    pub fn stopped(&self) -> &BTreeSet<VassalName> {
        &self.stopped
    }

    /// Whether `source` has finished its first listing (unknown sources have not).
    pub fn is_complete(&self, source: &SourceId) -> bool {
        self.snapshot(source).is_some_and(|s| s.complete)
    }

    /// Every name some source wants.
    pub fn names(&self) -> impl Iterator<Item = &VassalName> {
        self.sources.iter().flat_map(|(_, snap)| snap.specs.keys())
    }

    /// Names offered by more than one source, with who wins.
    pub fn conflicts(&self) -> Vec<Conflict> {
        let mut out = Vec::new();
        for (i, (winner, snap)) in self.sources.iter().enumerate() {
            for name in snap.specs.keys() {
                if self.sources[..i].iter().any(|(_, s)| s.specs.contains_key(name)) {
                    continue;
                }
                for (loser, later) in &self.sources[i + 1..] {
                    if later.specs.contains_key(name) {
                        out.push(Conflict { name: name.clone(), winner: winner.clone(), loser: loser.clone() });
                    }
                }
            }
        }
        out
    }
}

/// Puts `name` in `set` or takes it out; whether that changed anything.
fn mark(set: &mut BTreeSet<VassalName>, name: &VassalName, on: bool) -> bool {
    if on {
        set.insert(name.clone())
    } else {
        set.remove(name)
    }
}

/// Where a known vassal is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A process runs (or is starting); `since` is when it was started (ms).
    Running {
        /// Start time, in ms of the controller's clock.
        since: u64,
    },
    /// We asked it to stop and wait for its exit; it is then forgotten.
    Stopping,
    /// It exited on its own and waits for its respawn at `restart_at` (ms).
    Crashed {
        /// When the respawn is due.
        restart_at: u64,
    },
    /// Its config at the recorded version cannot be used; it waits for a new version.
    Held,
}

/// What the emperor knows of one vassal it manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActualVassal {
    /// The source whose spec it runs.
    pub source: SourceId,
    /// The config version it was (re)started with.
    pub version: String,
    /// Its phase.
    pub phase: Phase,
    /// How many times it has been started; unique per start.
    pub generation: u64,
    /// Its respawn throttling.
    pub backoff: Backoff,
}

/// Every vassal the emperor manages, by name.
pub type Actual = BTreeMap<VassalName, ActualVassal>;
