//! The start budget: a round makes at most so many starts, holds the others
//! back for the next rounds (which it asks for at once), and starts a name
//! made dirty since before the ones it held back.

use reconciler::*;
use std::collections::BTreeMap;

fn name(n: &str) -> VassalName {
    VassalName::parse(n).unwrap()
}

fn spec(n: &str) -> VassalSpec {
    VassalSpec {
        name: name(n),
        source: SourceId("a".into()),
        config: ConfigRef::Inline(String::new()),
        version: "v1".into(),
        owner: None,
        socket: None,
    }
}

fn snapshot(names: &[&str]) -> BTreeMap<VassalName, VassalSpec> {
    names.iter().map(|n| (name(n), spec(n))).collect()
}

/// Records the names started, in order; every action succeeds.
#[derive(Default)]
struct Started(Vec<String>);

impl Executor for Started {
    fn start(&mut self, spec: &VassalSpec, _: u64) -> Result<(), StartError> {
        self.0.push(spec.name.to_string());
        Ok(())
    }
    fn reload(&mut self, _: &VassalSpec) -> ReloadOutcome {
        ReloadOutcome::Reloaded
    }
    fn stop(&mut self, _: &VassalName) -> bool {
        true
    }
    fn forget(&mut self, _: &VassalName) {}
}

const POLICY: BackoffPolicy = BackoffPolicy { min_ms: 100, max_ms: 1_000, reset_after_ms: 5_000 };

fn budgeted(budget: usize, names: &[&str]) -> Controller {
    let mut c = Controller::new(POLICY);
    c.set_start_budget(Some(budget));
    c.add_source(SourceId("a".into()));
    c.set_snapshot(&SourceId("a".into()), snapshot(names), true);
    c
}

#[test]
fn a_round_starts_at_most_its_budget_and_asks_for_the_next_round_at_once() {
    let mut c = budgeted(2, &["a.ini", "b.ini", "c.ini", "d.ini", "e.ini"]);
    let mut ex = Started::default();
    assert_eq!(c.reconcile(10, &mut ex), Some(10), "more to start: the next round is due now");
    assert_eq!(ex.0, ["a.ini", "b.ini"]);
    assert_eq!(c.deferred_starts(), 3);
    assert_eq!(c.reconcile(11, &mut ex), Some(11));
    assert_eq!(c.reconcile(12, &mut ex), None, "all started: nothing is due");
    assert_eq!(ex.0, ["a.ini", "b.ini", "c.ini", "d.ini", "e.ini"]);
    let generations: std::collections::BTreeSet<u64> = c.actual().values().map(|a| a.generation).collect();
    assert_eq!(generations.len(), 5, "one generation each");
    assert_eq!(c.deferred_starts(), 0);
}

#[test]
fn a_name_made_dirty_since_is_started_before_the_backlog() {
    let mut c = budgeted(2, &["a.ini", "b.ini", "c.ini", "d.ini", "e.ini"]);
    let mut ex = Started::default();
    c.reconcile(10, &mut ex);
    let mut late = spec("late.ini");
    late.source = SourceId("b".into());
    c.upsert(late);
    c.reconcile(11, &mut ex);
    let mut second: Vec<&str> = ex.0[2..].iter().map(String::as_str).collect();
    second.sort_unstable();
    assert_eq!(second, ["c.ini", "late.ini"], "the new one, then the backlog");
    assert_eq!(c.deferred_starts(), 2, "d.ini and e.ini still wait");
}

#[test]
fn a_held_back_name_no_longer_wanted_is_never_started() {
    let mut c = budgeted(1, &["a.ini", "b.ini", "c.ini"]);
    let mut ex = Started::default();
    c.reconcile(10, &mut ex);
    c.set_snapshot(&SourceId("a".into()), snapshot(&["a.ini", "c.ini"]), true);
    while c.reconcile(11, &mut ex).is_some() {}
    assert_eq!(ex.0, ["a.ini", "c.ini"]);
}

#[test]
fn without_a_budget_one_round_starts_everything() {
    let mut c = Controller::new(POLICY);
    c.set_snapshot(&SourceId("a".into()), snapshot(&["a.ini", "b.ini", "c.ini"]), true);
    let mut ex = Started::default();
    assert_eq!(c.reconcile(10, &mut ex), None);
    assert_eq!(ex.0.len(), 3);
}
