//! The table driver against an in-memory backend, on a paused clock.

use super::*;
use crate::source::util::retry::MIN_DELAY;
use crate::source::{Envelope, Shutdown, SourceEvent};
use reconciler::SourceId;
use rows::Field;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::{channel, Receiver};
use tokio::sync::Notify;
use tokio::time::Instant;

const PERIOD: Duration = Duration::from_secs(1);

/// What the fake server holds and how it misbehaves.
#[derive(Default)]
struct Server {
    rows: Vec<Row>,
    down: bool,
    pending: usize,
    connects: Vec<Instant>,
    fetches: usize,
    /// A pending signal naming rows.
    marked: Option<Dirty>,
    lookups: usize,
}

#[derive(Clone, Default)]
struct Fake {
    server: Arc<Mutex<Server>>,
    signal: Arc<Notify>,
}

impl Fake {
    fn with(&self, f: impl FnOnce(&mut Server)) {
        f(&mut self.server.lock().unwrap());
        self.signal.notify_waiters();
    }

    fn get<T>(&self, f: impl FnOnce(&Server) -> T) -> T {
        f(&self.server.lock().unwrap())
    }
}

impl Backend for Fake {
    type Conn = ();
    const NAME: &'static str = "Fake";

    async fn connect(&self) -> Result<(), String> {
        let mut server = self.server.lock().unwrap();
        server.connects.push(Instant::now());
        match server.down {
            true => Err("refused".into()),
            false => Ok(()),
        }
    }

    async fn fetch(&self, (): &mut ()) -> Result<Vec<Row>, Failure> {
        let mut server = self.server.lock().unwrap();
        server.fetches += 1;
        match server.down {
            true => Err(Failure::Lost("reset".into())),
            false => Ok(server.rows.clone()),
        }
    }

    async fn fetch_rows(&self, (): &mut (), names: &BTreeSet<String>) -> Result<Option<Vec<Row>>, Failure> {
        let mut server = self.server.lock().unwrap();
        server.lookups += 1;
        let named = |r: &&Row| matches!(&r.name, Field::Value(n) if names.contains(n));
        Ok(Some(server.rows.iter().filter(named).cloned().collect()))
    }

    async fn changed(&self, (): &mut (), wait: Duration) -> Change {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.signal.notified();
            {
                let mut server = self.server.lock().unwrap();
                if server.down {
                    return Change::Lost("reset".into());
                }
                if let Some(dirty) = server.marked.take() {
                    return Change::Rows(dirty);
                }
                if server.pending > 0 {
                    server.pending -= 1;
                    return Change::Changed;
                }
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => return Change::Quiet,
            }
        }
    }

    fn period(&self, (): &(), _resync: Duration) -> Duration {
        PERIOD
    }
}

fn row(name: &str, config: &str) -> Row {
    Row {
        position: format!("row {name}"),
        name: Field::Value(name.into()),
        config: Field::Value(config.into()),
        ts: Field::Value("1".into()),
        uid: Field::Absent,
        gid: Field::Absent,
        socket: Field::Absent,
    }
}

/// Runs the driver on `fake`; keep the returned trigger alive as long as
/// the source should run.
fn start(fake: &Fake) -> (Receiver<Envelope>, tokio::sync::watch::Sender<bool>) {
    let (tx, rx) = channel(16);
    let (stop, shutdown) = Shutdown::pair();
    let ctx = SourceContext::new(SourceId("fake://t".into()), tx, Duration::from_secs(3600), "e".into(), shutdown);
    tokio::spawn(run(fake.clone(), ctx));
    (rx, stop)
}

