//! The pure heart of the emperor: compare desired with actual, say what to do.

use crate::{Actual, Desired, Phase, VassalName};

/// What to do to one vassal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// Start a vassal that is not known yet.
    Spawn,
    /// Apply a new config version to a running vassal.
    Reload,
    /// Stop a vassal (or forget one that is not running).
    Stop,
    /// Start again a known vassal that is not running.
    Respawn,
}

/// Why an action was planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A source wants a vassal that does not run.
    New,
    /// The config version (or the owning source) changed.
    ConfigChanged,
    /// No source wants the vassal any more.
    Removed,
    /// The vassal's source is no longer configured.
    SourceGone,
    /// The vassal exited on its own and its backoff delay is over.
    Crashed,
    /// A held (unusable) config got a new version.
    NewVersion,
    /// An operator stopped the vassal.
    OperatorStopped,
    /// A singleton whose lease this emperor does not hold (or no longer).
    Standby,
}

/// One step of convergence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The vassal concerned.
    pub name: VassalName,
    /// What to do.
    pub kind: ActionKind,
    /// Why.
    pub reason: Reason,
}

/// The result of [`plan`]: actions to apply now, and when to look again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Actions in name order.
    pub actions: Vec<Action>,
    /// The earliest pending respawn (ms), if a vassal waits on its backoff.
    pub wake_at: Option<u64>,
}

/// Plans the actions that move `actual` towards `desired` at time `now` (ms),
/// looking at every name either side knows.
pub fn plan(desired: &Desired, actual: &Actual, now: u64) -> Plan {
    let mut names: Vec<&VassalName> = desired.names().chain(actual.keys()).collect();
    names.sort_unstable();
    names.dedup();
    plan_for(desired, actual, names, now)
}

/// Plans for the given names only (the dirty set); same rules as [`plan`].
pub fn plan_for<'a>(
    desired: &Desired,
    actual: &Actual,
    names: impl IntoIterator<Item = &'a VassalName>,
    now: u64,
) -> Plan {
    let mut out = Plan::default();
    for name in names {
        let step = decide(desired, actual, name, now);
        match step {
            Step::Act(kind, reason) => out.actions.push(Action { name: name.clone(), kind, reason }),
            Step::WaitUntil(at) => out.wake_at = Some(out.wake_at.map_or(at, |w| w.min(at))),
            Step::Nothing => {}
        }
    }
    out
}

enum Step {
    Act(ActionKind, Reason),
    WaitUntil(u64),
    Nothing,
}

fn decide(desired: &Desired, actual: &Actual, name: &VassalName, now: u64) -> Step {
    use ActionKind::*;
    match (desired.get(name), actual.get(name)) {
        (None, None) => Step::Nothing,
        (Some(_), None) => Step::Act(Spawn, Reason::New),
        (Some(want), Some(have)) => {
            let changed = want.version != have.version || want.source != have.source;
            match have.phase {
                Phase::Running { .. } if changed => Step::Act(Reload, Reason::ConfigChanged),
                Phase::Running { .. } | Phase::Stopping => Step::Nothing,
                Phase::Held if changed => Step::Act(Respawn, Reason::NewVersion),
                Phase::Held => Step::Nothing,
                Phase::Crashed { restart_at } if now >= restart_at => Step::Act(Respawn, Reason::Crashed),
                Phase::Crashed { restart_at } => Step::WaitUntil(restart_at),
            }
        }
        (None, Some(have)) => {
            let reason = match desired.snapshot(&have.source) {
                _ if desired.is_stopped(name) => Reason::OperatorStopped,
                _ if desired.is_standby(name) => Reason::Standby,
                None => Reason::SourceGone,
                Some(snap) if snap.complete => Reason::Removed,
                Some(_) => return Step::Nothing,
            };
            match have.phase {
                Phase::Stopping => Step::Nothing,
                _ => Step::Act(Stop, reason),
            }
        }
    }
}
