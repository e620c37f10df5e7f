//! Rounds cut short: the executor may end a round before its budget is
//! spent. Every start a round planned is then made exactly once in the
//! following rounds, with the generation it was announced with and without
//! being announced again, unless its spec changed or it is no longer
//! wanted; and a config made dirty since goes before the ones waiting.

use proptest::prelude::*;
use reconciler::*;
use std::collections::{BTreeMap, BTreeSet};

const POLICY: BackoffPolicy = BackoffPolicy { min_ms: 100, max_ms: 1_000, reset_after_ms: 5_000 };

fn name(n: &str) -> VassalName {
    VassalName::parse(n).unwrap()
}

fn spec(n: &str, source: &str) -> VassalSpec {
    versioned(n, source, "v1")
}

fn versioned(n: &str, source: &str, version: &str) -> VassalSpec {
    VassalSpec {
        name: name(n),
        source: SourceId(source.into()),
        config: ConfigRef::Inline(String::new()),
        version: version.into(),
        owner: None,
        socket: None,
    }
}

/// Starts until `allowed` starts were made in the round, then refuses;
/// records every start, every announcement and every withdrawn one, and
/// checks that a start was announced with its generation and spec.
#[derive(Default)]
struct Cutting {
    allowed: usize,
    made: usize,
    started: Vec<String>,
    /// The announced starts not made nor withdrawn yet: their versions.
    announced: BTreeMap<(String, u64), String>,
    withdrawn: Vec<(String, u64)>,
    /// How many rounds announced starts (one flush each).
    intends: usize,
    /// The version each wanted name has now: a start of another is refused.
    wanted: BTreeMap<String, String>,
}

impl Cutting {
    fn round(&mut self, allowed: usize) {
        self.allowed = allowed;
        self.made = 0;
    }
}

