//! The status table the main loop publishes after every round, and how it
//! is built from the controller's state and the supervisor's.

use crate::supervisor::{LastExit, ProcStatus};
use reconciler::{ActualVassal, Controller, Phase, SourceId, VassalName};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use super::counts::VassalCounts;

/// Where a vassal is, as an operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// A process runs and is ready.
    Running,
    /// An on-demand vassal without a process: it starts at the first
    /// connection to its socket.
    Waiting,
    /// A process runs but has not said it is ready yet (a uWSGI-style
    /// vassal before byte 1 or 5, a native one with `notify = true` before
    /// `READY=1`, or after `RELOADING=1`).
    Starting,
    /// It was asked to stop and has not exited yet.
    Stopping,
    /// It exited on its own and waits for its respawn (backing off).
    Crashed,
    /// Its config cannot be used; it waits for a new version. Or its start
    /// waits for a cause that passes (a full state dir, no fds or processes
    /// to spare) and is retried with backoff, at its `restart_at`.
    Held,
    /// An operator stopped it.
    Stopped,
    /// A singleton whose lease another emperor of the fleet may hold: it
    /// runs on one emperor only, and not on this one.
    Standby,
}

impl State {
    /// Whether the vassal serves (or starts at its first connection).
    pub fn is_up(self) -> bool {
        matches!(self, State::Running | State::Waiting)
    }

    /// Its name, as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Waiting => "waiting",
            State::Starting => "starting",
            State::Stopping => "stopping",
            State::Crashed => "crashed",
            State::Held => "held",
            State::Stopped => "stopped",
            State::Standby => "standby",
        }
    }
}

/// One vassal in the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VassalView {
    /// Its name.
    pub name: String,
    /// The source whose config it runs.
    pub source: String,
    /// The config version it runs (or would run).
    pub version: String,
    /// Where it is.
    pub state: State,
    /// Why it is there, when that is not obvious (held, crashed, stopped).
    pub reason: Option<String>,
    /// Its current process.
    pub pid: Option<i32>,
    /// Its current (or last) generation.
    pub generation: Option<u64>,
    /// When it entered its state, in seconds since the epoch.
    pub since: Option<f64>,
    /// When a crashed vassal is respawned, in seconds since the epoch.
    pub restart_at: Option<f64>,
    /// How many times it was started again since the emperor started.
    pub restarts: u32,
    /// How its last process ended (`unknown` for a re-adopted one); `null`
    /// when none ended since the emperor started.
    pub last_exit: Option<LastExit>,
    /// Whether its process is ready (`state` is then `running`).
    #[serde(default)]
    pub ready: bool,
    /// Since when its process is ready, in seconds since the epoch.
    #[serde(default)]
    pub since_ready: Option<f64>,
    /// The last `STATUS=` text its process sent.
    #[serde(default)]
    pub status_text: Option<String>,
}

/// One source, as `ctl sources` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceView {
    /// The source's id (its URI).
    pub source: String,
    /// Whether it delivers events.
    pub up: bool,
    /// When `up` last changed, in seconds since the epoch.
    pub since: f64,
    /// Why it last failed.
    pub last_error: Option<String>,
    /// How many times it was restarted.
    pub restarts: u32,
    /// How many vassals it wants.
    pub desired: usize,
}

/// Everything the read commands answer from, rebuilt after each round.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Every vassal, by name (a view shared with the next table while the
    /// vassal does not change).
    pub vassals: BTreeMap<String, Arc<VassalView>>,
    /// How many vassals each source wants.
    pub desired: BTreeMap<String, usize>,
    /// `vassals` as a JSON array, made by the first reader that needs it.
    pub(crate) json: std::sync::OnceLock<String>,
}

impl Table {
    /// Every vassal as a JSON array, serialized once per table.
    pub fn vassals_json(&self) -> &str {
        self.json.get_or_init(|| {
            serde_json::to_string(&self.vassals.values().map(|v| &**v).collect::<Vec<_>>()).unwrap_or_default()
        })
    }

    /// How many vassals are in each state.
    pub fn counts(&self) -> VassalCounts {
        VassalCounts::of(self.vassals.values().map(|v| &**v))
    }
}

/// What the tracker remembers of a vassal between rounds.
#[derive(Debug, Clone)]
struct Seen {
    generation: Option<u64>,
    state: State,
    since: SystemTime,
    restarts: u32,
    /// The last view of a managed vassal, and what it was made from.
    made: Option<(Made, Arc<VassalView>)>,
    /// The build that last saw the vassal.
    build: u64,
}

