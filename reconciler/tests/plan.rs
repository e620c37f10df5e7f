//! The plan and the controller, exhaustively by case and by property.

use proptest::prelude::*;
use reconciler::*;
use std::collections::{BTreeMap, BTreeSet};

fn name(n: &str) -> VassalName {
    VassalName::parse(n).unwrap()
}

fn src(s: &str) -> SourceId {
    SourceId(s.to_owned())
}

fn spec(n: &str, source: &str, version: &str) -> VassalSpec {
    VassalSpec {
        name: name(n),
        source: src(source),
        config: ConfigRef::Inline(String::new()),
        version: version.to_owned(),
        owner: None,
        socket: None,
    }
}

fn actual_one(source: &str, version: &str, phase: Phase) -> ActualVassal {
    ActualVassal { source: src(source), version: version.into(), phase, generation: 1, backoff: Backoff::default() }
}

fn desired(complete: bool, specs: &[VassalSpec]) -> Desired {
    let mut d = Desired::default();
    let snap = d.snapshot_mut(&src("a"));
    snap.complete = complete;
    for s in specs {
        snap.specs.insert(s.name.clone(), s.clone());
    }
    d
}

fn kinds(p: &Plan) -> Vec<(String, ActionKind, Reason)> {
    p.actions.iter().map(|a| (a.name.to_string(), a.kind, a.reason)).collect()
}

