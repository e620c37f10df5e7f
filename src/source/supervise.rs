//! Owns the running sources: builds them, runs them as tasks on one shared
//! runtime (a thread of its own, so a slow server never stalls the emperor's
//! loop), restarts a source that fails or panics with the common backoff,
//! keeps a status per source, and stops them all on shutdown.

use super::util::retry::Backoff;
use super::{Envelope, Resource, Source, SourceContext, SourceError, SourceTask};
use reconciler::SourceId;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, Notify};

/// Events the emperor's queue holds before sources wait.
pub const CAPACITY: usize = 1024;

/// How long sources get to end once shutdown is requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What every source of one emperor shares.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Interval of the safety-net full rescan.
    pub resync: Duration,
    /// The id of the emperor's state dir (see [`SourceContext::emperor_id`]).
    pub emperor_id: String,
    /// Capacity of the event queue towards the emperor.
    pub capacity: usize,
    /// The state store's source cursors.
    pub cursors: Option<state::Cursors>,
    /// The emperor's per-state vassal counts (see [`SourceContext::counts`]).
    pub counts: Option<watch::Receiver<crate::control::VassalCounts>>,
    /// Whether file sources report config file owners (tyrant mode).
    pub file_owners: super::FileOwners,
    /// This emperor's name in a fleet (`--host`).
    pub host: String,
}

/// Completes once the emperor stops its sources (a cheap clone per task).
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A shutdown signal and its trigger (`send(true)` requests shutdown;
    /// dropping the trigger does too).
    pub fn pair() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until shutdown is requested (or the supervisor is gone).
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// How one source is doing, for the emperor's loop and a status display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStatus {
    /// `true` once built; `false` from a failure until the restarted
    /// source delivers an event again.
    pub up: bool,
    /// When `up` last changed.
    pub since: Instant,
    /// Why it last failed.
    pub last_error: Option<String>,
    /// How many times it was restarted.
    pub restarts: u32,
}

/// The shared, updatable status of one source.
#[derive(Debug, Clone)]
pub(super) struct StatusCell {
    id: SourceId,
    status: Arc<Mutex<SourceStatus>>,
    /// Woken when `up` changes (shared by every source of one emperor).
    changes: Arc<Notify>,
    /// Woken when an operator asks the source to read everything again.
    resync: Arc<Notify>,
    /// Whether the source delivers complete listings (see [`Source::lists`]).
    lists: bool,
}

impl StatusCell {
    pub(super) fn new(id: SourceId) -> Self {
        let status = SourceStatus { up: true, since: Instant::now(), last_error: None, restarts: 0 };
        let (changes, resync) = (Arc::default(), Arc::default());
        Self { id, status: Arc::new(Mutex::new(status)), changes, resync, lists: true }
    }

    pub(super) fn get(&self) -> SourceStatus {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SourceStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The source delivered an event: it is up (again).
    pub(super) fn delivered(&self) {
        let mut status = self.lock();
        if !status.up {
            status.up = true;
            status.since = Instant::now();
            tracing::info!(source = %self.id, restarts = status.restarts, "source delivering again");
            self.changes.notify_one();
        }
    }

    /// The source failed; returns whether it had been up since its last start.
    pub(super) fn failed(&self, error: String, restarting: bool) -> bool {
        let mut status = self.lock();
        let was_up = status.up;
        if status.up {
            status.since = Instant::now();
        }
        status.up = false;
        status.last_error = Some(error);
        status.restarts += u32::from(restarting);
        self.changes.notify_one();
        was_up
    }
}

/// A cheap, cloneable view of every source's status.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    cells: Vec<StatusCell>,
    changes: Arc<Notify>,
}

impl StatusBoard {
    /// The status of every source, in the order they were given.
    pub fn statuses(&self) -> Vec<(SourceId, SourceStatus)> {
        self.cells.iter().map(|cell| (cell.id.clone(), cell.get())).collect()
    }

    /// Completes when some source went up or down since the last call
    /// (one waiter: the emperor's loop).
    pub async fn changed(&self) {
        self.changes.notified().await;
    }

    /// Every source's id, and whether it delivers complete listings (see
    /// [`Source::lists`]).
    pub fn ids(&self) -> Vec<(SourceId, bool)> {
        self.cells.iter().map(|cell| (cell.id.clone(), cell.lists)).collect()
    }

    /// Asks the source `id` to read everything again now: it is built
    /// anew, which makes it send a complete listing. `false` for an
    /// unknown id.
    pub fn resync(&self, id: &SourceId) -> bool {
        let cell = self.cells.iter().find(|cell| cell.id == *id);
        cell.inspect(|cell| cell.resync.notify_one()).is_some()
    }
}

