//! The main loop's side of singleton vassals: which vassals are singletons,
//! one lease task per source that can hold leases, and what their orders
//! mean for the controller (a singleton not held is on standby) and the
//! supervisor (its token and kill deadline).

use super::processes::Processes;
use crate::fleet::lease::task::{self, Notice, Order, Wanted};
use crate::fleet::lease::{LeaseRefused, LeaseStore, Timing};
use crate::source::Source;
use reconciler::{ConfigRef, Controller, SourceId, VassalName, VassalSpec};
use std::collections::{BTreeSet, HashMap};
use tokio::sync::{mpsc, watch};

/// Singletons and their leases; see the module docs.
pub(super) struct Singletons {
    /// The wanted set of each source's lease task.
    tasks: HashMap<SourceId, watch::Sender<Wanted>>,
    /// The singletons each such source offers.
    names: HashMap<SourceId, BTreeSet<VassalName>>,
    /// The singletons this emperor may run, with their tokens.
    held: HashMap<VassalName, u64>,
    /// Singletons found running at start, with the token they run under,
    /// until their lease task has renewed or given them up.
    recovering: HashMap<VassalName, u64>,
    /// Orders from the lease tasks.
    notices: mpsc::UnboundedReceiver<Notice>,
    store: state::Store,
    /// The lease tasks, ended with the loop.
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Singletons {
    fn drop(&mut self) {
        self.handles.iter().for_each(|h| h.abort());
    }
}

impl Singletons {
    /// Starts a lease task for every lease store (see [`lease_stores`]).
    /// `running` tells whether a vassal's process was re-adopted: a
    /// singleton that runs with a recorded token is kept while its lease is
    /// renewed.
    pub(super) fn start(
        stores: Vec<(SourceId, Box<dyn LeaseStore>)>,
        timing: Timing,
        store: state::Store,
        running: impl Fn(&VassalName) -> bool,
    ) -> Self {
        let (tx, notices) = mpsc::unbounded_channel();
        let mut tasks = HashMap::new();
        let mut handles = Vec::new();
        for (source, leases) in stores {
            let (wanted_tx, wanted_rx) = watch::channel(Wanted::new());
            handles.push(tokio::spawn(task::run(leases, timing, wanted_rx, tx.clone())));
            tasks.insert(source, wanted_tx);
        }
        let tokens = store.lease_tokens().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the singletons' tokens; running singletons will be stopped");
            Vec::new()
        });
        let recovering = tokens.into_iter().filter(|(name, _)| running(name)).collect();
        Self { tasks, names: HashMap::new(), held: HashMap::new(), recovering, notices, store, handles }
    }

    /// The next order of a lease task.
    pub(super) async fn next(&mut self) -> Option<Notice> {
        match self.tasks.is_empty() {
            true => std::future::pending().await,
            false => self.notices.recv().await,
        }
    }

    /// Learns which vassals of `source` are singletons from its new specs;
    /// a new singleton not held is put on standby.
    pub(super) fn on_specs<'a>(
        &mut self,
        source: &SourceId,
        specs: impl IntoIterator<Item = &'a VassalSpec>,
        controller: &mut Controller,
    ) {
        if !self.tasks.contains_key(source) {
            return;
        }
        let now: BTreeSet<VassalName> = specs.into_iter().filter(|s| is_singleton(s)).map(|s| s.name.clone()).collect();
        let before = self.names.insert(source.clone(), now.clone()).unwrap_or_default();
        for name in now.difference(&before) {
            self.standby_unless_running(name, controller);
        }
        for name in before.difference(&now) {
            controller.set_standby(name, false);
        }
    }

    /// Learns whether the one vassal `name` of `source` is a singleton from
    /// its new spec (`None`: removed), like [`Singletons::on_specs`] for a
    /// source that sends one vassal at a time.
    pub(super) fn on_spec(
        &mut self,
        source: &SourceId,
        name: &VassalName,
        spec: Option<&VassalSpec>,
        controller: &mut Controller,
    ) {
        if !self.tasks.contains_key(source) {
            return;
        }
        let names = self.names.entry(source.clone()).or_default();
        let now = spec.is_some_and(is_singleton);
        if now == names.contains(name) {
            return;
        }
        if now {
            names.insert(name.clone());
            self.standby_unless_running(name, controller);
        } else {
            names.remove(name);
            controller.set_standby(name, false);
        }
    }

    /// Puts a vassal that just became a singleton on standby, unless this
    /// emperor already runs it (held or being re-adopted under its lease).
    fn standby_unless_running(&self, name: &VassalName, controller: &mut Controller) {
        let runs = self.held.contains_key(name) || self.recovering.contains_key(name);
        controller.set_standby(name, !runs);
    }

    /// Carries out a lease task's order.
    pub(super) fn on_notice(&mut self, notice: Notice, controller: &mut Controller, procs: &mut impl Processes) {
        let Notice { name, order } = notice;
        match order {
            Order::Run { token, .. } => {
                self.recovering.remove(&name);
                // The token is durable before the vassal can start under it.
                if let Err(e) = self.store.set_lease_token(&name, Some(token)) {
                    tracing::error!(vassal = %name, error = %e, "cannot record the singleton's token; not starting it");
                    return;
                }
                tracing::info!(vassal = %name, token, "singleton held: it runs here");
                self.held.insert(name.clone(), token);
                procs.fence(&name, order);
                controller.set_standby(&name, false);
            }
            Order::Extend { .. } => procs.fence(&name, order),
            Order::Stop { .. } => {
                self.recovering.remove(&name);
                if self.held.remove(&name).is_some() {
                    tracing::warn!(vassal = %name, "singleton's lease lost or unconfirmed: stopping it");
                }
                procs.fence(&name, order);
                controller.set_standby(&name, true);
            }
        }
    }

    /// Tells each lease task which singletons to hold: those its source
    /// offers (unless an operator stopped them here: another emperor may
    /// run them), and those still running here (released only once gone).
    /// A singleton neither wanted nor running is no longer held.
    pub(super) fn publish(&mut self, controller: &Controller, procs: &mut impl Processes) {
        let mut all = BTreeSet::new();
        for (source, tx) in &self.tasks {
            let offered = self.names.get(source).into_iter().flatten().filter(|n| !controller.desired().is_stopped(n));
            let here = |name: &&VassalName| controller.actual().get(*name).is_some_and(|have| have.source == *source);
            let running = self.held.keys().chain(self.recovering.keys()).filter(here);
            let wanted: Wanted =
                offered.chain(running).map(|name| (name.clone(), self.recovering.get(name).copied())).collect();
            all.extend(wanted.keys().cloned());
            tx.send_if_modified(|current| {
                let changed = *current != wanted;
                if changed {
                    *current = wanted;
                }
                changed
            });
        }
        let dropped: Vec<VassalName> = self.held.keys().filter(|n| !all.contains(*n)).cloned().collect();
        for name in dropped {
            self.held.remove(&name);
            procs.fence(&name, Order::Stop { kill_at: std::time::Instant::now() });
        }
    }
}