/// What a managed vassal's view is made from (with its version and source,
/// compared with the view's own).
#[derive(Debug, Clone, PartialEq)]
struct Made {
    generation: u64,
    phase: Phase,
    proc: ProcStatus,
}

/// Builds [`Table`]s, remembering between rounds what the controller does
/// not keep: when each state began and how many restarts there were. A
/// vassal whose state did not change keeps its view (a round that changes
/// one vassal of many makes one view, not one per vassal).
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    sources: Vec<SourceId>,
    seen: HashMap<VassalName, Seen>,
    /// How many tables were built.
    builds: u64,
}

impl Tracker {
    /// A tracker for an emperor with these sources.
    pub(crate) fn new(sources: Vec<SourceId>) -> Self {
        Self { sources, seen: HashMap::new(), builds: 0 }
    }

    /// The view of `name` from the last table, if what it is made from is
    /// unchanged (it is then seen by this build).
    fn unchanged(&mut self, name: &VassalName, have: &ActualVassal, proc: &ProcStatus) -> Option<Arc<VassalView>> {
        let build = self.builds;
        let seen = self.seen.get_mut(name)?;
        let (made, view) = seen.made.as_ref()?;
        let same = made.generation == have.generation
            && made.phase == have.phase
            && made.proc == *proc
            && view.version == have.version
            && view.source == have.source.0;
        same.then(|| {
            seen.build = build;
            view.clone()
        })
    }

    /// The table at `now_ms` of the controller's clock.
    pub(crate) fn build(
        &mut self,
        controller: &Controller,
        status: impl Fn(&VassalName) -> ProcStatus,
        now_ms: u64,
    ) -> Table {
        let clock = Clock { wall: SystemTime::now(), now_ms };
        self.builds += 1;
        let mut table = Table::default();
        for id in &self.sources {
            let count = controller.desired().snapshot(id).map_or(0, |s| s.specs.len());
            table.desired.insert(id.0.clone(), count);
        }
        // Collected in name order, then built in one pass (no search per insert).
        let mut vassals = Vec::with_capacity(controller.actual().len());
        for (name, have) in controller.actual() {
            let proc = status(name);
            if let Some(view) = self.unchanged(name, have, &proc) {
                vassals.push((name.to_string(), view));
                continue;
            }
            let started = match have.phase {
                Phase::Running { since } => Some(clock.at(since)),
                _ => None,
            };
            let view = actual_view(name, have, &proc, &clock);
            let made = Made { generation: have.generation, phase: have.phase, proc };
            vassals.push((name.to_string(), self.track(view, name, started, &clock, Some(made))));
        }
        let mut idle_listed = HashSet::new();
        let desired = controller.desired();
        let idle = desired.stopped().iter().map(|n| (n, State::Stopped, "stopped by an operator"));
        let standby =
            desired.standby().iter().map(|n| (n, State::Standby, "singleton: another emperor may hold its lease"));
        for (name, state, reason) in idle.chain(standby) {
            if controller.actual().contains_key(name) || !idle_listed.insert(name) {
                continue;
            }
            let Some(spec) = desired.offered(name) else { continue };
            let view = VassalView {
                name: name.to_string(),
                source: spec.source.0.clone(),
                version: spec.version.clone(),
                state,
                reason: Some(reason.into()),
                pid: None,
                generation: self.seen.get(name).and_then(|s| s.generation),
                since: None,
                restart_at: None,
                restarts: 0,
                last_exit: status(name).last_exit,
                ready: false,
                since_ready: None,
                status_text: None,
            };
            vassals.push((name.to_string(), self.track(view, name, None, &clock, None)));
        }
        table.vassals = vassals.into_iter().collect();
        let build = self.builds;
        self.seen.retain(|_, seen| seen.build == build);
        table
    }

    /// Fills in what only the tracker knows (since when, restarts) and
    /// remembers it, with the view and what it was `made` from, for the
    /// next round.
    fn track(
        &mut self,
        mut view: VassalView,
        name: &VassalName,
        started: Option<SystemTime>,
        clock: &Clock,
        made: Option<Made>,
    ) -> Arc<VassalView> {
        let (generation, state, build) = (view.generation, view.state, self.builds);
        let now = started.unwrap_or(clock.wall);
        let entry = match self.seen.get_mut(name) {
            Some(entry) => entry,
            None => self.seen.entry(name.clone()).or_insert(Seen {
                generation,
                state,
                since: now,
                restarts: 0,
                made: None,
                build,
            }),
        };
        if entry.generation != generation || entry.state != state {
            let restarted = generation.is_some() && entry.generation.is_some() && entry.generation != generation;
            (entry.generation, entry.state, entry.since) = (generation, state, now);
            entry.restarts += u32::from(restarted);
        }
        view.since = Some(epoch(started.unwrap_or(entry.since)));
        view.restarts = entry.restarts;
        let view = Arc::new(view);
        entry.made = made.map(|made| (made, view.clone()));
        entry.build = build;
        view
    }
}

