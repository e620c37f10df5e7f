//! The reconcile loop around [`plan_for`]: it keeps desired and actual state,
//! the dirty set and the respawn timers, and hands each action to an
//! [`Executor`]. Time is passed in (ms), so it runs the same under a test
//! clock as under the real one.

use crate::rounds::{admit, Admission, Origin, Prepared, Queues};
use crate::{
    plan_for, Action, ActionKind, Actual, ActualVassal, BackoffPolicy, Conflict, Desired, Phase, SourceId, VassalName,
    VassalSpec,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Why a start did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The config cannot be used as it is (parse error, unknown program):
    /// retrying without a new version is pointless.
    #[error("unusable config: {0}")]
    Invalid(String),
    /// The start failed for a reason that may pass (resources, a race).
    #[error("start failed: {0}")]
    Failed(String),
}

/// What became of a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The running process took the new config.
    Reloaded,
    /// The process is being stopped; it is started again on the new config
    /// once it has exited.
    Restarting,
    /// The new config is unusable; the old process keeps running.
    Kept(String),
}

/// Performs actions on real processes. Implementations own all side effects.
pub trait Executor {
    /// Called once per round, before any of them happens, with every start
    /// the round will make and the generation each will get, and the starts
    /// it announces for the next rounds: the place to record intents durably
    /// in one go. A start announced and not made yet stays announced (with
    /// its generation) until it is made or [withdrawn](Executor::withdraw).
    fn intend(&mut self, _starts: &[(VassalSpec, u64)]) {}
    /// Starts `spec` as generation `generation` (the one announced to
    /// [`Executor::intend`], by this round or an earlier one).
    fn start(&mut self, spec: &VassalSpec, generation: u64) -> Result<(), StartError>;
    /// Asked before each start of a round: whether the round may still make
    /// it. An executor says no once the round has had its time or the
    /// emperor is stopping; the round then makes none of its remaining
    /// starts, which come first in the next round (see [`crate::rounds`])
    /// and stay announced.
    fn may_start(&mut self) -> bool {
        true
    }
    /// Starts announced to [`Executor::intend`] that will not be made with
    /// that generation (their spec changed, or they are no longer wanted):
    /// what was prepared for them can go.
    fn withdraw(&mut self, _starts: &[(VassalSpec, u64)]) {}
    /// Applies `spec` (a new version) to the running vassal of that name.
    fn reload(&mut self, spec: &VassalSpec) -> ReloadOutcome;
    /// Begins stopping the vassal `name`; returns `false` when nothing was
    /// running. Called for every planned stop, also of vassals that are
    /// not running.
    fn stop(&mut self, name: &VassalName) -> bool;
    /// Forgets the vassal `name`: the controller no longer tracks it (it
    /// stopped, or was stopped while not running), so its records can go.
    fn forget(&mut self, name: &VassalName);
}

/// Desired + actual state, dirty set and timers; see the module docs.
#[derive(Debug, Default)]
pub struct Controller {
    desired: Desired,
    actual: Actual,
    policy: BackoffPolicy,
    dirty: BTreeSet<VassalName>,
    timers: BTreeMap<u64, BTreeSet<VassalName>>,
    next_generation: u64,
    /// The most starts one round makes; `None`: no bound.
    start_budget: Option<usize>,
    /// How many starts a round that records intents announces in all.
    intent_batch: usize,
    /// Starts announced and not made yet, kept for the next rounds.
    prepared: Prepared,
    /// Names whose start a round held back (over its budget, or cut short
    /// by its executor): the next rounds start them, after the names made
    /// dirty since.
    queued: Queues,
}