/// One row: what it checks, the desired version, the actual (version, phase),
/// whether the source is complete, and the expected action.
type Case = (&'static str, Option<&'static str>, Option<(&'static str, Phase)>, bool, Option<(ActionKind, Reason)>);

#[test]
fn every_case_of_the_table() {
    use ActionKind::*;
    let running = Phase::Running { since: 0 };
    let cases: Vec<Case> = vec![
        ("new vassal spawns", Some("v1"), None, true, Some((Spawn, Reason::New))),
        ("same version is left alone", Some("v1"), Some(("v1", running)), true, None),
        ("new version reloads", Some("v2"), Some(("v1", running)), true, Some((Reload, Reason::ConfigChanged))),
        ("stopping waits for the exit", Some("v2"), Some(("v1", Phase::Stopping)), true, None),
        (
            "due crash respawns",
            Some("v1"),
            Some(("v1", Phase::Crashed { restart_at: 10 })),
            true,
            Some((Respawn, Reason::Crashed)),
        ),
        ("pending crash waits", Some("v1"), Some(("v1", Phase::Crashed { restart_at: 11 })), true, None),
        ("held stays held", Some("v1"), Some(("v1", Phase::Held)), true, None),
        (
            "held with a new version retries",
            Some("v2"),
            Some(("v1", Phase::Held)),
            true,
            Some((Respawn, Reason::NewVersion)),
        ),
        ("removed vassal stops", None, Some(("v1", running)), true, Some((Stop, Reason::Removed))),
        (
            "removed crashed vassal is forgotten",
            None,
            Some(("v1", Phase::Crashed { restart_at: 99 })),
            true,
            Some((Stop, Reason::Removed)),
        ),
        ("removed held vassal is forgotten", None, Some(("v1", Phase::Held)), true, Some((Stop, Reason::Removed))),
        ("removed stopping vassal waits", None, Some(("v1", Phase::Stopping)), true, None),
        ("incomplete source never stops", None, Some(("v1", running)), false, None),
        ("incomplete source still spawns", Some("v1"), None, false, Some((Spawn, Reason::New))),
    ];
    for (what, want, have, complete, expect) in cases {
        let d = desired(complete, &want.map(|v| spec("x.ini", "a", v)).into_iter().collect::<Vec<_>>());
        let mut a = Actual::new();
        if let Some((v, phase)) = have {
            a.insert(name("x.ini"), actual_one("a", v, phase));
        }
        let p = plan(&d, &a, 10);
        let got = p.actions.first().map(|a| (a.kind, a.reason));
        assert_eq!(got, expect, "{what}");
        assert!(p.actions.len() <= 1, "{what}");
    }
}

#[test]
fn pending_crash_reports_its_wake_time() {
    let d = desired(true, &[spec("x.ini", "a", "v1"), spec("y.ini", "a", "v1")]);
    let mut a = Actual::new();
    a.insert(name("x.ini"), actual_one("a", "v1", Phase::Crashed { restart_at: 50 }));
    a.insert(name("y.ini"), actual_one("a", "v1", Phase::Crashed { restart_at: 30 }));
    assert_eq!(plan(&d, &a, 10).wake_at, Some(30));
}

#[test]
fn vassals_of_an_unconfigured_source_are_stopped() {
    let d = desired(false, &[]);
    let mut a = Actual::new();
    a.insert(name("x.ini"), actual_one("gone", "v1", Phase::Running { since: 0 }));
    assert_eq!(kinds(&plan(&d, &a, 0)), [("x.ini".into(), ActionKind::Stop, Reason::SourceGone)]);
}

#[test]
fn a_vassal_moving_between_sources_is_reloaded() {
    let mut d = desired(true, &[]);
    d.snapshot_mut(&src("b")).specs.insert(name("x.ini"), spec("x.ini", "b", "v1"));
    let mut a = Actual::new();
    a.insert(name("x.ini"), actual_one("a", "v1", Phase::Running { since: 0 }));
    assert_eq!(kinds(&plan(&d, &a, 0)), [("x.ini".into(), ActionKind::Reload, Reason::ConfigChanged)]);
}

#[test]
fn the_first_source_wins_a_name_conflict() {
    let mut d = Desired::default();
    d.snapshot_mut(&src("a")).specs.insert(name("x.ini"), spec("x.ini", "a", "va"));
    d.snapshot_mut(&src("b")).specs.insert(name("x.ini"), spec("x.ini", "b", "vb"));
    assert_eq!(d.get(&name("x.ini")).unwrap().version, "va");
    let c = d.conflicts();
    assert_eq!(c.len(), 1);
    assert_eq!((c[0].winner.clone(), c[0].loser.clone()), (src("a"), src("b")));
}

/// An executor that records calls and always succeeds, with stops that
/// complete when the test says so.
#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
    forgotten: Vec<String>,
    fail_start: BTreeSet<String>,
    invalid: BTreeSet<String>,
    restart_on_reload: bool,
}

impl Executor for Recorder {
    fn intend(&mut self, starts: &[(VassalSpec, u64)]) {
        for (spec, generation) in starts {
            self.calls.push(format!("intend {} g{generation}", spec.name));
        }
    }
    fn start(&mut self, spec: &VassalSpec, generation: u64) -> Result<(), StartError> {
        self.calls.push(format!("start {} {} g{generation}", spec.name, spec.version));
        if self.invalid.contains(&spec.version) {
            return Err(StartError::Invalid("bad".into()));
        }
        if self.fail_start.contains(spec.name.as_str()) {
            return Err(StartError::Failed("no".into()));
        }
        Ok(())
    }
    fn reload(&mut self, spec: &VassalSpec) -> ReloadOutcome {
        self.calls.push(format!("reload {} {}", spec.name, spec.version));
        if self.restart_on_reload {
            ReloadOutcome::Restarting
        } else {
            ReloadOutcome::Reloaded
        }
    }
    fn stop(&mut self, name: &VassalName) -> bool {
        self.calls.push(format!("stop {name}"));
        true
    }
    fn forget(&mut self, name: &VassalName) {
        self.forgotten.push(name.to_string());
    }
}

fn snapshot(specs: &[VassalSpec]) -> BTreeMap<VassalName, VassalSpec> {
    specs.iter().map(|s| (s.name.clone(), s.clone())).collect()
}

const POLICY: BackoffPolicy = BackoffPolicy { min_ms: 100, max_ms: 1_000, reset_after_ms: 5_000 };

#[test]
fn controller_spawns_reloads_and_stops() {
    let mut c = Controller::new(POLICY);
    let mut ex = Recorder::default();
    c.add_source(src("a"));
    c.set_snapshot(&src("a"), snapshot(&[spec("x.ini", "a", "v1")]), true);
    assert_eq!(c.reconcile(0, &mut ex), None);
    c.set_snapshot(&src("a"), snapshot(&[spec("x.ini", "a", "v2")]), true);
    c.reconcile(1, &mut ex);
    c.set_snapshot(&src("a"), snapshot(&[]), true);
    c.reconcile(2, &mut ex);
    assert_eq!(ex.calls, ["intend x.ini g1", "start x.ini v1 g1", "reload x.ini v2", "stop x.ini"]);
    assert_eq!(c.actual()[&name("x.ini")].phase, Phase::Stopping);
    assert!(ex.forgotten.is_empty(), "still stopping");
    c.on_exit(&name("x.ini"), 1, 3, &mut ex);
    assert!(c.actual().is_empty());
    assert_eq!(ex.forgotten, ["x.ini"], "forgotten once it exited");
    assert!(c.reconcile(4, &mut ex).is_none());
    assert_eq!(ex.calls.len(), 4, "nothing more to do");
}

#[test]
fn crash_loop_backs_off_without_blocking_others() {
    let mut c = Controller::new(POLICY);
    let mut ex = Recorder::default();
    c.set_snapshot(&src("a"), snapshot(&[spec("x.ini", "a", "v1"), spec("y.ini", "a", "v1")]), true);
    c.reconcile(0, &mut ex);
    // x crashes right away, repeatedly.
    c.on_exit(&name("x.ini"), 1, 10, &mut ex);
    assert_eq!(c.reconcile(10, &mut ex), None, "first crash respawns at once");
    c.on_exit(&name("x.ini"), 3, 20, &mut ex);
    assert_eq!(c.reconcile(20, &mut ex), Some(120), "second crash waits min_ms");
    // Meanwhile y gets a new version: handled at once.
    c.set_snapshot(&src("a"), snapshot(&[spec("x.ini", "a", "v1"), spec("y.ini", "a", "v2")]), true);
    assert_eq!(c.reconcile(30, &mut ex), Some(120));
    assert_eq!(ex.calls.last().unwrap(), "reload y.ini v2");
    assert_eq!(c.reconcile(119, &mut ex), Some(120), "not yet");
    assert_eq!(c.reconcile(120, &mut ex), None);
    assert_eq!(ex.calls.last().unwrap(), "start x.ini v1 g4");
    c.on_exit(&name("x.ini"), 4, 130, &mut ex);
    assert_eq!(c.reconcile(130, &mut ex), Some(330), "doubles");
}

#[test]
fn stale_exits_are_ignored() {
    let mut c = Controller::new(POLICY);
    let mut ex = Recorder::default();
    c.set_snapshot(&src("a"), snapshot(&[spec("x.ini", "a", "v1")]), true);
    c.reconcile(0, &mut ex);
    c.on_exit(&name("x.ini"), 99, 5, &mut ex);
    assert_eq!(c.actual()[&name("x.ini")].phase, Phase::Running { since: 0 });
}

#[test]
fn failed_starts_retry_and_invalid_configs_hold() {
    let mut c = Controller::new(POLICY);
    let mut ex =
        Recorder { invalid: ["bad".to_owned()].into(), fail_start: ["f.ini".to_owned()].into(), ..Default::default() };
    c.set_snapshot(&src("a"), snapshot(&[spec("x.ini", "a", "bad"), spec("f.ini", "a", "v1")]), true);
    c.reconcile(0, &mut ex);
    assert_eq!(c.actual()[&name("x.ini")].phase, Phase::Held);
    assert!(matches!(c.actual()[&name("f.ini")].phase, Phase::Crashed { .. }));
    c.reconcile(1, &mut ex);
    c.set_snapshot(&src("a"), snapshot(&[spec("x.ini", "a", "good"), spec("f.ini", "a", "v1")]), true);
    c.reconcile(2, &mut ex);
    assert_eq!(c.actual()[&name("x.ini")].phase, Phase::Running { since: 2 });
}

#[test]
fn restart_reloads_go_through_stopping() {
    let mut c = Controller::new(POLICY);
    let mut ex = Recorder { restart_on_reload: true, ..Default::default() };
    c.set_snapshot(&src("a"), snapshot(&[spec("x.ini", "a", "v1")]), true);
    c.reconcile(0, &mut ex);
    c.set_snapshot(&src("a"), snapshot(&[spec("x.ini", "a", "v2")]), true);
    c.reconcile(1, &mut ex);
    assert_eq!(c.actual()[&name("x.ini")].phase, Phase::Stopping);
    c.on_exit(&name("x.ini"), 1, 2, &mut ex);
    c.reconcile(2, &mut ex);
    assert_eq!(
        ex.calls,
        ["intend x.ini g1", "start x.ini v1 g1", "reload x.ini v2", "intend x.ini g2", "start x.ini v2 g2"],
        "every start is announced, with its generation, before it happens"
    );
}

#[test]
fn reload_all_reloads_running_and_retries_held() {
    let mut c = Controller::new(POLICY);
    let mut ex = Recorder { invalid: ["bad".to_owned()].into(), ..Default::default() };
    c.set_snapshot(&src("a"), snapshot(&[spec("x.ini", "a", "v1"), spec("h.ini", "a", "bad")]), true);
    c.reconcile(0, &mut ex);
    ex.invalid.clear();
    c.reload_all(5, &mut ex);
    c.reconcile(5, &mut ex);
    assert!(ex.calls.contains(&"reload x.ini v1".to_owned()));
    assert_eq!(ex.calls.last().unwrap(), "start h.ini bad g3");
}

#[test]
fn incomplete_snapshots_never_stop_until_complete() {
    let mut c = Controller::with_actual(
        POLICY,
        [(name("old.ini"), actual_one("a", "v1", Phase::Running { since: 0 }))].into(),
        10,
    );
    let mut ex = Recorder::default();
    c.add_source(src("a"));
    c.reconcile(0, &mut ex);
    assert!(ex.calls.is_empty(), "{:?}", ex.calls);
    c.set_snapshot(&src("a"), snapshot(&[]), true);
    c.reconcile(1, &mut ex);
    assert_eq!(ex.calls, ["stop old.ini"]);
    assert!(ex.forgotten.is_empty(), "a running vassal is forgotten only once it exited");
}

// ---- properties ----

fn arb_phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        (0u64..100).prop_map(|since| Phase::Running { since }),
        Just(Phase::Stopping),
        (0u64..200).prop_map(|restart_at| Phase::Crashed { restart_at }),
        Just(Phase::Held),
    ]
}

