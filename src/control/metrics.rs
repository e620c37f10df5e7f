//! The Prometheus metrics behind `--http`'s `/metrics`.
//!
//! Two kinds: counters the main loop increments as it acts ([`Counters`]:
//! actions, the time from a source's change to the action it caused, when
//! each source last delivered its listing), and gauges read at scrape time
//! from the table the loop publishes after every round and from the
//! sources' statuses. A scrape only reads: it never waits for the loop.

use super::table::{State, Table, VassalView};
use crate::source::supervise::StatusBoard;
use crate::source::util::secret;
use crate::supervisor::LastExit;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use reconciler::SourceId;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Which vassals get per-vassal series (`--metrics-per-vassal`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PerVassal {
    /// Every vassal.
    #[default]
    On,
    /// None: only the totals (for very large fleets).
    Off,
    /// Only vassals that are not running: what an alert needs.
    Unhealthy,
}

/// What the main loop does to vassals, as counted in `emperor_actions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// A first start (new config, or started again after a stop).
    Spawn,
    /// A start again after the process ended on its own.
    Respawn,
    /// A new config applied to the running process.
    Reload,
    /// A stop request sent to a running process.
    Stop,
    /// A SIGKILL (stop timeout, missed heartbeat).
    Kill,
}

impl ActionKind {
    /// Every kind, so that each has a series from the start.
    pub const ALL: [ActionKind; 5] =
        [ActionKind::Spawn, ActionKind::Respawn, ActionKind::Reload, ActionKind::Stop, ActionKind::Kill];

    /// Its label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Spawn => "spawn",
            ActionKind::Respawn => "respawn",
            ActionKind::Reload => "reload",
            ActionKind::Stop => "stop",
            ActionKind::Kill => "kill",
        }
    }
}

/// Every vassal state, so that `emperor_vassals` has a series for each,
/// 0 included.
const STATES: [State; 8] = [
    State::Running,
    State::Starting,
    State::Waiting,
    State::Stopping,
    State::Crashed,
    State::Held,
    State::Stopped,
    State::Standby,
];

/// Fails to compile when a state is added without being listed in [`STATES`].
#[allow(dead_code)]
fn every_state_is_listed(state: State) {
    match state {
        State::Running
        | State::Starting
        | State::Waiting
        | State::Stopping
        | State::Crashed
        | State::Held
        | State::Stopped
        | State::Standby => {}
    }
}

type Labels = Vec<(&'static str, String)>;

/// What the main loop counts, shared with the HTTP server (cheap to clone;
/// every update is an atomic or a short lock of its own).
#[derive(Debug, Clone)]
pub struct Counters {
    actions: Family<Labels, Counter>,
    event_to_action: Histogram,
    last_sync: Family<Labels, Gauge<f64, AtomicU64>>,
    healthy: Arc<AtomicBool>,
}

impl Default for Counters {
    fn default() -> Self {
        let actions = Family::default();
        for kind in ActionKind::ALL {
            let _ = actions.get_or_create(&vec![("action", kind.as_str().to_owned())]);
        }
        Self {
            actions,
            // 0.25 ms to about 8 s.
            event_to_action: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            last_sync: Family::default(),
            healthy: Arc::default(),
        }
    }
}

impl Counters {
    /// Counters for an emperor with these sources: each has its last-sync
    /// series from the start, at 0 until it delivers (an alert on
    /// `time() - x` then fires for a source that never answered).
    pub fn for_sources(sources: &[SourceId]) -> Self {
        let counters = Self::default();
        for source in sources {
            let _ = counters.last_sync.get_or_create(&vec![("source", secret::mask(&source.0))]);
        }
        counters
    }

    /// Counts one action.
    pub fn count(&self, kind: ActionKind) {
        self.actions.get_or_create(&vec![("action", kind.as_str().to_owned())]).inc();
    }

    /// Records how long after a source's change an action it caused was done.
    pub fn event_to_action(&self, elapsed: Duration) {
        self.event_to_action.observe(elapsed.as_secs_f64());
    }

    /// Records that `source` delivered its listing (or, for a message
    /// source, a change) now.
    pub fn synced(&self, source: &SourceId) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        self.last_sync.get_or_create(&vec![("source", secret::mask(&source.0))]).set(now);
    }

    /// Sets whether recovery is done and every source delivered its first
    /// listing (`/healthz`).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Whether `/healthz` answers 200.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// How many actions of `kind` were counted.
    #[cfg(test)]
    pub(crate) fn actions(&self, kind: ActionKind) -> u64 {
        self.actions.get_or_create(&vec![("action", kind.as_str().to_owned())]).get()
    }

    /// How many event-to-action times were observed.
    #[cfg(test)]
    pub(crate) fn timed(&self) -> usize {
        let mut text = String::new();
        let mut registry = Registry::default();
        registry.register("t", "t", self.event_to_action.clone());
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix("t_count ")).and_then(|n| n.parse().ok()).unwrap_or(0)
    }
}

