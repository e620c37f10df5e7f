//! Runs one source in-process and hands its events to the checks, plus the
//! captured `tracing` output of the whole test binary.
//!
//! [`start`] is the one place that knows how a source is built and started:
//! when the source API changes, only it changes.

use crate::common::{wait_until, DEADLINE};
use emperor::source::supervise::{self, Settings, Sources, CAPACITY};
use emperor::source::{self, Envelope, SourceEvent, SourceStatus};
use reconciler::{SourceId, VassalSpec};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc::Receiver;

/// Interval of the safety-net rescan the sources under test get: short, so
/// that every check also runs through many rescans of an unchanged state.
pub const RESYNC: Duration = Duration::from_millis(300);

/// A started source: its id, what it sends, and the supervisor that owns
/// it. Dropping it stops the source.
pub struct Running {
    /// The id the source gave itself.
    pub id: SourceId,
    events: Receiver<Envelope>,
    sources: Option<Sources>,
    /// Its view so far: every event received applied in order.
    pub view: View,
}

/// Builds the source of `uri` and runs it alone under the source
/// supervisor, as the emperor would; the captured log is installed first.
pub fn start(uri: &str) -> Running {
    capture_logs();
    let built = source::parse(uri).unwrap_or_else(|e| panic!("parse {uri}: {e}"));
    start_source(built)
}

/// Runs an already parsed source alone under the source supervisor.
pub fn start_source(built: Box<dyn source::Source>) -> Running {
    capture_logs();
    static EMPERORS: AtomicUsize = AtomicUsize::new(0);
    let id = built.id();
    let n = EMPERORS.fetch_add(1, Ordering::Relaxed);
    let settings = Settings {
        resync: RESYNC,
        emperor_id: format!("conformance-{}-{n}", std::process::id()),
        capacity: CAPACITY,
        cursors: None,
        counts: None,
        file_owners: source::FileOwners::Ignored,
        host: "conformance".into(),
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime to build the source");
    let (events, sources) =
        runtime.block_on(supervise::run_one(built, settings)).unwrap_or_else(|e| panic!("start {id}: {e}"));
    Running { id, events, sources: Some(sources), view: View::default() }
}

impl Running {
    /// The next event, within `timeout`; completes its `recorded` as the
    /// emperor does once the event is flushed (message sources acknowledge
    /// only then), and applies it to [`Running::view`].
    pub fn next_within(&mut self, timeout: Duration, what: &str) -> SourceEvent {
        let envelope = wait_until(timeout, format!("{}: {what}", self.id), || self.events.try_recv().ok());
        if let Some(recorded) = envelope.recorded {
            let _ = recorded.send(());
        }
        self.view.apply(&envelope.event);
        envelope.event
    }

    /// [`Running::next_within`] the default deadline.
    pub fn next(&mut self, what: &str) -> SourceEvent {
        self.next_within(DEADLINE, what)
    }

    /// Every event already received, without waiting.
    pub fn drain(&mut self) -> Vec<SourceEvent> {
        let mut out = Vec::new();
        while let Ok(envelope) = self.events.try_recv() {
            if let Some(recorded) = envelope.recorded {
                let _ = recorded.send(());
            }
            self.view.apply(&envelope.event);
            out.push(envelope.event);
        }
        out
    }

    /// Takes events until the view satisfies `done`, within `timeout`.
    pub fn until(&mut self, timeout: Duration, what: &str, done: impl Fn(&View) -> bool) {
        let deadline = std::time::Instant::now() + timeout;
        while !done(&self.view) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            self.next_within(left, what);
        }
    }

    /// Asks the source to stop and waits until it has ended; returns how
    /// long that took and whether its event queue was closed by then.
    pub fn shutdown(&mut self) -> (Duration, bool) {
        let sources = self.sources.take().expect("the source is running");
        let started = std::time::Instant::now();
        sources.shutdown();
        let took = started.elapsed();
        self.drain();
        let closed = self.events.is_closed();
        (took, closed)
    }

    /// The supervisor's status of the source.
    pub fn status(&self) -> SourceStatus {
        let sources = self.sources.as_ref().expect("the source is running");
        sources.statuses().into_iter().next().expect("one source").1
    }

    /// Captured log lines that name this source (its id).
    pub fn log(&self) -> Vec<String> {
        log_lines(&self.id.0)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("EMPEROR_TEST_DUMP").is_some() {
            eprintln!("===== captured log of {} =====\n{}", self.id, self.log().join("\n"));
        }
    }
}

