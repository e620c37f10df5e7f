//! What an operator asks of the controller: stop a vassal and keep it
//! stopped whatever the sources say, start it again, restart it with a
//! fresh backoff, reload it.

use reconciler::*;
use std::collections::BTreeMap;

fn name(n: &str) -> VassalName {
    VassalName::parse(n).unwrap()
}

fn src(s: &str) -> SourceId {
    SourceId(s.to_owned())
}

fn spec(n: &str, version: &str) -> VassalSpec {
    VassalSpec {
        name: name(n),
        source: src("a"),
        config: ConfigRef::Inline(String::new()),
        version: version.to_owned(),
        owner: None,
        socket: None,
    }
}

fn snapshot(specs: &[VassalSpec]) -> BTreeMap<VassalName, VassalSpec> {
    specs.iter().map(|s| (s.name.clone(), s.clone())).collect()
}

/// Records the calls; every start and stop succeeds.
#[derive(Default)]
struct Calls(Vec<String>);

impl Executor for Calls {
    fn start(&mut self, spec: &VassalSpec, generation: u64) -> Result<(), StartError> {
        self.0.push(format!("start {} g{generation}", spec.name));
        Ok(())
    }
    fn reload(&mut self, spec: &VassalSpec) -> ReloadOutcome {
        self.0.push(format!("reload {} {}", spec.name, spec.version));
        ReloadOutcome::Reloaded
    }
    fn stop(&mut self, name: &VassalName) -> bool {
        self.0.push(format!("stop {name}"));
        true
    }
    fn forget(&mut self, name: &VassalName) {
        self.0.push(format!("forget {name}"));
    }
}

const POLICY: BackoffPolicy = BackoffPolicy { min_ms: 100, max_ms: 1_000, reset_after_ms: 5_000 };

fn running(specs: &[VassalSpec]) -> (Controller, Calls) {
    let mut c = Controller::new(POLICY);
    let mut ex = Calls::default();
    c.set_snapshot(&src("a"), snapshot(specs), true);
    c.reconcile(0, &mut ex);
    ex.0.clear();
    (c, ex)
}

#[test]
fn a_stopped_vassal_stays_stopped_across_snapshots_until_started() {
    let (mut c, mut ex) = running(&[spec("x.ini", "v1")]);
    c.set_stopped(&name("x.ini"), true);
    c.reconcile(1, &mut ex);
    assert_eq!(ex.0, ["stop x.ini"]);
    c.on_exit(&name("x.ini"), 1, 2, &mut ex);
    assert!(c.actual().is_empty());
    // A resync and a new version both leave it stopped.
    c.set_snapshot(&src("a"), snapshot(&[spec("x.ini", "v2")]), true);
    c.reconcile(3, &mut ex);
    assert_eq!(ex.0, ["stop x.ini", "forget x.ini"]);
    assert!(c.desired().get(&name("x.ini")).is_none());
    assert_eq!(c.desired().offered(&name("x.ini")).unwrap().version, "v2");
    c.set_stopped(&name("x.ini"), false);
    c.reconcile(4, &mut ex);
    assert_eq!(ex.0.last().unwrap(), "start x.ini g2");
}

#[test]
fn a_stop_applies_even_while_the_source_is_incomplete() {
    let mut c = Controller::with_actual(
        POLICY,
        [(
            name("x.ini"),
            ActualVassal {
                source: src("a"),
                version: "v1".into(),
                phase: Phase::Running { since: 0 },
                generation: 1,
                backoff: Backoff::default(),
            },
        )]
        .into(),
        2,
    );
    let mut ex = Calls::default();
    c.add_source(src("a"));
    c.set_stopped(&name("x.ini"), true);
    c.reconcile(0, &mut ex);
    assert_eq!(ex.0, ["stop x.ini"]);
    let p = plan(c.desired(), c.actual(), 0);
    assert!(p.actions.is_empty(), "already stopping: {p:?}");
}

#[test]
fn restart_starts_a_new_process_with_a_fresh_backoff() {
    let (mut c, mut ex) = running(&[spec("x.ini", "v1")]);
    // Two quick crashes: the next respawn waits.
    c.on_exit(&name("x.ini"), 1, 1, &mut ex);
    c.reconcile(1, &mut ex);
    c.on_exit(&name("x.ini"), 2, 2, &mut ex);
    assert_eq!(c.reconcile(2, &mut ex), Some(102));
    assert!(c.restart(&name("x.ini"), 3, &mut ex));
    c.reconcile(3, &mut ex);
    assert_eq!(ex.0.last().unwrap(), "start x.ini g3", "at once, not at 102");
    assert_eq!(c.actual()[&name("x.ini")].backoff.failures(), 0);
    // A running one is stopped, then started again once gone.
    assert!(c.restart(&name("x.ini"), 4, &mut ex));
    assert_eq!(c.actual()[&name("x.ini")].phase, Phase::Stopping);
    c.on_exit(&name("x.ini"), 3, 5, &mut ex);
    c.reconcile(5, &mut ex);
    assert_eq!(ex.0.last().unwrap(), "start x.ini g4");
    assert!(!c.restart(&name("nope.ini"), 6, &mut ex), "no source wants it");
}

#[test]
fn reload_one_does_what_a_config_change_does() {
    let (mut c, mut ex) = running(&[spec("x.ini", "v1"), spec("y.ini", "v1")]);
    assert!(c.reload_one(&name("x.ini"), 1, &mut ex));
    assert_eq!(ex.0, ["reload x.ini v1"]);
    assert!(!c.reload_one(&name("nope.ini"), 1, &mut ex));
    c.set_stopped(&name("y.ini"), true);
    assert!(!c.reload_one(&name("y.ini"), 1, &mut ex), "a stopped vassal is not reloaded");
}