impl Singletons {
    /// Gives up every lease (the emperor stops, its vassals are gone), so
    /// that peers take over within a renew period rather than a lease; waits
    /// at most a second for the store.
    pub(super) async fn release_all(&mut self) {
        for tx in self.tasks.values() {
            tx.send_replace(Wanted::new());
        }
        self.tasks.clear();
        let handles = std::mem::take(&mut self.handles);
        let all = futures::future::join_all(handles);
        if tokio::time::timeout(std::time::Duration::from_secs(1), all).await.is_err() {
            tracing::warn!("the singletons' leases could not be released in time; peers take over once they expire");
        }
    }
}

/// The lease store of every source that can hold leases, for the emperor
/// named `holder` in their lease records, each checked (waiting at most
/// [`CHECK_TIMEOUT`]) to keep leases as long as `timing` asks: a store that
/// refuses stops the start; one that cannot be reached is checked again
/// when it connects.
pub(super) async fn lease_stores(
    sources: &[Box<dyn Source>],
    holder: &str,
    timing: Timing,
) -> Result<Vec<(SourceId, Box<dyn LeaseStore>)>, LeaseRefused> {
    let mut stores = Vec::new();
    for source in sources {
        let Some(mut leases) = source.lease_store(holder, timing.lease) else { continue };
        let source_id = source.id();
        match tokio::time::timeout(CHECK_TIMEOUT, leases.refusal()).await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(why))) => return Err(LeaseRefused { source_id: source_id.0, why }),
            Ok(Err(e)) => {
                tracing::warn!(source = %source_id, error = %e, "cannot check the singletons' lease store yet")
            }
            Err(_) => tracing::warn!(source = %source_id, "the singletons' lease store did not answer in time"),
        }
        stores.push((source_id, leases));
    }
    Ok(stores)
}

/// How long the start waits for each lease store's check.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether a spec's config asks to be a singleton (inline configs only: the
/// sources that hold leases carry their configs).
fn is_singleton(spec: &VassalSpec) -> bool {
    let ConfigRef::Inline(text) = &spec.config else { return false };
    let Some(format) = crate::vassal::Format::from_extension(spec.name.extension()) else { return false };
    crate::vassal::is_singleton(format, text).unwrap_or(false)
}