impl Executor for Cutting {
    fn intend(&mut self, starts: &[(VassalSpec, u64)]) {
        self.intends += 1;
        for (s, g) in starts {
            let old = self.announced.insert((s.name.to_string(), *g), s.version.clone());
            assert!(old.is_none(), "a generation announced once");
        }
    }
    fn may_start(&mut self) -> bool {
        self.made < self.allowed
    }
    fn start(&mut self, spec: &VassalSpec, generation: u64) -> Result<(), StartError> {
        let announced = self.announced.remove(&(spec.name.to_string(), generation));
        assert_eq!(announced.as_ref(), Some(&spec.version), "a start announced first, with its spec");
        if !self.wanted.is_empty() {
            assert_eq!(self.wanted.get(spec.name.as_str()), Some(&spec.version), "started with the spec wanted now");
        }
        self.made += 1;
        self.started.push(spec.name.to_string());
        Ok(())
    }
    fn withdraw(&mut self, starts: &[(VassalSpec, u64)]) {
        for (s, g) in starts {
            let key = (s.name.to_string(), *g);
            assert!(self.announced.remove(&key).is_some(), "only an announced start is withdrawn");
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
    let announced: Vec<&str> = ex.announced.keys().map(|(n, _)| n.as_str()).collect();
    assert_eq!(announced, ["s001.ini", "s002.ini", "s003.ini"], "the starts cut stay announced");
    assert!(ex.withdrawn.is_empty());
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
    assert_eq!(ex.announced.len(), 5, "announced once and kept");
    assert_eq!(ex.intends, 1, "the rounds that follow record nothing");
    ex.round(usize::MAX);
    assert_eq!(c.reconcile(10, &mut ex), None);
    assert_eq!(ex.started.len(), 5);
    let generations: BTreeSet<u64> = c.actual().values().map(|a| a.generation).collect();
    assert_eq!(generations.len(), 5, "a generation each, none reused");
}

#[test]
fn a_round_that_records_intents_announces_a_batch_and_the_next_rounds_record_none() {
    let mut c = controller(3, 20);
    c.set_intent_batch(8);
    let mut ex = Cutting::default();
    let mut now = 0;
    loop {
        now += 1;
        ex.round(usize::MAX);
        if c.reconcile(now, &mut ex).is_none() {
            break;
        }
    }
    assert_eq!(ex.started.len(), 20);
    assert_eq!(ex.intends, 4, "3 (the first round's changes), then 8 + 8 + 1 announced");
    assert!(ex.announced.is_empty() && ex.withdrawn.is_empty());
}

#[test]
fn a_prepared_start_whose_spec_changed_or_went_is_withdrawn_never_made() {
    let mut c = controller(1, 3);
    c.set_intent_batch(3);
    let mut ex = Cutting::default();
    ex.round(usize::MAX);
    c.reconcile(1, &mut ex);
    assert_eq!(ex.started, ["s000.ini"]);
    ex.round(0);
    c.reconcile(2, &mut ex);
    assert_eq!(ex.announced.len(), 2, "s001 and s002 prepared, not made");
    ex.round(usize::MAX);
    let dir = SourceId("dir".into());
    let specs = [spec("s000.ini", "dir"), versioned("s001.ini", "dir", "v2")].map(|s| (s.name.clone(), s));
    c.set_snapshot(&dir, specs.into_iter().collect(), true);
    while c.reconcile(2, &mut ex).is_some() {}
    assert_eq!(ex.started, ["s000.ini", "s001.ini"]);
    let withdrawn: Vec<&str> = ex.withdrawn.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(withdrawn, ["s001.ini", "s002.ini"], "v1 of s001 and the removed s002");
    assert_eq!(c.actual()[&name("s001.ini")].version, "v2");
    assert!(ex.announced.is_empty());
}

proptest! {
    /// Rounds of random budgets and intent batches, each cut after a random
    /// number of starts, with new configs arriving, changing and going
    /// between them: every name still wanted is started exactly once, each
    /// start with the spec wanted at that round, and in each round the
    /// names new since the last round come before every name that was
    /// waiting.
    #[test]
    fn every_dirty_name_is_started_once_across_cut_rounds(
        count in 0usize..60,
        budget in 1usize..10,
        batch in 0usize..12,
        rounds in proptest::collection::vec((0usize..12, 0usize..3, 0usize..4, 0usize..100), 1..40),
    ) {
        let mut c = controller(budget, count);
        c.set_intent_batch(batch);
        let amqp = SourceId("amqp".into());
        let wanted = (0..count).map(|i| (format!("s{i:03}.ini"), "v1".to_string())).collect();
        let mut ex = Cutting { wanted, ..Cutting::default() };
        let mut ever: BTreeSet<String> = ex.wanted.keys().cloned().collect();
        let mut messaged: Vec<String> = Vec::new();
        let mut now = 0;
        for (k, (allowed, new, change, which)) in rounds.into_iter().enumerate() {
            let mut fresh: Vec<String> = (0..new).map(|j| format!("n{k:02}-{j}.ini")).collect();
            if let Some(target) = messaged.get(which % messaged.len().max(1)).cloned() {
                if change == 1 && ex.wanted.contains_key(&target) {
                    let version = format!("v{}", k + 2);
                    c.upsert(versioned(&target, "amqp", &version));
                    ex.wanted.insert(target.clone(), version);
                    fresh.push(target);
                } else if change == 2 {
                    c.remove(&amqp, &name(&target));
                    ex.wanted.remove(&target);
                }
            }
            for n in fresh.iter().filter(|n| !messaged.contains(n)).cloned().collect::<Vec<_>>() {
                c.upsert(spec(&n, "amqp"));
                ex.wanted.insert(n.clone(), "v1".into());
                ever.insert(n.clone());
                messaged.push(n);
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
        let started: BTreeSet<String> = started.into_iter().collect();
        prop_assert!(ex.wanted.keys().all(|n| started.contains(n)), "every name still wanted was started");
        prop_assert!(started.is_subset(&ever));
        prop_assert!(ex.announced.is_empty(), "every announced start made or withdrawn");
        prop_assert_eq!(c.deferred_starts(), 0);
    }
}
