//! The main loop's side of the metrics: an [`Executor`] wrapper that counts
//! what the reconciler does, and the clock from a source's event to the
//! actions of the round that handled it.

use super::metrics::{ActionKind, Counters};
use reconciler::{Executor, ReloadOutcome, SourceId, StartError, VassalName, VassalSpec};
use std::collections::HashSet;
use tokio::time::Instant;

/// Held by the main loop: counts actions into the shared [`Counters`].
#[derive(Debug, Default)]
pub struct LoopMetrics {
    counters: Counters,
    /// Vassals the controller tracks, so that a start tells a first spawn
    /// from a respawn.
    known: HashSet<VassalName>,
    /// When the oldest source event not yet acted upon arrived.
    event_seen: Option<Instant>,
    /// Actions done since the last round ended.
    round: Vec<ActionKind>,
    /// SIGKILLs already counted (the supervisor keeps a running total).
    kills: u64,
}

impl LoopMetrics {
    /// Counts into `counters`; `tracked` are the vassals the controller
    /// starts with (re-adopted ones), whose next start is a respawn.
    pub fn new(counters: Counters, tracked: impl IntoIterator<Item = VassalName>) -> Self {
        Self { counters, known: tracked.into_iter().collect(), ..Self::default() }
    }

    /// `exec`, with every action it does counted.
    pub fn counting<'a, E: Executor>(&'a mut self, exec: &'a mut E) -> Counting<'a, E> {
        Counting { inner: exec, metrics: self }
    }

    /// A source's event arrived: the clock of the actions it causes starts.
    pub fn source_event(&mut self, source: &SourceId) {
        self.event_seen.get_or_insert_with(Instant::now);
        self.counters.synced(source);
    }

    /// A reconcile round ended: the actions it did are timed from the
    /// oldest source event before it.
    pub fn round_done(&mut self) {
        if let Some(seen) = self.event_seen.take() {
            let elapsed = seen.elapsed();
            for _ in &self.round {
                self.counters.event_to_action(elapsed);
            }
        }
        self.round.clear();
    }

    /// The supervisor's running total of SIGKILLs: what is new is counted.
    pub fn kills(&mut self, total: u64) {
        for _ in self.kills..total {
            self.counters.count(ActionKind::Kill);
        }
        self.kills = self.kills.max(total);
    }

    /// Sets whether `/healthz` answers 200.
    pub fn set_healthy(&self, healthy: bool) {
        self.counters.set_healthy(healthy);
    }

    fn done(&mut self, kind: ActionKind) {
        self.counters.count(kind);
        self.round.push(kind);
    }
}

/// An [`Executor`] that counts what the inner one does.
pub struct Counting<'a, E> {
    inner: &'a mut E,
    metrics: &'a mut LoopMetrics,
}

impl<E: Executor> Executor for Counting<'_, E> {
    fn intend(&mut self, starts: &[(VassalSpec, u64)]) {
        self.inner.intend(starts);
    }

    fn may_start(&mut self) -> bool {
        self.inner.may_start()
    }

    fn withdraw(&mut self, starts: &[(VassalSpec, u64)]) {
        self.inner.withdraw(starts);
    }

    fn start(&mut self, spec: &VassalSpec, generation: u64) -> Result<(), StartError> {
        let result = self.inner.start(spec, generation);
        if result.is_ok() {
            let first = self.metrics.known.insert(spec.name.clone());
            self.metrics.done(if first { ActionKind::Spawn } else { ActionKind::Respawn });
        }
        result
    }

    fn reload(&mut self, spec: &VassalSpec) -> ReloadOutcome {
        let outcome = self.inner.reload(spec);
        self.metrics.done(ActionKind::Reload);
        outcome
    }

    fn stop(&mut self, name: &VassalName) -> bool {
        let running = self.inner.stop(name);
        if running {
            self.metrics.done(ActionKind::Stop);
        }
        running
    }

    fn forget(&mut self, name: &VassalName) {
        self.metrics.known.remove(name);
        self.inner.forget(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconciler::ConfigRef;

    /// Runs whatever it starts; a stop of a vassal it does not run says so.
    #[derive(Default)]
    struct Processes(HashSet<VassalName>);

    impl Executor for Processes {
        fn start(&mut self, spec: &VassalSpec, _: u64) -> Result<(), StartError> {
            self.0.insert(spec.name.clone());
            Ok(())
        }
        fn reload(&mut self, _: &VassalSpec) -> ReloadOutcome {
            ReloadOutcome::Reloaded
        }
        fn stop(&mut self, name: &VassalName) -> bool {
            self.0.remove(name)
        }
        fn forget(&mut self, _: &VassalName) {}
    }

    fn spec(name: &str) -> VassalSpec {
        VassalSpec {
            name: VassalName::parse(name).unwrap(),
            source: SourceId("dir:///v".into()),
            config: ConfigRef::Inline(String::new()),
            version: "1".into(),
            owner: None,
            socket: None,
        }
    }

    #[test]
    fn starts_are_spawns_until_forgotten_and_kills_count_once() {
        let counters = Counters::default();
        let adopted = spec("adopted.ini");
        let mut metrics = LoopMetrics::new(counters.clone(), [adopted.name.clone()]);
        let a = spec("a.ini");
        metrics.source_event(&a.source);
        {
            let mut exec = Processes::default();
            let mut counting = metrics.counting(&mut exec);
            counting.start(&a, 1).unwrap();
            counting.start(&adopted, 2).unwrap();
            counting.start(&a, 3).unwrap();
            counting.stop(&a.name);
            assert!(!counting.stop(&a.name), "not running: no stop counted");
            counting.forget(&a.name);
            counting.start(&a, 4).unwrap();
            counting.reload(&a);
        }
        metrics.round_done();
        assert_eq!(counters.actions(ActionKind::Spawn), 2);
        assert_eq!(counters.actions(ActionKind::Respawn), 2, "the adopted one and a's second start");
        assert_eq!((counters.actions(ActionKind::Stop), counters.actions(ActionKind::Reload)), (1, 1));
        assert_eq!(counters.timed(), 6, "every action of the round after the event is timed");
        metrics.round_done();
        assert_eq!(counters.timed(), 6, "a round without an event times nothing");
        metrics.kills(2);
        metrics.kills(2);
        metrics.kills(3);
        assert_eq!(counters.actions(ActionKind::Kill), 3);
    }
}