/// The `/metrics` registry: the loop's counters, and what is read at
/// scrape time from the published table and the sources' statuses.
pub(crate) fn registry(
    counters: &Counters,
    table: watch::Receiver<Arc<Table>>,
    sources: StatusBoard,
    per_vassal: PerVassal,
) -> Registry {
    let mut registry = Registry::default();
    registry.register(
        "emperor_actions",
        "Actions done on vassals (spawn, respawn, reload, stop, kill)",
        counters.actions.clone(),
    );
    registry.register_with_unit(
        "emperor_event_to_action",
        "Time from a source event seen to an action it caused being done",
        Unit::Seconds,
        counters.event_to_action.clone(),
    );
    registry.register_with_unit(
        "emperor_source_last_sync_timestamp",
        "When each source last delivered its listing (or a change, for message sources)",
        Unit::Seconds,
        counters.last_sync.clone(),
    );
    registry.register_collector(Box::new(TableCollector { table, sources, per_vassal }));
    registry
}

/// Renders the registry in the OpenMetrics text format.
pub(crate) fn render(registry: &Registry) -> String {
    let mut text = String::with_capacity(64 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::warn!(error = %e, "cannot render the metrics");
    }
    text
}

/// Reads the gauges from the table and the sources at each scrape.
#[derive(Debug)]
struct TableCollector {
    table: watch::Receiver<Arc<Table>>,
    sources: StatusBoard,
    per_vassal: PerVassal,
}

impl Collector for TableCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let table = self.table.borrow().clone();
        self.encode_totals(&table, &mut encoder)?;
        let vassals: Vec<&VassalView> = table
            .vassals
            .values()
            .map(|v| &**v)
            .filter(|v| match self.per_vassal {
                PerVassal::On => true,
                PerVassal::Off => false,
                PerVassal::Unhealthy => v.state != State::Running,
            })
            .collect();
        if !vassals.is_empty() {
            encode_per_vassal(&vassals, &mut encoder)?;
        }
        Ok(())
    }
}

impl TableCollector {
    fn encode_totals(&self, table: &Table, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let build = [(vec![("version", env!("CARGO_PKG_VERSION").to_owned())], 1_i64)];
        let help = "The emperor's version (always 1).";
        gauges(encoder, "emperor_build_info", help, None, build.iter().map(|(l, n)| (l, *n)))?;
        let counts: Vec<(Labels, i64)> = STATES
            .iter()
            .map(|s| {
                (
                    vec![("state", s.as_str().to_owned())],
                    table.vassals.values().filter(|v| v.state == *s).count() as i64,
                )
            })
            .collect();
        gauges(encoder, "emperor_vassals", "Vassals in each state.", None, counts.iter().map(|(l, n)| (l, *n)))?;
        let statuses = self.sources.statuses();
        let up: Vec<(Labels, i64)> =
            statuses.iter().map(|(id, status)| (source_label(&id.0), i64::from(status.up))).collect();
        let help = "Whether each source delivers events (1) or is failing (0).";
        gauges(encoder, "emperor_source_up", help, None, up.iter().map(|(l, n)| (l, *n)))?;
        let desired: Vec<(Labels, i64)> = statuses
            .iter()
            .map(|(id, _)| (source_label(&id.0), table.desired.get(&id.0).copied().unwrap_or(0) as i64))
            .collect();
        gauges(
            encoder,
            "emperor_vassals_desired",
            "Vassals each source wants.",
            None,
            desired.iter().map(|(l, n)| (l, *n)),
        )
    }
}

fn encode_per_vassal(vassals: &[&VassalView], encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let labelled: Vec<(Labels, &VassalView)> = vassals.iter().map(|v| (vassal_labels(v), *v)).collect();
    let up = labelled.iter().map(|(l, v)| (l, i64::from(v.state == State::Running)));
    gauges(encoder, "emperor_vassal_up", "Whether the vassal's process runs (1) or not (0).", None, up)?;
    let mut family = encoder.encode_descriptor(
        "emperor_vassal_restarts",
        "Times the vassal was started again.",
        None,
        MetricType::Counter,
    )?;
    for (labels, v) in &labelled {
        ConstCounter::new(u64::from(v.restarts)).encode(family.encode_family(labels)?)?;
    }
    let started = labelled.iter().filter(|(_, v)| v.state == State::Running).filter_map(|(l, v)| Some((l, v.since?)));
    let help = "When the vassal's running process started.";
    gauges(encoder, "emperor_vassal_start_time", help, Some(&Unit::Seconds), started)?;
    let exits = labelled.iter().map(|(l, v)| (l, exit_code(v.last_exit)));
    let help = "Exit code of the vassal's last process; -1 if a signal ended it or it is unknown.";
    gauges(encoder, "emperor_vassal_last_exit_code", help, None, exits)
}

/// One gauge family: a descriptor, then one series per label set.
fn gauges<'l, V: prometheus_client::encoding::EncodeGaugeValue + std::fmt::Debug + Send + Sync>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: impl IntoIterator<Item = (&'l Labels, V)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// The last exit code; -1 for a signal, an unknown end, or none yet.
fn exit_code(exit: Option<LastExit>) -> i64 {
    match exit {
        Some(LastExit::Code(code)) => i64::from(code),
        _ => -1,
    }
}

fn vassal_labels(v: &VassalView) -> Labels {
    vec![("vassal", v.name.clone()), ("source", secret::mask(&v.source))]
}

fn source_label(source: &str) -> Labels {
    vec![("source", secret::mask(source))]
}
