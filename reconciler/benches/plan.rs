//! Reconcile cost: the full `plan()` over every name against `plan_for()`
//! over only the dirty names, which is what the running emperor calls.
//!
//! The world has N running vassals, all converged, then a handful of
//! changes: two new versions (reload), one new vassal (spawn), one vassal
//! removed (stop) and one crash due for respawn. `plan()` has to look at all
//! N names; `plan_for()` looks at the five dirty ones, so its cost should not
//! grow with N (beyond the O(log N) map lookups). `controller/one_change`
//! measures one whole round of the controller for one changed config:
//! `upsert` + `reconcile` with an executor that does nothing.
//! `controller/start_all` measures the rounds that start N vassals whose
//! configs all arrived at once (N dirty names), in one round without a start
//! budget and in rounds of 64 starts with one (what the emperor does): the
//! budget must not make the whole start cost more.
//!
//! `cargo bench -p reconciler --bench plan`; under `cargo test` each
//! benchmark runs once.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use reconciler::{
    plan, plan_for, ActionKind, Actual, ActualVassal, Backoff, BackoffPolicy, ConfigRef, Controller, Desired, Executor,
    Phase, ReloadOutcome, SourceId, StartError, VassalName, VassalSpec,
};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

const SIZES: [usize; 3] = [10, 1_000, 10_000];
const NOW: u64 = 1_000_000;

fn source() -> SourceId {
    SourceId("dir:///etc/emperor/vassals".to_owned())
}

fn name(i: usize) -> VassalName {
    VassalName::parse(&format!("app{i:05}.ini")).expect("valid name")
}

fn spec(i: usize, version: &str) -> VassalSpec {
    VassalSpec {
        name: name(i),
        source: source(),
        config: ConfigRef::File(format!("/etc/emperor/vassals/app{i:05}.ini").into()),
        version: version.to_owned(),
        owner: None,
        socket: None,
    }
}

fn running(version: &str) -> ActualVassal {
    ActualVassal {
        source: source(),
        version: version.to_owned(),
        phase: Phase::Running { since: 0 },
        generation: 1,
        backoff: Backoff::default(),
    }
}

/// N converged vassals plus five changes; returns the world and its dirty names.
fn world(n: usize) -> (Desired, Actual, Vec<VassalName>) {
    let mut desired = Desired::default();
    let snap = desired.snapshot_mut(&source());
    snap.complete = true;
    let mut actual = Actual::new();
    for i in 0..n {
        snap.specs.insert(name(i), spec(i, "v1"));
        actual.insert(name(i), running("v1"));
    }
    let mut dirty = Vec::new();
    // two configs changed -> reload
    for i in [0, n / 2] {
        snap.specs.insert(name(i), spec(i, "v2"));
        dirty.push(name(i));
    }
    // one new config -> spawn
    snap.specs.insert(name(n), spec(n, "v1"));
    dirty.push(name(n));
    // one config removed -> stop
    snap.specs.remove(&name(n - 1));
    dirty.push(name(n - 1));
    // one crash whose backoff is over -> respawn
    let crashed = n / 3 + 1;
    actual.get_mut(&name(crashed)).expect("exists").phase = Phase::Crashed { restart_at: NOW - 1 };
    dirty.push(name(crashed));
    dirty.sort();
    dirty.dedup();
    (desired, actual, dirty)
}

fn bench_plan(c: &mut Criterion) {
    let mut group = c.benchmark_group("reconcile");
    for n in SIZES {
        let (desired, actual, dirty) = world(n);
        let full = plan(&desired, &actual, NOW);
        let partial = plan_for(&desired, &actual, &dirty, NOW);
        assert_eq!(full, partial, "the dirty set holds every change");
        let kinds: Vec<ActionKind> = full.actions.iter().map(|a| a.kind).collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        // throughput = names examined per call
        group.throughput(Throughput::Elements(n as u64 + 1));
        group.bench_with_input(BenchmarkId::new("plan/all_names", n), &n, |b, _| {
            b.iter(|| plan(black_box(&desired), black_box(&actual), NOW))
        });
        group.throughput(Throughput::Elements(dirty.len() as u64));
        group.bench_with_input(BenchmarkId::new("plan_for/dirty_names", n), &n, |b, _| {
            b.iter(|| plan_for(black_box(&desired), black_box(&actual), black_box(&dirty), NOW))
        });
    }
    group.finish();
}

/// An executor with no side effects: every start and reload succeeds.
struct Noop;

impl Executor for Noop {
    fn start(&mut self, _: &VassalSpec, _: u64) -> Result<(), StartError> {
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

fn bench_controller(c: &mut Criterion) {
    let mut group = c.benchmark_group("controller");
    let policy = BackoffPolicy::default();
    for n in SIZES {
        let mut ctl = Controller::new(policy);
        ctl.add_source(source());
        let specs: BTreeMap<VassalName, VassalSpec> = (0..n).map(|i| (name(i), spec(i, "v0"))).collect();
        ctl.set_snapshot(&source(), specs, true);
        ctl.reconcile(0, &mut Noop);
        assert_eq!(ctl.actual().len(), n);
        let mut version = 0u64;
        group.bench_with_input(BenchmarkId::new("one_change", n), &n, |b, _| {
            b.iter(|| {
                version += 1;
                ctl.upsert(spec(n / 2, &version.to_string()));
                ctl.reconcile(NOW, &mut Noop)
            })
        });
    }
    group.finish();
}

/// A controller whose only source just listed `n` new configs: `n` dirty names.
fn all_new(n: usize, budget: Option<usize>) -> Controller {
    let mut ctl = Controller::new(BackoffPolicy::default());
    ctl.set_start_budget(budget);
    ctl.add_source(source());
    ctl.set_snapshot(&source(), (0..n).map(|i| (name(i), spec(i, "v0"))).collect(), true);
    ctl
}

fn bench_start_all(c: &mut Criterion) {
    let mut group = c.benchmark_group("controller");
    group.sample_size(10);
    for n in [1_000, 10_000] {
        for (label, budget) in [("start_all/one_round", None), ("start_all/rounds_of_64", Some(64))] {
            group.bench_with_input(BenchmarkId::new(label, n), &n, |b, &n| {
                b.iter_batched(
                    || all_new(n, budget),
                    |mut ctl| {
                        let mut rounds = 0;
                        while ctl.reconcile(NOW, &mut Noop).is_some() {
                            rounds += 1;
                        }
                        assert_eq!(ctl.actual().len(), n);
                        rounds
                    },
                    criterion::BatchSize::LargeInput,
                )
            });
        }
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_plan, bench_controller, bench_start_all
}
criterion_main!(benches);