/// Up to 8 names, each maybe desired (with a version, from source a or b)
/// and maybe actual (with a version and a phase); sources maybe complete.
fn arb_world() -> impl Strategy<Value = (Desired, Actual)> {
    let entry =
        (proptest::option::of((0u8..3, prop::bool::ANY)), proptest::option::of((0u8..3, prop::bool::ANY, arb_phase())));
    (proptest::collection::vec(entry, 0..8), prop::bool::ANY, prop::bool::ANY).prop_map(|(entries, ca, cb)| {
        let mut d = Desired::default();
        d.snapshot_mut(&src("a")).complete = ca;
        d.snapshot_mut(&src("b")).complete = cb;
        let mut a = Actual::new();
        for (i, (want, have)) in entries.into_iter().enumerate() {
            let n = format!("v{i}.ini");
            if let Some((v, in_b)) = want {
                let s = if in_b { "b" } else { "a" };
                d.snapshot_mut(&src(s)).specs.insert(name(&n), spec(&n, s, &v.to_string()));
            }
            if let Some((v, in_b, phase)) = have {
                a.insert(name(&n), actual_one(if in_b { "b" } else { "a" }, &v.to_string(), phase));
            }
        }
        (d, a)
    })
}

/// Applies a plan the way a perfect executor would: starts and reloads
/// succeed, stops complete immediately.
fn apply_ideally(d: &Desired, a: &mut Actual, p: &Plan, now: u64) {
    for action in &p.actions {
        match action.kind {
            ActionKind::Spawn | ActionKind::Respawn | ActionKind::Reload => {
                let s = d.get(&action.name).unwrap();
                a.insert(action.name.clone(), actual_one(&s.source.0, &s.version, Phase::Running { since: now }));
            }
            ActionKind::Stop => {
                a.remove(&action.name);
            }
        }
    }
}

