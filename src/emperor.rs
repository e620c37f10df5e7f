//! The emperor's main loop: wires sources, reconciler and supervisor, and
//! handles the emperor's own signals.
//!
//! Every wake-up (a source event, a process event, a timer, a signal)
//! drains all pending events, then reconciles what they made dirty and
//! flushes the state store once.

use crate::cli::Cli;
use crate::failpoint;
use crate::source::{self, Envelope, SourceEvent};
use crate::supervisor::{ProcEvent, ProcEventKind, Settings, Supervisor};
use anyhow::Context;
use reconciler::{BackoffPolicy, Controller, SourceId, VassalName, VassalSpec};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc::{unbounded_channel, Receiver, UnboundedReceiver};

/// Runs the emperor until a stop signal or until `shutdown` completes.
pub async fn run(cli: Cli, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let sources = cli.sources.iter().map(|s| source::parse(s)).collect::<Result<Vec<_>, _>>()?;
    let state_dir = std::path::absolute(cli.state_dir()).context("resolving the state dir")?;
    let log_dir = cli.log_dir.clone().unwrap_or_else(|| state_dir.join("logs"));
    for dir in [&state_dir, &log_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let store = open_store(&state_dir, cli.reset_state)?;
    let policy = BackoffPolicy {
        min_ms: cli.backoff_min.as_millis() as u64,
        max_ms: cli.backoff_max.as_millis() as u64,
        reset_after_ms: cli.backoff_reset.as_millis() as u64,
    };
    let next_generation = store.next_generation()?;
    let ids: Vec<SourceId> = sources.iter().map(|s| s.id()).collect();
    let mut restored = Vec::new();
    for id in &ids {
        if let Some(snapshot) = store.snapshot(id)? {
            restored.push((id.clone(), snapshot));
        }
    }
    let settings = Settings {
        vassal_binary: cli.vassal_binary.clone(),
        log_dir,
        stop_timeout: cli.stop_timeout,
        heartbeat_timeout: cli.heartbeat_timeout,
    };
    let (proc_tx, proc_rx) = unbounded_channel();
    let mut supervisor = Supervisor::new(settings, store, proc_tx, &state_dir);
    let known: HashMap<&VassalName, &VassalSpec> =
        restored.iter().flat_map(|(_, snap)| snap.specs.iter().map(|s| (&s.name, s))).collect();
    let actual = supervisor.recover(|name| known.get(name).map(|s| (*s).clone()));
    let mut controller = Controller::with_actual(policy, actual.into_iter().collect(), next_generation);
    for id in &ids {
        controller.add_source(id.clone());
    }
    for (id, snapshot) in restored {
        let specs = snapshot.specs.into_iter().map(|s| (s.name.clone(), s)).collect();
        controller.set_snapshot(&id, specs, snapshot.complete);
    }
    let emperor_id = supervisor.store().emperor_id().to_owned();
    let settings = source::supervise::Settings {
        resync: cli.resync,
        emperor_id,
        capacity: source::supervise::CAPACITY,
        cursors: Some(supervisor.store().cursors()),
    };
    // Owns the running sources; dropped when this function returns, which stops them.
    let (src_rx, _sources) = source::supervise::start(sources, settings).await?;
    tracing::info!(state_dir = %state_dir.display(), sources = cli.sources.len(), "emperor started");
    Emperor { controller, supervisor, clock: Instant::now(), conflicts: HashSet::new(), recorded: Vec::new() }
        .serve(src_rx, proc_rx, shutdown)
        .await
}

/// Opens the state store; with `reset`, a store that cannot be opened is
/// moved aside first and a fresh one started.
fn open_store(state_dir: &std::path::Path, reset: bool) -> anyhow::Result<state::Store> {
    match state::Store::open(state_dir) {
        Ok(store) => Ok(store),
        Err(e @ state::StateError::Locked(_)) => Err(e.into()),
        Err(e) if reset => {
            let aside = state::Store::move_aside(state_dir)?;
            tracing::warn!(error = %e, moved_to = %aside.display(), "state store unusable; moved aside, starting fresh");
            Ok(state::Store::open(state_dir)?)
        }
        Err(e) => Err(anyhow::Error::new(e)
            .context("cannot open the state store (start with --reset-state to move it aside and start fresh)")),
    }
}

struct Emperor {
    controller: Controller,
    supervisor: Supervisor,
    clock: Instant,
    conflicts: HashSet<(VassalName, SourceId)>,
    /// Sources waiting to hear that their events are durable.
    recorded: Vec<tokio::sync::oneshot::Sender<()>>,
}

struct Signals {
    term: Signal,
    int: Signal,
    quit: Signal,
    hup: Signal,
    usr2: Signal,
    chld: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hup: signal(SignalKind::hangup())?,
            usr2: signal(SignalKind::user_defined2())?,
            chld: signal(SignalKind::child())?,
        })
    }
}

