//! The supervisor with fake sources: failures and panics are restarted and
//! reported, shutdown ends every source in time, claims are exclusive.

use super::*;
use crate::source::{parse, Built, SourceEvent};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// What one run of a fake source does after its first snapshot.
enum Act {
    /// Ends with an error.
    Fail,
    /// Panics.
    Panic,
    /// Waits for the gate, then delivers and runs until stopped.
    RunAfterGate,
    /// Runs until stopped.
    Run,
    /// Runs on a blocking thread until shutdown.
    Blocking,
    /// Sends `FLOOD` more events, counting them.
    Flood,
}

/// Events a flooding source sends after its snapshot.
const FLOOD: usize = 100;

#[derive(Clone)]
struct Fake {
    id: &'static str,
    script: Arc<Mutex<VecDeque<Act>>>,
    gate: Arc<Notify>,
    alive: Arc<AtomicUsize>,
    sent: Arc<AtomicUsize>,
    claims: Vec<Resource>,
}

impl Fake {
    fn new(id: &'static str, script: Vec<Act>) -> Self {
        let script = Arc::new(Mutex::new(script.into()));
        Self { id, script, gate: Arc::default(), alive: Arc::default(), sent: Arc::default(), claims: Vec::new() }
    }
}

/// Counts a running task while it lives.
struct Alive(Arc<AtomicUsize>);

impl Alive {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Source for Fake {
    fn id(&self) -> SourceId {
        SourceId(self.id.into())
    }

    fn resources(&self) -> Vec<Resource> {
        self.claims.clone()
    }

    fn build(&self, ctx: SourceContext) -> Built<'_> {
        let act = self.script.lock().unwrap().pop_front().unwrap_or(Act::Run);
        let (alive, gate, sent) = (self.alive.clone(), self.gate.clone(), self.sent.clone());
        Box::pin(async move {
            Ok(Box::pin(async move {
                let _alive = Alive::new(&alive);
                if matches!(act, Act::RunAfterGate) {
                    gate.notified().await;
                }
                ctx.send(SourceEvent::Snapshot { source: ctx.id.clone(), specs: Vec::new() }).await;
                match act {
                    Act::Fail => Err(SourceError::Failed { uri: ctx.id.0.clone(), message: "boom".into() }),
                    Act::Panic => panic!("kaboom"),
                    Act::Run | Act::RunAfterGate => std::future::pending().await,
                    Act::Flood => {
                        for _ in 0..FLOOD {
                            ctx.send(SourceEvent::Snapshot { source: ctx.id.clone(), specs: Vec::new() }).await;
                            sent.fetch_add(1, Ordering::SeqCst);
                        }
                        std::future::pending().await
                    }
                    Act::Blocking => {
                        let shutdown = ctx.shutdown.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            let _alive = Alive::new(&alive);
                            while !shutdown.is_requested() {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        })
                        .await;
                        Ok(())
                    }
                }
            }) as SourceTask)
        })
    }
}

fn settings() -> Settings {
    Settings {
        resync: Duration::from_secs(60),
        emperor_id: "e".into(),
        capacity: 16,
        cursors: None,
        counts: None,
        file_owners: crate::source::FileOwners::Ignored,
        host: "h".into(),
    }
}

/// Polls `check` until it holds, failing after a deadline.
async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn status(sources: &Sources) -> SourceStatus {
    sources.statuses().remove(0).1
}

async fn failing_source_is_restarted(first: Act, error: &str) {
    let fake = Fake::new("fake://a", vec![first, Act::RunAfterGate]);
    let (mut events, sources) = run_one(Box::new(fake.clone()), settings()).await.unwrap();
    assert!(events.recv().await.is_some(), "the first run delivers");
    wait_for("the failure to be reported", || !status(&sources).up).await;
    let down = status(&sources);
    assert_eq!(down.restarts, 1);
    assert!(down.last_error.as_deref().is_some_and(|e| e.contains(error)), "{down:?}");
    wait_for("the restarted run", || fake.alive.load(Ordering::SeqCst) == 1).await;
    fake.gate.notify_one();
    assert!(events.recv().await.is_some(), "the restarted source delivers");
    wait_for("the source to be up again", || status(&sources).up).await;
    assert_eq!(status(&sources).restarts, 1);
}

#[tokio::test]
async fn a_source_that_fails_is_reported_down_restarted_and_up_again() {
    failing_source_is_restarted(Act::Fail, "boom").await;
}