/// The wall clock and the controller's clock at the same moment.
struct Clock {
    wall: SystemTime,
    now_ms: u64,
}

impl Clock {
    /// The wall time of `ms` on the controller's clock (in the past).
    fn at(&self, ms: u64) -> SystemTime {
        let ago = Duration::from_millis(self.now_ms.saturating_sub(ms));
        self.wall.checked_sub(ago).unwrap_or(self.wall)
    }

    /// The wall time of `ms` on the controller's clock (in the future).
    fn ahead(&self, ms: u64) -> SystemTime {
        self.wall + Duration::from_millis(ms.saturating_sub(self.now_ms))
    }
}

/// A managed vassal as the controller and the supervisor see it; `since`
/// and `restarts` are the tracker's to fill in.
fn actual_view(name: &VassalName, have: &ActualVassal, proc: &ProcStatus, clock: &Clock) -> VassalView {
    let (state, reason, restart_at) = match have.phase {
        Phase::Running { .. } => match &proc.waiting_on {
            Some(address) => (State::Waiting, Some(format!("waiting for a connection on {address}")), None),
            None if proc.pid.is_some() && !proc.ready => (State::Starting, None, None),
            None => (State::Running, None, None),
        },
        Phase::Stopping => (State::Stopping, None, None),
        Phase::Crashed { restart_at } => {
            let why = match (&proc.start_error, proc.last_exit) {
                (Some(error), _) => error.clone(),
                (None, Some(exit)) => format!("exited ({exit}); backing off"),
                (None, None) => "exited; backing off".into(),
            };
            // A start held for a cause that passes is retried like a crash, but nothing crashed.
            let state = if proc.held { State::Held } else { State::Crashed };
            (state, Some(why), Some(epoch(clock.ahead(restart_at))))
        }
        Phase::Held => (State::Held, Some(proc.start_error.clone().unwrap_or_else(|| "unusable config".into())), None),
    };
    VassalView {
        name: name.to_string(),
        source: have.source.0.clone(),
        version: have.version.clone(),
        state,
        reason,
        pid: proc.pid,
        generation: Some(have.generation),
        since: None,
        restart_at,
        restarts: 0,
        last_exit: proc.last_exit,
        ready: proc.ready,
        since_ready: proc.since_ready.map(epoch),
        status_text: proc.status_text.clone(),
    }
}

