//! A fake of the vassal processes: it records what the loop asks of it and
//! reports the exits a test makes up.

use crate::emperor::processes::Processes;
use crate::sys::signal::StopFlag;
use reconciler::{Executor, ReloadOutcome, StartError, VassalName, VassalSpec};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// One thing the loop asked of the processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Did {
    /// Start the vassal as this generation.
    Start(String, u64),
    /// Give the running vassal this version.
    Reload(String, String),
    /// Stop the vassal.
    Stop(String),
    /// Forget the vassal's records.
    Forget(String),
    /// Stop every vassal (shutdown).
    StopAll,
    /// End the fd holder.
    RetireHolder,
}

#[derive(Default)]
struct State {
    did: Vec<Did>,
    /// Live processes and their generation.
    running: BTreeMap<VassalName, u64>,
    /// Exits made up by the test, not yet taken by the loop.
    exits: VecDeque<(VassalName, u64)>,
    /// Raised once this many starts were made (as a stop signal would).
    stop_after: Option<(usize, StopFlag)>,
}

/// The fake; clones share it, so the test keeps one while the loop owns another.
#[derive(Clone, Default)]
pub(super) struct Fake {
    state: Arc<Mutex<State>>,
    exited: Arc<Notify>,
}

impl Fake {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake state")
    }

    /// A process already running (adopted at start-up).
    pub(super) fn adopt(&self, name: &str, generation: u64) {
        self.state().running.insert(vassal(name), generation);
    }

    /// Raises `flag` as the `starts`-th start is made, as a stop signal
    /// arriving during it would.
    pub(super) fn stop_after(&self, starts: usize, flag: StopFlag) {
        self.state().stop_after = Some((starts, flag));
    }

    /// What the loop asked since the last call.
    pub(super) fn take(&self) -> Vec<Did> {
        std::mem::take(&mut self.state().did)
    }

    /// Whether the loop asked for `did` (the record is kept).
    pub(super) fn has(&self, did: &Did) -> bool {
        self.state().did.contains(did)
    }

    /// The vassal's process exits (it crashed, or it stopped as asked).
    pub(super) fn exit(&self, name: &str) {
        let mut state = self.state();
        let name = vassal(name);
        let generation = state.running.remove(&name).expect("the vassal is running");
        state.exits.push_back((name, generation));
        self.exited.notify_one();
    }

    /// Whether an exit is still waiting for the loop.
    pub(super) fn exit_pending(&self) -> bool {
        !self.state().exits.is_empty()
    }

    fn record(&self, did: Did) {
        self.state().did.push(did);
    }
}

impl Executor for Fake {
    fn start(&mut self, spec: &VassalSpec, generation: u64) -> Result<(), StartError> {
        self.record(Did::Start(spec.name.to_string(), generation));
        let mut state = self.state();
        state.running.insert(spec.name.clone(), generation);
        if let Some((starts, flag)) = &state.stop_after {
            if state.running.len() == *starts {
                flag.raise();
            }
        }
        Ok(())
    }

    fn reload(&mut self, spec: &VassalSpec) -> ReloadOutcome {
        self.record(Did::Reload(spec.name.to_string(), spec.version.clone()));
        ReloadOutcome::Reloaded
    }

    fn stop(&mut self, name: &VassalName) -> bool {
        self.record(Did::Stop(name.to_string()));
        self.state().running.contains_key(name)
    }

    fn forget(&mut self, name: &VassalName) {
        self.record(Did::Forget(name.to_string()));
    }
}

impl Processes for Fake {
    async fn next_exit(&mut self) -> Option<(VassalName, u64)> {
        loop {
            if let Some(exit) = self.exited_now() {
                return Some(exit);
            }
            self.exited.notified().await;
        }
    }

    fn exited_now(&mut self) -> Option<(VassalName, u64)> {
        self.state().exits.pop_front()
    }

    fn stop_all(&mut self) {
        self.record(Did::StopAll);
    }

    fn is_idle(&self) -> bool {
        self.state().running.is_empty()
    }

    fn retire_holder(&mut self) {
        self.record(Did::RetireHolder);
    }
}

/// A vassal name from a test's literal.
pub(super) fn vassal(name: &str) -> VassalName {
    VassalName::parse(name).expect("a valid vassal name")
}