async fn snapshot(rx: &mut Receiver<Envelope>) -> Vec<String> {
    let envelope = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("a snapshot in time");
    match envelope.expect("the source is running").event {
        SourceEvent::Snapshot { specs, .. } => specs.into_iter().map(|s| s.name.to_string()).collect(),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn first_publish_is_a_complete_snapshot_and_unchanged_fetches_publish_nothing() {
    let fake = Fake::default();
    fake.with(|s| s.rows = vec![row("a.ini", "x"), row("b.ini", "y")]);
    let (mut rx, _stop) = start(&fake);
    assert_eq!(snapshot(&mut rx).await, ["a.ini", "b.ini"]);
    tokio::time::sleep(PERIOD * 10).await;
    assert!(fake.get(|s| s.fetches) >= 5, "the source polls every period");
    assert!(rx.try_recv().is_err(), "an unchanged result is not published again");
    fake.with(|s| s.rows.truncate(1));
    assert_eq!(snapshot(&mut rx).await, ["a.ini"]);
}

#[tokio::test(start_paused = true)]
async fn an_outage_keeps_the_last_snapshot_and_retries_with_backoff() {
    let fake = Fake::default();
    fake.with(|s| s.rows = vec![row("a.ini", "x")]);
    let (mut rx, _stop) = start(&fake);
    assert_eq!(snapshot(&mut rx).await, ["a.ini"]);
    fake.with(|s| s.down = true);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(rx.try_recv().is_err(), "nothing is published during an outage");
    let connects = fake.get(|s| s.connects.clone());
    let gaps: Vec<Duration> = connects.windows(2).skip(1).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 3, "the source retries: {gaps:?}");
    assert!(gaps[0] >= MIN_DELAY && gaps.windows(2).all(|w| w[1] >= w[0]), "the delay grows: {gaps:?}");
    fake.with(|s| {
        s.down = false;
        s.rows.push(row("b.ini", "y"));
    });
    assert_eq!(snapshot(&mut rx).await, ["a.ini", "b.ini"], "back online, the new state is published");
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_changes_costs_one_query() {
    let fake = Fake::default();
    let (mut rx, _stop) = start(&fake);
    assert!(snapshot(&mut rx).await.is_empty());
    tokio::time::sleep(PERIOD / 2).await;
    let before = fake.get(|s| s.fetches);
    fake.with(|s| {
        s.pending = 5;
        s.rows.push(row("a.ini", "x"));
    });
    assert_eq!(snapshot(&mut rx).await, ["a.ini"]);
    assert_eq!(fake.get(|s| (s.fetches - before, s.pending)), (1, 0), "five signals, one fetch");
}

#[tokio::test(start_paused = true)]
async fn a_bad_row_is_reported_once() {
    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = {
        let logs = logs.clone();
        move || LogWriter(logs.clone())
    };
    let subscriber = tracing_subscriber::fmt().with_writer(writer).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let fake = Fake::default();
    fake.with(|s| s.rows = vec![row("a.ini", "x"), row("../evil.ini", "y")]);
    let (mut rx, _stop) = start(&fake);
    assert_eq!(snapshot(&mut rx).await, ["a.ini"], "the good rows are used");
    tokio::time::sleep(PERIOD * 5).await;
    assert!(fake.get(|s| s.fetches) >= 3);
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert_eq!(text.matches("skipping a bad row").count(), 1, "{text}");
}

/// The next event, as `+name` (upsert) or `-name` (removal).
async fn one_vassal(rx: &mut Receiver<Envelope>) -> String {
    let envelope = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("an event in time");
    match envelope.expect("the source is running").event {
        SourceEvent::Upsert(spec) => format!("+{}", spec.name),
        SourceEvent::Remove { name, .. } => format!("-{name}"),
        other => panic!("expected one vassal, got {other:?}"),
    }
}

fn marked(names: impl IntoIterator<Item = String>) -> Dirty {
    let mut dirty = Dirty::default();
    names.into_iter().for_each(|n| dirty.add(n));
    dirty
}

#[tokio::test(start_paused = true)]
async fn named_rows_are_read_alone_and_sent_one_by_one() {
    let fake = Fake::default();
    fake.with(|s| s.rows = vec![row("a.ini", "x"), row("b.ini", "y"), row("keep.ini", "k")]);
    let (mut rx, _stop) = start(&fake);
    assert_eq!(snapshot(&mut rx).await, ["a.ini", "b.ini", "keep.ini"]);
    let fetches = fake.get(|s| s.fetches);
    fake.with(|s| {
        s.rows = vec![row("b.ini", "changed"), row("c.ini", "new"), row("keep.ini", "k")];
        s.marked = Some(marked(["a.ini", "b.ini", "c.ini", "never.ini"].map(String::from)));
    });
    let events = [one_vassal(&mut rx).await, one_vassal(&mut rx).await, one_vassal(&mut rx).await];
    assert_eq!(events, ["-a.ini", "+b.ini", "+c.ini"]);
    assert_eq!(fake.get(|s| (s.lookups, s.fetches)), (1, fetches), "one lookup, no whole query");

    // Too many names for the set: one whole query.
    fake.with(|s| {
        s.rows.truncate(1);
        s.marked = Some(marked((0..=dirty::MAX_NAMES).map(|i| format!("{i}.ini"))));
    });
    assert_eq!(snapshot(&mut rx).await, ["b.ini"]);
    assert_eq!(fake.get(|s| (s.lookups, s.fetches)), (1, fetches + 1));
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
