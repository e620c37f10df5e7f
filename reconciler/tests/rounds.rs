//! Rounds cut short: the executor may end a round before its budget is
//! spent. Every start a round planned is then made exactly once in the
//! following rounds, and a config made dirty since goes before the ones
//! waiting.

use proptest::prelude::*;
use reconciler::*;
use std::collections::{BTreeMap, BTreeSet};

const POLICY: BackoffPolicy = BackoffPolicy { min_ms: 100, max_ms: 1_000, reset_after_ms: 5_000 };

fn name(n: &str) -> VassalName {
    VassalName::parse(n).unwrap()
}

fn spec(n: &str, source: &str) -> VassalSpec {
    VassalSpec {
        name: name(n),
        source: SourceId(source.into()),
        config: ConfigRef::Inline(String::new()),
        version: "v1".into(),
        owner: None,
        socket: None,
    }
}

/// Starts until `allowed` starts were made in the round, then refuses;
/// records every start and every withdrawn announcement.
#[derive(Default)]
struct Cutting {
    allowed: usize,
    made: usize,
    started: Vec<String>,
    announced: BTreeSet<(String, u64)>,
    withdrawn: Vec<(String, u64)>,
}

impl Cutting {
    fn round(&mut self, allowed: usize) {
        self.allowed = allowed;
        self.made = 0;
    }
}

impl Executor for Cutting {
    fn intend(&mut self, starts: &[(VassalSpec, u64)]) {
        self.announced.extend(starts.iter().map(|(s, g)| (s.name.to_string(), *g)));
    }
    fn may_start(&mut self) -> bool {
        self.made < self.allowed
    }
    fn start(&mut self, spec: &VassalSpec, generation: u64) -> Result<(), StartError> {
        assert!(self.announced.remove(&(spec.name.to_string(), generation)), "a start announced first");
        self.made += 1;
        self.started.push(spec.name.to_string());
        Ok(())
    }
    fn withdraw(&mut self, starts: &[(VassalSpec, u64)]) {
        for (s, g) in starts {
            let key = (s.name.to_string(), *g);
            assert!(self.announced.remove(&key), "only an announced start is withdrawn");
            self.withdrawn.push(key);
        }
    }
    fn reload(&mut self, _: &VassalSpec) -> ReloadOutcome {
        ReloadOutcome::Reloaded
    }
    fn stop(&mut self, _: &VassalName) -> bool {
        true
    }
    fn forget(&mut self, _: &VassalName) {}
}

fn controller(budget: usize, count: usize) -> Controller {
    let mut c = Controller::new(POLICY);
    c.set_start_budget(Some(budget));
    c.add_source(SourceId("dir".into()));
    let specs: BTreeMap<VassalName, VassalSpec> =
        (0..count).map(|i| spec(&format!("s{i:03}.ini"), "dir")).map(|s| (s.name.clone(), s)).collect();
    c.set_snapshot(&SourceId("dir".into()), specs, true);
    c
}

#[test]
fn a_round_cut_short_starts_none_of_the_rest_and_the_next_one_starts_them_first() {
    let mut c = controller(4, 10);
    let mut ex = Cutting::default();
    ex.round(1);
    assert_eq!(c.reconcile(1, &mut ex), Some(1), "starts wait: the next round is due now");
    assert_eq!(ex.started, ["s000.ini"]);
    let withdrawn: Vec<&str> = ex.withdrawn.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(withdrawn, ["s001.ini", "s002.ini", "s003.ini"]);
    assert_eq!(c.deferred_starts(), 9);
    c.upsert(spec("probe.ini", "amqp"));
    ex.round(usize::MAX);
    c.reconcile(2, &mut ex);
    assert_eq!(
        ex.started[1..],
        ["probe.ini", "s001.ini", "s002.ini", "s003.ini"],
        "the new one, the withdrawn, then the backlog"
    );
}

#[test]
fn an_executor_that_refuses_every_start_starts_nothing_and_loses_nothing() {
    let mut c = controller(64, 5);
    let mut ex = Cutting::default();
    for now in 1..4 {
        ex.round(0);
        assert_eq!(c.reconcile(now, &mut ex), Some(now));
    }
    assert!(ex.started.is_empty());
    assert_eq!(c.deferred_starts(), 5);
    assert!(ex.announced.is_empty(), "every announced start was withdrawn");
    ex.round(usize::MAX);
    assert_eq!(c.reconcile(10, &mut ex), None);
    assert_eq!(ex.started.len(), 5);
    let generations: BTreeSet<u64> = c.actual().values().map(|a| a.generation).collect();
    assert_eq!(generations.len(), 5, "a generation each, none reused");
}

proptest! {
    /// Rounds of random budgets, each cut after a random number of starts,
    /// with new configs arriving between them: every wanted name is started
    /// exactly once, and in each round the names new since the last round
    /// come before every name that was waiting.
    #[test]
    fn every_dirty_name_is_started_once_across_cut_rounds(
        count in 0usize..60,
        budget in 1usize..10,
        rounds in proptest::collection::vec((0usize..12, 0usize..3), 1..40),
    ) {
        let mut c = controller(budget, count);
        let mut ex = Cutting::default();
        let mut wanted: BTreeSet<String> = (0..count).map(|i| format!("s{i:03}.ini")).collect();
        let mut now = 0;
        for (k, (allowed, new)) in rounds.into_iter().enumerate() {
            let fresh: Vec<String> = (0..new).map(|j| format!("n{k:02}-{j}.ini")).collect();
            for n in &fresh {
                c.upsert(spec(n, "amqp"));
                wanted.insert(n.clone());
            }
            now += 1;
            ex.round(allowed);
            let before = ex.started.len();
            c.reconcile(now, &mut ex);
            let round = &ex.started[before..];
            let first_old = round.iter().position(|n| !fresh.contains(n)).unwrap_or(round.len());
            prop_assert!(round[first_old..].iter().all(|n| !fresh.contains(n)), "new configs first: {:?}", round);
            prop_assert!(round.len() <= allowed.min(budget));
        }
        ex.round(usize::MAX);
        while c.reconcile(now, &mut ex).is_some() {
            now += 1;
        }
        let mut started = ex.started.clone();
        started.sort();
        let before = started.len();
        started.dedup();
        prop_assert_eq!(before, started.len(), "no name started twice");
        prop_assert_eq!(started.into_iter().collect::<BTreeSet<_>>(), wanted);
        prop_assert!(ex.announced.is_empty(), "every announced start made or withdrawn");
        prop_assert_eq!(c.deferred_starts(), 0);
    }
}