/// What a source offers, as the emperor would see it from its events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct View {
    /// Whether a snapshot arrived.
    pub listed: bool,
    /// Every vassal offered now, by name.
    pub specs: BTreeMap<String, VassalSpec>,
}

impl View {
    /// Applies one event.
    pub fn apply(&mut self, event: &SourceEvent) {
        match event {
            SourceEvent::Snapshot { specs, .. } => {
                self.listed = true;
                self.specs = specs.iter().map(|s| (s.name.as_str().to_owned(), s.clone())).collect();
            }
            SourceEvent::Upsert(spec) => {
                self.specs.insert(spec.name.as_str().to_owned(), spec.clone());
            }
            SourceEvent::Remove { name, .. } => {
                self.specs.remove(name.as_str());
            }
        }
    }

    /// The names offered, sorted.
    pub fn names(&self) -> Vec<String> {
        self.specs.keys().cloned().collect()
    }

    /// The version of `name`, if offered.
    pub fn version(&self, name: &str) -> Option<String> {
        self.specs.get(name).map(|s| s.version.clone())
    }

    /// The names whose spec differs between `self` and `after`.
    pub fn changed(&self, after: &View) -> Vec<String> {
        let mut names: Vec<String> = self.specs.keys().chain(after.specs.keys()).cloned().collect();
        names.sort();
        names.dedup();
        names.retain(|n| self.specs.get(n) != after.specs.get(n));
        names
    }
}

/// The names an event speaks of: for a snapshot, those it changes relative
/// to `before`; for an upsert or a remove, its one vassal (even if the view
/// does not change: a resent unchanged vassal is an event too).
pub fn touched(before: &View, event: &SourceEvent) -> Vec<String> {
    match event {
        SourceEvent::Snapshot { .. } => {
            let mut after = before.clone();
            after.apply(event);
            before.changed(&after)
        }
        SourceEvent::Upsert(spec) => vec![spec.name.as_str().to_owned()],
        SourceEvent::Remove { name, .. } => vec![name.as_str().to_owned()],
    }
}

// ------------------------------------------------------------ captured log

static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// The writer of the captured log.
struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs, once per test binary, a subscriber that keeps in memory every
/// line the emperor logs (all levels) and those of its libraries (info and up).
pub fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,emperor=trace"))
            .with_ansi(false)
            .without_time()
            .with_writer(|| Capture)
            .init();
    });
}

/// Every captured line that contains `needle`.
pub fn log_lines(needle: &str) -> Vec<String> {
    let all = CAPTURED.lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&all).lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
}

/// The whole captured log.
pub fn whole_log() -> String {
    String::from_utf8_lossy(&CAPTURED.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

/// Captured warnings (and errors) that contain `scope` and `needle`.
pub fn warnings(scope: &str, needle: &str) -> Vec<String> {
    log_lines(scope)
        .into_iter()
        .filter(|l| l.contains(needle) && (l.starts_with(" WARN") || l.starts_with("ERROR")))
        .collect()
}

/// Waits for a warning that contains `scope` and `needle`, and returns it.
pub fn wait_warning(timeout: Duration, scope: &str, needle: &str) -> String {
    wait_until(timeout, format!("a warning naming {needle:?} ({scope})"), || warnings(scope, needle).into_iter().next())
}