/// The running sources. Dropping it stops them (within [`SHUTDOWN_GRACE`]).
pub struct Sources {
    board: StatusBoard,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sources {
    /// The status of every source, in the order they were given.
    pub fn statuses(&self) -> Vec<(SourceId, SourceStatus)> {
        self.board().statuses()
    }

    /// A handle that reads the same statuses, for a task that outlives a
    /// borrow of `self` (the control socket).
    pub fn board(&self) -> StatusBoard {
        self.board.clone()
    }

    /// Stops every source and waits until they have ended.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Refuses two sources that claim one resource, naming both.
pub fn check_resources(sources: &[Box<dyn Source>]) -> Result<(), SourceError> {
    let mut claimed: BTreeMap<Resource, SourceId> = BTreeMap::new();
    for source in sources {
        for resource in source.resources() {
            if let Some(first) = claimed.get(&resource) {
                return Err(SourceError::Conflict { first: first.0.clone(), second: source.id().0, resource });
            }
            claimed.insert(resource, source.id());
        }
    }
    Ok(())
}

/// Builds every source (an error names the source that cannot start) and
/// runs them; returns the queue of their events and the handle that owns them.
pub async fn start(
    sources: Vec<Box<dyn Source>>,
    settings: Settings,
) -> Result<(mpsc::Receiver<Envelope>, Sources), SourceError> {
    check_resources(&sources)?;
    let (events, rx) = mpsc::channel(settings.capacity.max(1));
    let (stop, shutdown) = Shutdown::pair();
    let changes = Arc::new(Notify::new());
    let contexts: Vec<SourceContext> = sources
        .iter()
        .map(|s| {
            let mut ctx = SourceContext::new(
                s.id(),
                events.clone(),
                settings.resync,
                settings.emperor_id.clone(),
                shutdown.clone(),
            )
            .with_cursors(settings.cursors.clone())
            .with_counts(settings.counts.clone())
            .with_file_owners(settings.file_owners)
            .with_host(&settings.host);
            ctx.status.changes = changes.clone();
            ctx.status.lists = s.lists();
            ctx
        })
        .collect();
    let board = StatusBoard { cells: contexts.iter().map(|ctx| ctx.status.clone()).collect(), changes };
    let fail = |e: std::io::Error| SourceError::Start { uri: "(sources)".into(), message: e.to_string() };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(fail)?;
    let (built_tx, built_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("sources".into())
        .spawn(move || {
            runtime.block_on(run_all(sources.into_iter().zip(contexts).collect(), built_tx));
            runtime.shutdown_timeout(SHUTDOWN_GRACE);
        })
        .map_err(fail)?;
    let handle = Sources { board, stop, thread: Some(thread) };
    match built_rx.await {
        Ok(Ok(())) => Ok((rx, handle)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(SourceError::Start { uri: "(sources)".into(), message: "the source thread ended".into() }),
    }
}

/// Builds and runs one source alone: the entry point for tests and tools.
pub async fn run_one(
    source: Box<dyn Source>,
    settings: Settings,
) -> Result<(mpsc::Receiver<Envelope>, Sources), SourceError> {
    start(vec![source], settings).await
}

/// Builds every source, reports the outcome, then supervises them all
/// until shutdown.
async fn run_all(sources: Vec<(Box<dyn Source>, SourceContext)>, built: oneshot::Sender<Result<(), SourceError>>) {
    let mut ready = Vec::with_capacity(sources.len());
    for (source, ctx) in sources {
        match source.build(ctx.clone()).await {
            Ok(task) => ready.push((source, ctx, task)),
            Err(e) => {
                let _ = built.send(Err(e));
                return;
            }
        }
    }
    if built.send(Ok(())).is_err() {
        return;
    }
    let mut set = tokio::task::JoinSet::new();
    for (source, ctx, task) in ready {
        set.spawn(supervise(source, ctx, task));
    }
    while set.join_next().await.is_some() {}
}

/// Runs one source; restarts it with backoff whenever it fails or panics,
/// and at once when an operator asks it to read everything again.
async fn supervise(source: Box<dyn Source>, ctx: SourceContext, first: SourceTask) {
    let mut shutdown = ctx.shutdown.clone();
    let resync = ctx.status.resync.clone();
    let mut backoff = Backoff::default();
    let mut next = Some(first);
    loop {
        let task = match next.take() {
            Some(task) => task,
            None => match source.build(ctx.clone()).await {
                Ok(task) => task,
                Err(e) => {
                    tracing::error!(source = %ctx.id, error = %e, "cannot build the source again; retrying with backoff");
                    ctx.status.failed(e.to_string(), false);
                    if !pause(backoff.next_delay(), &mut shutdown, &resync).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let mut running = tokio::spawn(task);
        let ended = tokio::select! {
            ended = &mut running => ended,
            () = shutdown.requested() => {
                running.abort();
                let _ = running.await;
                return;
            }
            () = resync.notified() => {
                tracing::info!(source = %ctx.id, "reading the source again, as asked");
                running.abort();
                let _ = running.await;
                continue;
            }
        };
        let error = match ended {
            Ok(Ok(())) => return, // the emperor stopped listening
            Ok(Err(e)) => e.to_string(),
            Err(e) if e.is_panic() => format!("panicked: {}", panic_text(e.into_panic())),
            Err(e) => e.to_string(),
        };
        tracing::error!(source = %ctx.id, %error, "source failed; restarting it with backoff");
        if ctx.status.failed(error, true) {
            backoff.reset(); // it had worked since its last start
        }
        if !pause(backoff.next_delay(), &mut shutdown, &resync).await {
            return;
        }
    }
}

/// Sleeps `delay`, or less when a resync is asked for; `false` when
/// shutdown came first.
async fn pause(delay: Duration, shutdown: &mut Shutdown, resync: &Notify) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = resync.notified() => true,
        () = shutdown.requested() => false,
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload.downcast_ref::<&str>().map_or_else(|| "(no message)".to_owned(), |s| (*s).to_owned()),
    }
}

#[cfg(test)]
mod tests;