impl Emperor {
    async fn serve(
        mut self,
        mut sources: Receiver<Envelope>,
        mut procs: UnboundedReceiver<ProcEvent>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let mut signals = Signals::new().context("installing signal handlers")?;
        let shutdown = futures::FutureExt::fuse(shutdown);
        tokio::pin!(shutdown);
        self.on_children(); // anything that exited before SIGCHLD was watched
        let mut wake: Option<u64> = None;
        let mut shutting_down = false;
        let mut sources_changed = false;
        loop {
            let deadline = self.deadline(wake);
            tokio::select! {
                Some(event) = sources.recv() => {
                    sources_changed = true;
                    self.on_source(event);
                    while let Ok(more) = sources.try_recv() {
                        self.on_source(more);
                    }
                }
                Some(event) = procs.recv() => {
                    self.on_proc(event);
                    while let Ok(more) = procs.try_recv() {
                        self.on_proc(more);
                    }
                }
                // A respawn backoff, a stop timeout or a heartbeat is due.
                _ = sleep_until(deadline) => {}
                _ = signals.term.recv() => shutting_down = self.shutdown("SIGTERM"),
                _ = signals.int.recv() => shutting_down = self.shutdown("SIGINT"),
                _ = signals.quit.recv() => shutting_down = self.shutdown("SIGQUIT"),
                () = &mut shutdown, if !shutting_down => shutting_down = self.shutdown("shutdown request"),
                // A child exited: reap it (and whatever else exited) at once.
                _ = signals.chld.recv() => self.on_children(),
                _ = signals.usr2.recv() => {
                    tracing::info!("SIGUSR2: exiting and leaving every vassal running for the next emperor");
                    self.persist();
                    return Ok(());
                }
                _ = signals.hup.recv() => {
                    tracing::info!("SIGHUP: reloading every vassal");
                    let now = self.now();
                    self.controller.reload_all(now, &mut self.supervisor);
                }
            }
            self.supervisor.tick(Instant::now());
            if shutting_down {
                if self.supervisor.is_idle() {
                    self.supervisor.retire_holder();
                    tracing::info!("every vassal stopped; bye");
                    return Ok(());
                }
                continue;
            }
            if std::mem::take(&mut sources_changed) {
                self.report_conflicts();
            }
            let now = self.now();
            wake = self.controller.reconcile(now, &mut self.supervisor);
            self.persist();
        }
    }

    fn now(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn deadline(&self, wake: Option<u64>) -> Option<Instant> {
        let respawn = wake.map(|ms| self.clock + std::time::Duration::from_millis(ms));
        [respawn, self.supervisor.next_deadline()].into_iter().flatten().min()
    }

    fn shutdown(&mut self, signal: &str) -> bool {
        tracing::info!(signal, "stopping every vassal");
        self.supervisor.stop_all();
        true
    }

    /// Applies a source event to the desired state, recording it first so a
    /// restarted emperor knows the last desired state of every source.
    fn on_source(&mut self, Envelope { event, recorded }: Envelope) {
        self.recorded.extend(recorded);
        let store = self.supervisor.store();
        let recorded = match &event {
            SourceEvent::Snapshot { source, specs } => store.replace_specs(source, specs, true),
            SourceEvent::Upsert(spec) => store.put_spec(spec),
            SourceEvent::Remove { source, name } => store.remove_spec(source, name),
        };
        if let Err(e) = recorded {
            tracing::error!(error = %e, "cannot record the desired state");
        }
        failpoint::hit("snapshot-written");
        match event {
            SourceEvent::Snapshot { source, specs } => {
                let specs: BTreeMap<_, _> = specs.into_iter().map(|s| (s.name.clone(), s)).collect();
                self.controller.set_snapshot(&source, specs, true);
            }
            SourceEvent::Upsert(spec) => self.controller.upsert(spec),
            SourceEvent::Remove { source, name } => self.controller.remove(&source, &name),
        }
    }

    fn on_proc(&mut self, event: ProcEvent) {
        let ProcEvent { name, generation, kind } = event;
        match kind {
            ProcEventKind::Exited => {
                if self.supervisor.reap(&name, generation) {
                    self.exited(&name, generation);
                }
            }
            ProcEventKind::Message(byte) => self.supervisor.on_message(&name, generation, byte),
            ProcEventKind::Eof => tracing::debug!(vassal = %name, generation, "control channel closed"),
        }
    }

    fn on_children(&mut self) {
        for (name, generation) in self.supervisor.reap_children() {
            self.exited(&name, generation);
        }
    }

    /// Tells the reconciler that a vassal's process is gone (and reaped).
    fn exited(&mut self, name: &VassalName, generation: u64) {
        let now = self.now();
        self.controller.on_exit(name, generation, now);
        if !self.controller.actual().contains_key(name) {
            self.supervisor.forget(name);
        }
    }

    fn report_conflicts(&mut self) {
        for c in self.controller.conflicts() {
            if self.conflicts.insert((c.name.clone(), c.loser.clone())) {
                tracing::warn!(vassal = %c.name, used = %c.winner, ignored = %c.loser, "the same vassal name comes from two sources; using the first");
            }
        }
    }

    fn persist(&mut self) {
        let store = self.supervisor.store();
        let result = store.set_next_generation(self.controller.next_generation()).and_then(|()| store.flush());
        match result {
            Ok(()) => {
                for done in self.recorded.drain(..) {
                    let _ = done.send(());
                }
            }
            Err(e) => {
                // Dropping the senders tells the sources their events are not durable.
                self.recorded.clear();
                tracing::error!(error = %e, "cannot write the state store");
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
