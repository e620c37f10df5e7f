//! The emperor's main loop: wires sources, reconciler and supervisor, and
//! handles the emperor's own signals.
//!
//! Events flow one way: source events go through the journal (written
//! first) to the controller, which drives the supervisor; the supervisor
//! hands back only the vassals whose process is gone. Every wake-up (a
//! source event, an exit, a respawn timer, a signal) drains what is pending,
//! then reconciles what it made dirty and flushes the state store once, if
//! anything was written.

mod journal;

use crate::cli::Cli;
use crate::failpoint;
use crate::source::{self, Envelope, SourceContext, SourceEvent};
use crate::supervisor::{Settings, Supervisor};
use anyhow::Context;
use journal::Journal;
use reconciler::{BackoffPolicy, Controller, SourceId, VassalName, VassalSpec};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

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
    let journal = Journal::new(store.clone(), next_generation);
    let emperor_id = store.emperor_id().to_owned();
    let mut supervisor = Supervisor::new(settings, store, &state_dir).context("watching SIGCHLD")?;
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
    let (src_tx, src_rx) = unbounded_channel();
    for source in sources {
        let id = source.id();
        source.start(SourceContext {
            id,
            events: src_tx.clone(),
            resync: cli.resync,
            emperor_id: emperor_id.clone(),
        })?;
    }
    tracing::info!(state_dir = %state_dir.display(), sources = cli.sources.len(), "emperor started");
    Emperor { controller, supervisor, journal, clock: Instant::now(), conflicts: HashSet::new() }
        .serve(src_rx, shutdown)
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
    journal: Journal,
    clock: Instant,
    conflicts: HashSet<(VassalName, SourceId)>,
}

struct Signals {
    term: Signal,
    int: Signal,
    quit: Signal,
    hup: Signal,
    usr2: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hup: signal(SignalKind::hangup())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }
}

impl Emperor {
    async fn serve(
        mut self,
        mut sources: UnboundedReceiver<Envelope>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let mut signals = Signals::new().context("installing signal handlers")?;
        let shutdown = futures::FutureExt::fuse(shutdown);
        tokio::pin!(shutdown);
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
                // A vassal's process is gone (the supervisor reaped it).
                (name, generation) = self.supervisor.next_exit() => {
                    self.exited(&name, generation);
                    while let Some((name, generation)) = self.supervisor.exited_now() {
                        self.exited(&name, generation);
                    }
                }
                // A respawn backoff is due.
                _ = sleep_until(deadline) => {}
                _ = signals.term.recv() => shutting_down = self.shutdown("SIGTERM"),
                _ = signals.int.recv() => shutting_down = self.shutdown("SIGINT"),
                _ = signals.quit.recv() => shutting_down = self.shutdown("SIGQUIT"),
                () = &mut shutdown, if !shutting_down => shutting_down = self.shutdown("shutdown request"),
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
            if shutting_down {
                if self.supervisor.is_idle() {
                    self.persist();
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
        wake.map(|ms| self.clock + std::time::Duration::from_millis(ms))
    }

    fn shutdown(&mut self, signal: &str) -> bool {
        tracing::info!(signal, "stopping every vassal");
        self.supervisor.stop_all();
        true
    }

    /// Applies a source event to the desired state, recording it first so a
    /// restarted emperor knows the last desired state of every source.
    fn on_source(&mut self, Envelope { event, recorded }: Envelope) {
        self.journal.record(&event, recorded);
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

    /// Tells the reconciler that a vassal's process is gone (and reaped).
    fn exited(&mut self, name: &VassalName, generation: u64) {
        let now = self.now();
        self.controller.on_exit(name, generation, now, &mut self.supervisor);
    }

    fn report_conflicts(&mut self) {
        for c in self.controller.conflicts() {
            if self.conflicts.insert((c.name.clone(), c.loser.clone())) {
                tracing::warn!(vassal = %c.name, used = %c.winner, ignored = %c.loser, "the same vassal name comes from two sources; using the first");
            }
        }
    }

    /// Makes the round's writes durable and tells the sources waiting for it.
    fn persist(&mut self) {
        self.journal.set_next_generation(self.controller.next_generation());
        self.journal.commit();
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