impl Controller {
    /// A controller with no sources and nothing running.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self { policy, next_generation: 1, ..Self::default() }
    }

    /// Starts from a recovered actual state; `next_generation` must exceed
    /// every generation ever used.
    pub fn with_actual(policy: BackoffPolicy, actual: Actual, next_generation: u64) -> Self {
        let dirty = actual.keys().cloned().collect();
        let used = actual.values().map(|a| a.generation + 1).max().unwrap_or(1);
        Self { policy, actual, dirty, next_generation: next_generation.max(used), ..Self::default() }
    }

    /// Bounds the starts of one round to `budget` (at least one): the rest
    /// wait for the next rounds, which [`Controller::reconcile`] asks for at
    /// once. A start is a process creation; with a bound, a round that
    /// starts thousands of vassals does not keep exits, signals and other
    /// sources' changes waiting until the last one is started.
    pub fn set_start_budget(&mut self, budget: Option<usize>) {
        self.start_budget = budget.map(|b| b.max(1));
    }

    /// Lets a round that records intents announce up to `batch` starts in
    /// all, beyond its budget: the ones it does not make stay prepared, and
    /// the next rounds make them without recording anything, so that a
    /// large start pays one flush of the intents per `batch` starts rather
    /// than one per round (see [`crate::rounds`]).
    pub fn set_intent_batch(&mut self, batch: usize) {
        self.intent_batch = batch;
    }

    /// How many starts the rounds have held back so far and not made yet.
    pub fn deferred_starts(&self) -> usize {
        self.queued.len()
    }

    /// Registers a source; until it reports a complete snapshot it causes no stop.
    pub fn add_source(&mut self, id: SourceId) {
        self.desired.add_source(id);
    }

    /// Replaces a source's whole desired set. Names whose spec changed
    /// become dirty; completing a source makes its vassals dirty too.
    pub fn set_snapshot(&mut self, id: &SourceId, specs: BTreeMap<VassalName, VassalSpec>, complete: bool) {
        let snap = self.desired.snapshot_mut(id);
        let was_complete = snap.complete;
        let old = std::mem::replace(&mut snap.specs, specs);
        snap.complete = was_complete || complete;
        let now_complete = snap.complete;
        let snap_specs = &self.desired.snapshot(id).expect("registered").specs;
        for (name, spec) in snap_specs {
            if old.get(name) != Some(spec) {
                self.dirty.insert(name.clone());
            }
        }
        for name in old.keys().filter(|n| !snap_specs.contains_key(*n)) {
            self.dirty.insert(name.clone());
        }
        if now_complete && !was_complete {
            let mine = self.actual.iter().filter(|(_, a)| a.source == *id).map(|(n, _)| n.clone());
            self.dirty.extend(mine.collect::<Vec<_>>());
        }
    }

    /// Adds or replaces one vassal of a message source.
    pub fn upsert(&mut self, spec: VassalSpec) {
        let snap = self.desired.snapshot_mut(&spec.source);
        snap.complete = true;
        self.dirty.insert(spec.name.clone());
        snap.specs.insert(spec.name.clone(), spec);
    }

    /// Removes one vassal of a message source.
    pub fn remove(&mut self, source: &SourceId, name: &VassalName) {
        let snap = self.desired.snapshot_mut(source);
        snap.complete = true;
        snap.specs.remove(name);
        self.dirty.insert(name.clone());
    }

    /// Records that generation `generation` of `name` exited at `now`; a
    /// vassal that was stopping is then forgotten through `exec`. Exits of
    /// stale generations are ignored.
    pub fn on_exit(&mut self, name: &VassalName, generation: u64, now: u64, exec: &mut impl Executor) {
        let Some(have) = self.actual.get_mut(name) else { return };
        if have.generation != generation {
            return;
        }
        match have.phase {
            Phase::Stopping => {
                self.actual.remove(name);
                exec.forget(name);
            }
            Phase::Running { since } => {
                let delay = have.backoff.on_exit(&self.policy, now.saturating_sub(since));
                have.phase = Phase::Crashed { restart_at: now + delay };
            }
            Phase::Crashed { .. } | Phase::Held => {}
        }
        self.dirty.insert(name.clone());
    }

    /// Plans and applies everything due at `now`: reloads and stops, then
    /// the starts in the order of [`crate::rounds`]. Returns when to run the
    /// next round: the next pending respawn, or `now` when starts were held
    /// back (by the start budget, or because the executor ended the round).
    pub fn reconcile(&mut self, now: u64, exec: &mut impl Executor) -> Option<u64> {
        let mut names = std::mem::take(&mut self.dirty);
        let due: Vec<u64> = self.timers.range(..=now).map(|(t, _)| *t).collect();
        for t in due {
            names.extend(self.timers.remove(&t).unwrap_or_default());
        }
        let budget = self.start_budget.unwrap_or(usize::MAX);
        // A queued name made dirty again is a change just made: it counts as fresh.
        let queued: HashMap<VassalName, Origin> = self
            .queued
            .take(budget.max(self.intent_batch))
            .into_iter()
            .filter(|(name, _)| !names.contains(name))
            .collect();
        names.extend(queued.keys().cloned());
        let plan = plan_for(&self.desired, &self.actual, &names, now);
        let planned: BTreeSet<&VassalName> = plan.actions.iter().filter(|a| is_start(a)).map(|a| &a.name).collect();
        let desired = &self.desired;
        let stale =
            self.prepared.drop_stale(&names, |name| planned.contains(name).then(|| desired.get(name)).flatten());
        if !stale.is_empty() {
            exec.withdraw(&stale);
        }
        let origin = |name: &VassalName| queued.get(name).copied().unwrap_or(Origin::Fresh);
        let planned = planned.into_iter().map(|name| (name.clone(), origin(name), self.prepared.contains(name)));
        let Admission { admitted, ahead, held } = admit(planned, budget, self.intent_batch);
        for (name, origin) in held {
            self.queued.hold(name, origin);
        }
        let starts: Vec<(VassalSpec, u64)> = admitted.iter().map(|name| self.start_of(name)).collect();
        let ahead: Vec<(VassalSpec, u64)> = ahead.iter().map(|name| self.start_of(name)).collect();
        let unannounced: Vec<(VassalSpec, u64)> =
            starts.iter().filter(|(spec, _)| !self.prepared.contains(&spec.name)).chain(&ahead).cloned().collect();
        if !unannounced.is_empty() {
            exec.intend(&unannounced);
        }
        for start in ahead {
            self.queued.withdraw(start.0.name.clone());
            self.prepared.keep(start);
        }
        for action in plan.actions.iter().filter(|a| !is_start(a)) {
            match action.kind {
                ActionKind::Reload => self.reload(&action.name, exec),
                ActionKind::Stop => self.stop(&action.name, exec),
                ActionKind::Spawn | ActionKind::Respawn => unreachable!("starts are made below"),
            }
        }
        self.make_starts(starts, now, exec);
        for name in &names {
            if let Some(ActualVassal { phase: Phase::Crashed { restart_at }, .. }) = self.actual.get(name) {
                if *restart_at > now {
                    self.timers.entry(*restart_at).or_default().insert(name.clone());
                }
            }
        }
        let next_respawn = self.timers.keys().next().copied();
        if self.queued.is_empty() {
            next_respawn
        } else {
            Some(now)
        }
    }

    /// Makes the round's admitted starts in order, as long as the executor
    /// lets the round go on; the rest are queued first for the next round,
    /// prepared.
    fn make_starts(&mut self, starts: Vec<(VassalSpec, u64)>, now: u64, exec: &mut impl Executor) {
        let mut starts = starts.into_iter();
        for (spec, generation) in starts.by_ref() {
            if !exec.may_start() {
                for start in std::iter::once((spec, generation)).chain(starts) {
                    self.queued.withdraw(start.0.name.clone());
                    self.prepared.keep(start);
                }
                return;
            }
            self.prepared.take(&spec.name);
            self.start(spec, generation, now, exec);
        }
    }

    /// The spec and generation `name` is started with: the prepared ones
    /// (announced by an earlier round for the same spec), or the desired
    /// spec with the next unused generation.
    fn start_of(&mut self, name: &VassalName) -> (VassalSpec, u64) {
        match self.prepared.get(name) {
            Some(start) => start.clone(),
            None => (self.desired.get(name).expect("planned from desired").clone(), self.allocate_generation()),
        }
    }

    /// The next unused generation, taken.
    fn allocate_generation(&mut self) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        generation
    }

    /// Applies a new spec to a running vassal.
    fn reload(&mut self, name: &VassalName, exec: &mut impl Executor) {
        let spec = self.desired.get(name).expect("planned from desired").clone();
        let have = self.actual.get_mut(name).expect("planned from actual");
        match exec.reload(&spec) {
            ReloadOutcome::Reloaded | ReloadOutcome::Kept(_) => {}
            ReloadOutcome::Restarting => have.phase = Phase::Stopping,
        }
        have.version = spec.version;
        have.source = spec.source;
    }

    /// Stops a vassal no longer wanted; one that was not running is forgotten at once.
    fn stop(&mut self, name: &VassalName, exec: &mut impl Executor) {
        let have = self.actual.get_mut(name).expect("planned from actual");
        let running = exec.stop(name) && matches!(have.phase, Phase::Running { .. });
        if running {
            have.phase = Phase::Stopping;
        } else {
            self.actual.remove(name);
            exec.forget(name);
        }
    }

    fn start(&mut self, spec: VassalSpec, generation: u64, now: u64, exec: &mut impl Executor) {
        let backoff = self.actual.get(&spec.name).map(|a| a.backoff).unwrap_or_default();
        let mut record = ActualVassal {
            source: spec.source.clone(),
            version: spec.version.clone(),
            phase: Phase::Running { since: now },
            generation,
            backoff,
        };
        match exec.start(&spec, generation) {
            Ok(()) => {}
            Err(StartError::Invalid(_)) => record.phase = Phase::Held,
            Err(StartError::Failed(_)) => {
                let delay = record.backoff.on_exit(&self.policy, 0);
                record.phase = Phase::Crashed { restart_at: now + delay };
                self.timers.entry(now + delay).or_default().insert(spec.name.clone());
            }
        }
        self.actual.insert(spec.name, record);
    }

    /// Reloads every running vassal on its current spec and retries every
    /// held one (the emperor's SIGHUP).
    pub fn reload_all(&mut self, now: u64, exec: &mut impl Executor) {
        let names: Vec<VassalName> = self.actual.keys().cloned().collect();
        for name in names {
            self.reload_one(&name, now, exec);
        }
    }

    /// Does to one vassal what a config change does: a running one gets its
    /// spec again, a held one is retried. Returns `false` when no source
    /// wants `name` (or an operator stopped it).
    pub fn reload_one(&mut self, name: &VassalName, now: u64, exec: &mut impl Executor) -> bool {
        let Some(spec) = self.desired.get(name).cloned() else { return false };
        let Some(have) = self.actual.get_mut(name) else {
            self.dirty.insert(name.clone());
            return true;
        };
        match have.phase {
            Phase::Running { .. } => {
                if exec.reload(&spec) == ReloadOutcome::Restarting {
                    have.phase = Phase::Stopping;
                }
                have.version = spec.version;
                have.source = spec.source;
            }
            Phase::Held => {
                have.phase = Phase::Crashed { restart_at: now };
                self.dirty.insert(name.clone());
            }
            Phase::Stopping | Phase::Crashed { .. } => {}
        }
        true
    }

    /// Starts a new process for `name` with a fresh backoff: a running one
    /// is stopped and started again once gone, a crashed or held one is
    /// started at the next round. Returns `false` when no source wants
    /// `name` (or an operator stopped it).
    pub fn restart(&mut self, name: &VassalName, now: u64, exec: &mut impl Executor) -> bool {
        if self.desired.get(name).is_none() {
            return false;
        }
        self.dirty.insert(name.clone());
        let Some(have) = self.actual.get_mut(name) else { return true };
        have.backoff.reset();
        match have.phase {
            Phase::Running { .. } if exec.stop(name) => have.phase = Phase::Stopping,
            Phase::Running { .. } => {
                self.actual.remove(name);
                exec.forget(name);
            }
            Phase::Crashed { .. } | Phase::Held => have.phase = Phase::Crashed { restart_at: now },
            Phase::Stopping => {}
        }
        true
    }

    /// Marks `name` stopped by an operator (the next round stops it and no
    /// source starts it again) or lets the sources start it again.
    pub fn set_stopped(&mut self, name: &VassalName, stopped: bool) {
        if self.desired.set_stopped(name, stopped) {
            self.dirty.insert(name.clone());
        }
    }

    /// Marks the singleton `name` on standby (the next round stops it and
    /// no source starts it) or lets it run (this emperor holds its lease).
    pub fn set_standby(&mut self, name: &VassalName, standby: bool) {
        if self.desired.set_standby(name, standby) {
            self.dirty.insert(name.clone());
        }
    }

    /// The desired state.
    pub fn desired(&self) -> &Desired {
        &self.desired
    }

    /// The actual state.
    pub fn actual(&self) -> &Actual {
        &self.actual
    }

    /// Names offered by several sources (see [`Desired::conflicts`]).
    pub fn conflicts(&self) -> Vec<Conflict> {
        self.desired.conflicts()
    }

    /// The next generation number that will be used.
    pub fn next_generation(&self) -> u64 {
        self.next_generation
    }
}

/// Whether an action starts a process.
fn is_start(action: &Action) -> bool {
    matches!(action.kind, ActionKind::Spawn | ActionKind::Respawn)
}