/// Seconds since the epoch, with milliseconds.
fn epoch(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).map_or(0.0, |d| (d.as_millis() as f64) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconciler::{BackoffPolicy, ConfigRef, Executor, ReloadOutcome, StartError, VassalSpec};

    struct Ok;
    impl Executor for Ok {
        fn start(&mut self, _: &VassalSpec, _: u64) -> Result<(), StartError> {
            Result::Ok(())
        }
        fn reload(&mut self, _: &VassalSpec) -> ReloadOutcome {
            ReloadOutcome::Reloaded
        }
        fn stop(&mut self, _: &VassalName) -> bool {
            true
        }
        fn forget(&mut self, _: &VassalName) {}
    }

    fn controller() -> (Controller, VassalName) {
        let name = VassalName::parse("a.ini").unwrap();
        let spec = VassalSpec {
            name: name.clone(),
            source: SourceId("dir:///v".into()),
            config: ConfigRef::Inline(String::new()),
            version: "1".into(),
            owner: None,
            socket: None,
        };
        let mut c = Controller::new(BackoffPolicy::default());
        c.set_snapshot(&spec.source.clone(), [(name.clone(), spec)].into(), true);
        c.reconcile(0, &mut Ok);
        (c, name)
    }

    #[test]
    fn restarts_count_new_generations_and_stopped_vassals_stay_listed() {
        let (mut c, name) = controller();
        let mut tracker = Tracker::new(vec![SourceId("dir:///v".into())]);
        let exit = |_: &VassalName| ProcStatus { last_exit: Some(LastExit::Code(3)), ..ProcStatus::default() };
        let table = tracker.build(&c, |_| ProcStatus::default(), 0);
        assert_eq!(table.vassals["a.ini"].state, State::Running);
        assert_eq!(table.desired["dir:///v"], 1);
        assert_eq!(table.counts(), VassalCounts { running: 1, ..VassalCounts::default() });
        c.on_exit(&name, 1, 20_000, &mut Ok);
        let table = tracker.build(&c, exit, 20_000);
        let crashed = &table.vassals["a.ini"];
        assert_eq!((crashed.state, crashed.restarts), (State::Crashed, 0));
        assert_eq!(crashed.reason.as_deref(), Some("exited (code 3); backing off"));
        assert_eq!(table.counts(), VassalCounts { crashed: 1, ..VassalCounts::default() });
        c.reconcile(20_000, &mut Ok);
        let table = tracker.build(&c, exit, 20_000);
        assert_eq!((table.vassals["a.ini"].state, table.vassals["a.ini"].restarts), (State::Running, 1));
        c.set_stopped(&name, true);
        c.reconcile(20_001, &mut Ok);
        c.on_exit(&name, 2, 20_002, &mut Ok);
        let table = tracker.build(&c, exit, 20_002);
        let stopped = &table.vassals["a.ini"];
        assert_eq!((stopped.state, stopped.pid, stopped.restarts), (State::Stopped, None, 1));
        assert_eq!(stopped.last_exit, Some(LastExit::Code(3)));
    }

    #[test]
    fn an_unchanged_vassal_keeps_its_view() {
        let (mut c, name) = controller();
        let mut tracker = Tracker::new(vec![SourceId("dir:///v".into())]);
        let first = tracker.build(&c, |_| ProcStatus::default(), 0);
        let again = tracker.build(&c, |_| ProcStatus::default(), 5_000);
        assert!(Arc::ptr_eq(&first.vassals["a.ini"], &again.vassals["a.ini"]), "nothing changed: the same view");
        let spawned = |_: &VassalName| ProcStatus { pid: Some(7), ..ProcStatus::default() };
        let table = tracker.build(&c, spawned, 6_000);
        assert_eq!((table.vassals["a.ini"].pid, table.vassals["a.ini"].state), (Some(7), State::Starting));
        c.on_exit(&name, 1, 20_000, &mut Ok);
        let table = tracker.build(&c, spawned, 20_000);
        assert_eq!(table.vassals["a.ini"].state, State::Crashed);
        c.set_snapshot(&SourceId("dir:///v".into()), BTreeMap::new(), true);
        c.reconcile(20_001, &mut Ok);
        assert!(tracker.build(&c, spawned, 20_001).vassals.is_empty());
        assert!(tracker.seen.is_empty(), "a vassal gone is forgotten");
    }

    #[test]
    fn a_held_start_is_held_until_its_retry() {
        let (mut c, name) = controller();
        let mut tracker = Tracker::new(vec![SourceId("dir:///v".into())]);
        c.on_exit(&name, 1, 20_000, &mut Ok);
        let held = |_: &VassalName| ProcStatus {
            start_error: Some("start failed: out of processes".into()),
            held: true,
            ..ProcStatus::default()
        };
        let table = tracker.build(&c, held, 20_000);
        let view = &table.vassals["a.ini"];
        assert_eq!(view.state, State::Held);
        assert_eq!(view.reason.as_deref(), Some("start failed: out of processes"));
        assert!(view.restart_at.is_some(), "a held start is retried");
        assert_eq!(table.counts(), VassalCounts { held: 1, ..VassalCounts::default() });
    }

    #[test]
    fn an_on_demand_vassal_without_a_process_is_waiting() {
        let (c, _) = controller();
        let mut tracker = Tracker::new(vec![SourceId("dir:///v".into())]);
        let waiting = |_: &VassalName| ProcStatus { waiting_on: Some(":8000".into()), ..ProcStatus::default() };
        let table = tracker.build(&c, waiting, 0);
        let view = &table.vassals["a.ini"];
        assert_eq!((view.state, view.pid), (State::Waiting, None));
        assert_eq!(view.reason.as_deref(), Some("waiting for a connection on :8000"));
        let counts = table.counts();
        assert_eq!(counts, VassalCounts { waiting: 1, ..VassalCounts::default() });
        assert_eq!(counts.to_string(), "1 vassals: 0 running, 0 crashed (backing off), 0 held, 0 stopped, 1 waiting");
        assert_eq!(counts.summary(0), "1 vassals: 1 waiting for a connection");
        assert!(State::Waiting.is_up() && !State::Held.is_up());
    }
}
