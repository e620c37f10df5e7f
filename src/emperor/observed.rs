//! The vassal processes as the controller drives them, with an event for
//! each thing done to them: every controller call of the loop goes through
//! [`Emperor::observed`], so no start, reload or stop goes unrecorded.

use super::event_loop::Emperor;
use super::processes::Processes;
use crate::control::{Detail, Hook, Kind, LoopMetrics};
use reconciler::{Controller, Executor, Phase, ReloadOutcome, StartError, VassalName, VassalSpec};

/// An [`Executor`] that records an event for each action it passes on.
pub(super) struct Observed<'a, P> {
    procs: &'a mut P,
    hook: &'a mut Hook,
    /// Counts each action for `/metrics`.
    metrics: &'a mut LoopMetrics,
    /// Whether the round may make one more start.
    pace: &'a mut super::pace::Pace,
    /// Vassals that may now wait for a respawn (a failed start, an exit):
    /// the controller decides, so they are looked at after it did.
    maybe_crashed: Vec<(VassalName, u64, Option<String>)>,
}

impl<P: Processes> Executor for Observed<'_, P> {
    fn intend(&mut self, starts: &[(VassalSpec, u64)]) {
        self.metrics.counting(&mut *self.procs).intend(starts);
    }

    fn may_start(&mut self) -> bool {
        self.pace.may_start(tokio::time::Instant::now())
    }

    fn withdraw(&mut self, starts: &[(VassalSpec, u64)]) {
        self.metrics.counting(&mut *self.procs).withdraw(starts);
    }

    fn start(&mut self, spec: &VassalSpec, generation: u64) -> Result<(), StartError> {
        let name = &spec.name;
        let was_held = self.procs.status(name).held;
        let result = self.metrics.counting(&mut *self.procs).start(spec, generation);
        match &result {
            Ok(()) => {
                let pid = self.procs.status(name).pid;
                self.hook.vassal_event(
                    name,
                    Kind::Spawned,
                    Detail { pid, generation: Some(generation), ..Detail::default() },
                );
            }
            Err(StartError::Invalid(why)) => {
                let detail = Detail { generation: Some(generation), reason: Some(why.clone()), ..Detail::default() };
                self.hook.vassal_event(name, Kind::Held, detail);
            }
            // A held start (a cause that passes) is said once, not at each retry.
            Err(StartError::Failed(why)) if self.procs.status(name).held => {
                if !was_held {
                    let detail =
                        Detail { generation: Some(generation), reason: Some(why.clone()), ..Detail::default() };
                    self.hook.vassal_event(name, Kind::Held, detail);
                }
            }
            Err(StartError::Failed(why)) => self.maybe_crashed.push((name.clone(), generation, Some(why.clone()))),
        }
        result
    }

    fn reload(&mut self, spec: &VassalSpec) -> ReloadOutcome {
        let pid = self.procs.status(&spec.name).pid;
        let outcome = self.metrics.counting(&mut *self.procs).reload(spec);
        let (kind, reason) = match &outcome {
            ReloadOutcome::Reloaded => (Kind::Reloaded, None),
            ReloadOutcome::Restarting => (Kind::Stopping, Some("restarting on the new config".to_owned())),
            ReloadOutcome::Kept(why) => (Kind::ReloadRefused, Some(why.clone())),
        };
        self.hook.vassal_event(&spec.name, kind, Detail { pid, reason, ..Detail::default() });
        outcome
    }

    fn stop(&mut self, name: &VassalName) -> bool {
        let pid = self.procs.status(name).pid;
        let stopping = self.metrics.counting(&mut *self.procs).stop(name);
        if stopping {
            self.hook.vassal_event(name, Kind::Stopping, Detail { pid, ..Detail::default() });
        }
        stopping
    }

    fn forget(&mut self, name: &VassalName) {
        self.metrics.counting(&mut *self.procs).forget(name);
    }
}

impl<P: Processes> Emperor<P> {
    /// Runs `act` on the controller with the processes behind an
    /// [`Observed`] executor, then records a `crashed` event for each
    /// vassal the controller set to respawn later.
    pub(super) fn observed<R>(&mut self, act: impl FnOnce(&mut Controller, &mut Observed<'_, P>) -> R) -> R {
        let mut exec = Observed {
            procs: &mut self.supervisor,
            hook: &mut self.control,
            metrics: &mut self.metrics,
            pace: &mut self.pace,
            maybe_crashed: Vec::new(),
        };
        let result = act(&mut self.controller, &mut exec);
        let maybe_crashed = exec.maybe_crashed;
        if self.control.is_stopping_all() {
            return result;
        }
        let now = self.now();
        for (name, generation, reason) in maybe_crashed {
            let Some(have) = self.controller.actual().get(&name).filter(|a| a.generation == generation) else {
                continue;
            };
            if let Phase::Crashed { restart_at } = have.phase {
                let respawn_in = Some(restart_at.saturating_sub(now) as f64 / 1000.0);
                let detail = Detail { generation: Some(generation), respawn_in, reason, ..Detail::default() };
                self.control.vassal_event(&name, Kind::Crashed, detail);
            }
        }
        result
    }

    /// Tells the controller that generation `generation` of `name` ended,
    /// with its `exited` event (and `crashed`, when it is to be respawned).
    pub(super) fn observe_exit(&mut self, name: &VassalName, generation: u64) {
        let exit = self.supervisor.status(name).last_exit;
        self.control.vassal_event(name, Kind::Exited, Detail::exit(generation, exit));
        let now = self.now();
        self.observed(|controller, exec| {
            exec.maybe_crashed.push((name.clone(), generation, None));
            controller.on_exit(name, generation, now, exec);
        });
    }
}
