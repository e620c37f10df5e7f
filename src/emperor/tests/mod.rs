//! The main loop in-process, on a paused clock, driving a fake of the
//! vassal processes: source events go in through the loop's channel, exits
//! through the fake, and every test asserts what the fake was asked to do.
//!
//! Two ways to know the loop is done with something, neither of them a
//! sleep: a source event's ack completes after the round that applied it
//! (and every round before it), and an exit taken from the fake is handled
//! in the same round, with no await in between.

mod commands;
mod events;
mod fake;
mod rounds;

use super::event_loop::Emperor;
use super::journal::Journal;
use crate::source::{Envelope, SourceEvent};
use fake::{vassal, Did, Fake};
use reconciler::{ActualVassal, BackoffPolicy, ConfigRef, Controller, Phase, SourceId, VassalSpec};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{advance, timeout, Instant};

const DIR: &str = "dir:///etc/vassals";
const AMQP: &str = "amqp://broker/vassals";
/// A source that only the barrier speaks for.
const BARRIER: &str = "test://barrier";
const POLICY: BackoffPolicy = BackoffPolicy { min_ms: 1_000, max_ms: 8_000, reset_after_ms: 10_000 };
/// How long (on the paused clock) a test waits for the loop before failing.
const PATIENCE: Duration = Duration::from_secs(3_600);

/// A running loop and the test's ends of it.
struct Harness {
    fake: Fake,
    events: mpsc::Sender<Envelope>,
    store: state::Store,
    shutdown: Option<oneshot::Sender<()>>,
    /// The control socket's side of the loop.
    control: crate::control::Handle,
    serve: JoinHandle<anyhow::Result<super::event_loop::Ending>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A loop with nothing running and no source yet.
    fn start() -> Self {
        Self::with(Controller::new(POLICY), Fake::default())
    }

    /// A loop over `controller` and `fake`, journaling into a fresh state dir.
    fn with(controller: Controller, fake: Fake) -> Self {
        Self::paced(controller, fake, super::pace::Pace::default())
    }

    /// The same, with the rounds paced by `pace`.
    fn paced(controller: Controller, fake: Fake, pace: super::pace::Pace) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = state::Store::open(dir.path()).expect("state store");
        let journal = Journal::new(store.clone(), controller.next_generation());
        let (events, rx) = mpsc::channel(16);
        let (shutdown, requested) = oneshot::channel();
        let (hook, control) = crate::control::Hook::new(vec![source(DIR)], Some(store.events()));
        let emperor = Emperor {
            controller,
            supervisor: fake.clone(),
            journal,
            clock: Instant::now(),
            conflicts: HashSet::new(),
            control: hook,
            notify: crate::control::Notifier::log_only(vec![source(DIR)]),
            metrics: crate::control::LoopMetrics::default(),
            singletons: super::singletons::Singletons::start(
                Vec::new(),
                crate::fleet::lease::Timing::default_for(std::time::Duration::from_secs(15)),
                store.clone(),
                |_| false,
            ),
            trimmed_at: 0,
            pace,
        };
        let serve = tokio::spawn(emperor.serve(rx, async {
            let _ = requested.await;
        }));
        Self { fake, events, store, shutdown: Some(shutdown), control, serve, _dir: dir }
    }

    /// Sends a source event and waits until the loop has recorded and applied it.
    async fn send(&self, event: SourceEvent) {
        let (recorded, ack) = oneshot::channel();
        self.events.send(Envelope { event, recorded: Some(recorded) }).await.expect("the loop is running");
        timeout(PATIENCE, ack).await.expect("the loop answers").expect("the event is recorded");
    }

    /// Waits until the loop has finished every round due by now (a source
    /// event that changes nothing, and its ack).
    async fn settle(&self) {
        self.send(SourceEvent::Snapshot { source: source(BARRIER), specs: Vec::new() }).await;
    }

    /// Makes a vassal's process exit and waits until the loop has handled it.
    async fn exit(&self, name: &str) {
        self.fake.exit(name);
        until("took the exit", || !self.fake.exit_pending()).await;
    }

    /// Completes the shutdown future.
    fn request_shutdown(&mut self) {
        self.shutdown.take().expect("not yet requested").send(()).expect("the loop is running");
    }

    /// Waits for the loop to return.
    async fn finished(self) -> anyhow::Result<super::event_loop::Ending> {
        timeout(PATIENCE, self.serve).await.expect("the loop returns").expect("the loop did not panic")
    }
}