proptest! {
    #[test]
    fn applying_the_plan_converges((d, mut a) in arb_world()) {
        // Stopping vassals finish stopping before we look (their exits arrive).
        a.retain(|_, v| v.phase != Phase::Stopping);
        let now = 1_000; // every backoff is due
        let p = plan(&d, &a, now);
        apply_ideally(&d, &mut a, &p, now);
        let again = plan(&d, &a, now);
        // Held vassals legitimately stay; everything else is converged.
        prop_assert!(again.actions.is_empty(), "not converged: {:?}", again.actions);
        for n in d.names() {
            prop_assert!(a.contains_key(n), "{n} wanted but absent");
            let have = &a[n];
            if have.phase != Phase::Held {
                prop_assert_eq!(&have.version, &d.get(n).unwrap().version);
            }
        }
        for (n, have) in &a {
            prop_assert!(d.get(n).is_some() || !d.is_complete(&have.source), "{n} should have been stopped");
        }
    }

    #[test]
    fn a_converged_world_plans_nothing((d, _) in arb_world()) {
        let mut a = Actual::new();
        for n in d.names() {
            let s = d.get(n).unwrap();
            a.insert(n.clone(), actual_one(&s.source.0, &s.version, Phase::Running { since: 0 }));
        }
        prop_assert_eq!(plan(&d, &a, 0), Plan::default());
    }

    #[test]
    fn incomplete_sources_never_cause_a_stop((d, a) in arb_world(), now in 0u64..300) {
        for action in plan(&d, &a, now).actions {
            if action.kind == ActionKind::Stop {
                let source = &a[&action.name].source;
                prop_assert!(d.is_complete(source), "stop of {} from incomplete {}", action.name, source);
            }
        }
    }

    #[test]
    fn plan_for_all_names_equals_plan((d, a) in arb_world(), now in 0u64..300) {
        let names: BTreeSet<VassalName> = d.names().chain(a.keys()).cloned().collect();
        prop_assert_eq!(plan_for(&d, &a, &names, now), plan(&d, &a, now));
    }

    /// A singleton on standby (its lease held elsewhere) is never started
    /// here, and stopped wherever it runs, even when its source has not
    /// finished listing.
    #[test]
    fn standby_singletons_are_only_ever_stopped((mut d, a) in arb_world(), mask in 0u8..=255, now in 0u64..300) {
        for i in (0..8).filter(|i| mask & (1 << i) != 0) {
            d.set_standby(&name(&format!("v{i}.ini")), true);
        }
        let p = plan(&d, &a, now);
        for action in p.actions.iter().filter(|x| d.is_standby(&x.name)) {
            prop_assert_eq!(action.kind, ActionKind::Stop, "{} is on standby", action.name);
            prop_assert_eq!(action.reason, Reason::Standby);
        }
        for (n, have) in a.iter().filter(|(n, h)| d.is_standby(n) && !d.is_stopped(n) && h.phase != Phase::Stopping) {
            prop_assert!(p.actions.iter().any(|x| &x.name == n && x.kind == ActionKind::Stop), "{} must stop ({:?})", n, have.phase);
        }
    }

    #[test]
    fn operator_stopped_names_are_only_ever_stopped((mut d, a) in arb_world(), mask in 0u8..=255, now in 0u64..300) {
        for i in (0..8).filter(|i| mask & (1 << i) != 0) {
            d.set_stopped(&name(&format!("v{i}.ini")), true);
        }
        let p = plan(&d, &a, now);
        for action in p.actions.iter().filter(|x| d.is_stopped(&x.name)) {
            prop_assert_eq!(action.kind, ActionKind::Stop, "{} is stopped by an operator", action.name);
        }
        for (n, have) in a.iter().filter(|(n, h)| d.is_stopped(n) && h.phase != Phase::Stopping) {
            prop_assert!(p.actions.iter().any(|x| &x.name == n && x.kind == ActionKind::Stop), "{} must stop ({:?})", n, have.phase);
        }
    }

    #[test]
    fn backoff_is_monotonic_and_capped(uptimes in proptest::collection::vec(0u64..100, 1..40)) {
        let mut b = Backoff::default();
        let mut last = 0;
        for up in uptimes {
            let d = b.on_exit(&POLICY, up);
            prop_assert!(d >= last && d <= POLICY.max_ms);
            last = d;
        }
    }
}