#[tokio::test]
async fn a_source_that_panics_is_reported_down_restarted_and_up_again() {
    failing_source_is_restarted(Act::Panic, "kaboom").await;
}

#[tokio::test]
async fn shutdown_ends_every_source_within_a_second() {
    let fakes = [
        Fake::new("fake://a", vec![Act::Run]),
        Fake::new("fake://b", vec![Act::Run]),
        Fake::new("fake://c", vec![Act::Blocking]),
    ];
    let boxed = fakes.iter().map(|f| Box::new(f.clone()) as Box<dyn Source>).collect();
    let (mut events, sources) = start(boxed, settings()).await.unwrap();
    for _ in 0..3 {
        events.recv().await.expect("every source delivers");
    }
    wait_for("the blocking source to run", || fakes[2].alive.load(Ordering::SeqCst) == 2).await;
    let asked = Instant::now();
    sources.shutdown();
    assert!(asked.elapsed() < SHUTDOWN_GRACE, "shutdown took {:?}", asked.elapsed());
    for fake in &fakes {
        assert_eq!(fake.alive.load(Ordering::SeqCst), 0, "{} still runs", fake.id);
    }
    assert!(events.recv().await.is_none(), "every sender is gone");
}

#[tokio::test]
async fn two_sources_claiming_one_resource_are_refused_by_name() {
    let mut a = Fake::new("fake://a", vec![]);
    let mut b = Fake::new("fake://b", vec![]);
    a.claims = vec![Resource::TcpPort(5250)];
    b.claims = vec![Resource::TcpPort(5250)];
    let err = start(vec![Box::new(a), Box::new(b)], settings()).await.err().unwrap().to_string();
    assert!(err.contains("fake://a") && err.contains("fake://b") && err.contains("5250"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    for pair in [
        ["zmq://5250".to_owned(), "zmq://tcp://0.0.0.0:5250".to_owned()],
        [format!("dir://{d}"), format!("{d}")],
        [format!("dir://{d}"), format!("dir://{d}/")],
    ] {
        let sources: Vec<_> = pair.iter().map(|uri| parse(uri).unwrap()).collect();
        let err = check_resources(&sources).unwrap_err().to_string();
        assert!(err.contains(&sources[0].id().0) && err.contains(&sources[1].id().0), "{err}");
    }
}

#[tokio::test]
async fn a_flooding_source_waits_for_the_emperor() {
    let fake = Fake::new("fake://flood", vec![Act::Flood]);
    let settings = Settings { capacity: 4, ..settings() };
    let (mut events, _sources) = run_one(Box::new(fake.clone()), settings).await.unwrap();
    wait_for("the queue to fill", || fake.sent.load(Ordering::SeqCst) >= 3).await;
    let mut received = 0;
    while received < 3 {
        // While nothing is read, the source cannot get further than the queue holds.
        assert!(fake.sent.load(Ordering::SeqCst) < 3 + received + 2, "the source did not wait");
        events.recv().await.expect("an event");
        received += 1;
    }
    while received < FLOOD + 1 {
        events.recv().await.expect("an event");
        received += 1;
    }
    wait_for("every event sent", || fake.sent.load(Ordering::SeqCst) == FLOOD).await;
}

#[tokio::test]
async fn a_resync_builds_the_source_anew_and_a_failure_wakes_the_board() {
    let fake = Fake::new("fake://a", vec![Act::Run, Act::Fail, Act::RunAfterGate]);
    let (mut events, sources) = run_one(Box::new(fake.clone()), settings()).await.unwrap();
    assert!(events.recv().await.is_some(), "the first run delivers");
    let board = sources.board();
    let id = SourceId("fake://a".into());
    assert_eq!(board.ids(), [(id.clone(), true)], "a source lists unless it says otherwise");
    assert!(!board.resync(&SourceId("fake://b".into())), "unknown");
    assert!(board.resync(&id));
    assert!(events.recv().await.is_some(), "built anew, it lists everything again");
    let changed = tokio::time::timeout(Duration::from_secs(10), board.changed()).await;
    assert!(changed.is_ok(), "the failure of the second run wakes the board");
    wait_for("the failure to be reported", || !status(&sources).up).await;
    assert_eq!(status(&sources).restarts, 1, "the resync itself is no restart");
    fake.gate.notify_one();
}