/// Lets the loop run until `done` holds; fails if it never does.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..1_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the loop never {what}");
}

fn source(id: &str) -> SourceId {
    SourceId(id.to_owned())
}

fn spec(source_id: &str, name: &str, version: &str) -> VassalSpec {
    VassalSpec {
        name: vassal(name),
        source: source(source_id),
        config: ConfigRef::Inline(format!("[vassal]\nexec = /bin/true {version}\n")),
        version: version.to_owned(),
        owner: None,
        socket: None,
    }
}

fn snapshot(source_id: &str, specs: &[(&str, &str)]) -> SourceEvent {
    let specs = specs.iter().map(|(name, version)| spec(source_id, name, version)).collect();
    SourceEvent::Snapshot { source: source(source_id), specs }
}

fn start(name: &str, generation: u64) -> Did {
    Did::Start(name.to_owned(), generation)
}

fn reload(name: &str, version: &str) -> Did {
    Did::Reload(name.to_owned(), version.to_owned())
}

fn stop(name: &str) -> Did {
    Did::Stop(name.to_owned())
}

fn forget(name: &str) -> Did {
    Did::Forget(name.to_owned())
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_starts_each_vassal_once() {
    let h = Harness::start();
    h.send(snapshot(DIR, &[("a.ini", "1"), ("b.ini", "1")])).await;
    assert_eq!(h.fake.take(), [start("a.ini", 1), start("b.ini", 2)]);
    h.send(snapshot(DIR, &[("a.ini", "1"), ("b.ini", "1")])).await;
    assert_eq!(h.fake.take(), [], "the same snapshot again changes nothing");
}

#[tokio::test(start_paused = true)]
async fn a_new_version_reloads_the_running_vassal() {
    let h = Harness::start();
    h.send(snapshot(DIR, &[("a.ini", "1"), ("b.ini", "1")])).await;
    h.fake.take();
    h.send(snapshot(DIR, &[("a.ini", "2"), ("b.ini", "1")])).await;
    assert_eq!(h.fake.take(), [reload("a.ini", "2")]);
    h.send(SourceEvent::Upsert(spec(DIR, "b.ini", "7"))).await;
    assert_eq!(h.fake.take(), [reload("b.ini", "7")]);
}

#[tokio::test(start_paused = true)]
async fn a_removed_vassal_is_stopped_then_forgotten_once_it_exits() {
    let h = Harness::start();
    h.send(SourceEvent::Upsert(spec(AMQP, "a.ini", "1"))).await;
    assert_eq!(h.fake.take(), [start("a.ini", 1)]);
    h.send(SourceEvent::Remove { source: source(AMQP), name: vassal("a.ini") }).await;
    assert_eq!(h.fake.take(), [stop("a.ini")], "stopped, not yet forgotten");
    h.exit("a.ini").await;
    assert_eq!(h.fake.take(), [forget("a.ini")], "forgotten, not respawned");
}

#[tokio::test(start_paused = true)]
async fn a_crash_respawns_at_once_and_a_second_quick_one_after_the_backoff() {
    let h = Harness::start();
    h.send(snapshot(DIR, &[("a.ini", "1")])).await;
    assert_eq!(h.fake.take(), [start("a.ini", 1)]);
    let crashed = Instant::now();
    h.exit("a.ini").await;
    assert_eq!(h.fake.take(), [start("a.ini", 2)], "the first crash respawns");
    assert_eq!(crashed.elapsed(), Duration::ZERO, "at once");

    h.exit("a.ini").await;
    assert_eq!(h.fake.take(), [], "a second quick crash waits");
    advance(Duration::from_millis(POLICY.min_ms - 1)).await;
    h.settle().await;
    assert_eq!(h.fake.take(), [], "not before the backoff");
    advance(Duration::from_millis(1)).await;
    until("respawned on its timer", || h.fake.has(&start("a.ini", 3))).await;
    assert_eq!(h.fake.take(), [start("a.ini", 3)], "once the backoff is over");
}

/// A loop that recovered `a.ini` and `b.ini` (running, from [`DIR`]) and,
/// when given, the journal's incomplete snapshot of that source.
fn recovered(restored: Option<&[(&str, &str)]>) -> Harness {
    let fake = Fake::default();
    let mut actual = BTreeMap::new();
    for (generation, name) in [(1, "a.ini"), (2, "b.ini")] {
        fake.adopt(name, generation);
        let running = ActualVassal {
            source: source(DIR),
            version: "1".into(),
            phase: Phase::Running { since: 0 },
            generation,
            backoff: Default::default(),
        };
        actual.insert(vassal(name), running);
    }
    let mut controller = Controller::with_actual(POLICY, actual, 3);
    controller.add_source(source(DIR));
    if let Some(specs) = restored {
        let specs = specs.iter().map(|(name, version)| (vassal(name), spec(DIR, name, version))).collect();
        controller.set_snapshot(&source(DIR), specs, false);
    }
    Harness::with(controller, fake)
}

/// Another source speaks (so the loop reconciles the recovered vassals);
/// nothing of [`DIR`]'s is stopped until [`DIR`] completes.
async fn nothing_stops_until_the_source_completes(h: Harness) {
    h.send(snapshot(AMQP, &[("c.ini", "1")])).await;
    assert_eq!(h.fake.take(), [start("c.ini", 3)]);
    h.send(snapshot(DIR, &[("b.ini", "1")])).await;
    assert_eq!(h.fake.take(), [stop("a.ini")], "a complete snapshot stops what it lacks");
}

#[tokio::test(start_paused = true)]
async fn a_source_that_has_not_spoken_stops_nothing() {
    nothing_stops_until_the_source_completes(recovered(None)).await;
}

#[tokio::test(start_paused = true)]
async fn an_incomplete_snapshot_stops_nothing() {
    nothing_stops_until_the_source_completes(recovered(Some(&[("b.ini", "1")]))).await;
}

/// Looks at the store at the instant an ack is delivered (the ack's
/// receiver is woken from inside the loop's `send`): were writes still
/// waiting for a flush?
struct AckProbe {
    store: state::Store,
    unflushed_at_ack: std::sync::Mutex<Option<bool>>,
}

impl AckProbe {
    fn seen(&self) -> Option<bool> {
        *self.unflushed_at_ack.lock().expect("probe")
    }
}

impl std::task::Wake for AckProbe {
    fn wake(self: Arc<Self>) {
        let unflushed = self.store.flush_if_written().expect("flush");
        *self.unflushed_at_ack.lock().expect("probe") = Some(unflushed);
    }
}

#[tokio::test(start_paused = true)]
async fn an_ack_completes_once_the_event_is_flushed() {
    let h = Harness::start();
    let (recorded, mut ack) = oneshot::channel();
    let probe = Arc::new(AckProbe { store: h.store.clone(), unflushed_at_ack: Default::default() });
    let waker = std::task::Waker::from(probe.clone());
    let pending = Pin::new(&mut ack).poll(&mut std::task::Context::from_waker(&waker));
    assert!(pending.is_pending(), "nothing is durable before the loop runs");
    let event = snapshot(DIR, &[("a.ini", "1")]);
    h.events.send(Envelope { event, recorded: Some(recorded) }).await.expect("the loop is running");
    until("acked the event", || probe.seen().is_some()).await;
    assert_eq!(probe.seen(), Some(false), "every write was flushed when the ack came");
    assert_eq!(ack.try_recv(), Ok(()));
    let written = h.store.snapshot(&source(DIR)).expect("readable").expect("written");
    assert_eq!(written.specs, [spec(DIR, "a.ini", "1")]);
    assert!(written.complete);
    assert_eq!(h.store.next_generation().expect("readable"), 2, "the generation it used is written too");
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_every_vassal_and_returns_once_they_are_gone() {
    let mut h = Harness::start();
    h.send(snapshot(DIR, &[("a.ini", "1"), ("b.ini", "1")])).await;
    h.fake.take();
    h.request_shutdown();
    until("stopped every vassal", || h.fake.has(&Did::StopAll)).await;
    h.exit("a.ini").await;
    assert!(!h.serve.is_finished(), "b.ini is still running");
    h.exit("b.ini").await;
    let fake = h.fake.clone();
    assert_eq!(h.finished().await.expect("a clean stop"), super::event_loop::Ending::Stopped);
    assert_eq!(fake.take(), [Did::StopAll, Did::RetireHolder], "nothing respawned; the fd holder retired last");
}
