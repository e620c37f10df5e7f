//! The event loop: source events, exits, respawn timers and the emperor's
//! own signals, each wake-up followed by one reconcile round and one commit
//! of the journal.

use super::journal::Journal;
use super::processes::Processes;
use crate::failpoint;
use crate::source::{Envelope, SourceEvent};
use anyhow::Context;
use reconciler::{Controller, SourceId, VassalName};
use std::collections::{BTreeMap, HashSet};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc::Receiver;
use tokio::time::Instant;

/// Source events one round takes at most. Under a flood the queue never runs
/// empty; without a cap a round (reconcile, persist, acknowledgements) would
/// wait for the flood to end, and a change from another source with it.
const ROUND_EVENTS: usize = crate::source::supervise::CAPACITY;

/// Starts after which the heap is trimmed, once they are all made: a burst
/// this large leaves megabytes freed but kept by the allocator.
const TRIM_AFTER_STARTS: u64 = 512;

/// The loop's state: what it reconciles, with what, and how it records.
pub(super) struct Emperor<P> {
    pub(super) controller: Controller,
    pub(super) supervisor: P,
    pub(super) journal: Journal,
    /// The origin of the controller's millisecond clock (tokio's clock, so
    /// that a paused test clock drives the respawn timers).
    pub(super) clock: Instant,
    /// Name conflicts already reported.
    pub(super) conflicts: HashSet<(VassalName, SourceId)>,
    /// Operators' commands in, the status table out.
    pub(super) control: crate::control::Hook,
    /// The service manager's notifications and the log's summary line.
    pub(super) notify: crate::control::Notifier,
    /// What `/metrics` counts: actions, and how soon they follow events.
    pub(super) metrics: crate::control::LoopMetrics,
    /// Singletons and their leases.
    pub(super) singletons: super::singletons::Singletons,
    /// The generation counter when the heap was last trimmed.
    pub(super) trimmed_at: u64,
    /// How many starts a round makes, and for how long (see [`super::pace`]).
    pub(super) pace: super::pace::Pace,
}

/// How the main loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// Every vassal was stopped (a stop signal or request).
    Stopped,
    /// The vassals run on for the next emperor (SIGUSR2).
    Handover,
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

impl<P: Processes> Emperor<P> {
    /// Serves source events, exits and signals until the emperor stops.
    pub(super) async fn serve(
        mut self,
        mut sources: Receiver<Envelope>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<Ending> {
        let mut signals = Signals::new().context("installing signal handlers")?;
        // Checked before each start: a round in progress makes no further
        // start once a stop signal has arrived.
        let stop_signals = [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT];
        let _raise = self.pace.stop_flag().raise_on(&stop_signals).context("installing signal handlers")?;
        let shutdown = futures::FutureExt::fuse(shutdown);
        tokio::pin!(shutdown);
        let mut wake: Option<u64> = None;
        let mut shutting_down = false;
        let mut sources_changed = false;
        // Starts wait for the next round: it comes once the loop has served
        // whatever else is ready.
        let mut rounds_due = false;
        // The state recovery left, before any source has spoken; the
        // singletons found running are renewed at once.
        self.publish();
        self.singletons.publish(&self.controller, &mut self.supervisor);
        loop {
            // Whether this turn only goes on with a large start (nothing
            // else happened): its round's commit and the status table may
            // wait (see `Pace::commit_due`).
            let mut continuing = false;
            let deadline = self.deadline(wake);
            let table_due = self.control.table_due();
            tokio::select! {
                Some(event) = sources.recv() => {
                    sources_changed = true;
                    self.on_source(event);
                    for more in std::iter::from_fn(|| sources.try_recv().ok()).take(ROUND_EVENTS - 1) {
                        self.on_source(more);
                    }
                }
                // A vassal's process is gone (the supervisor reaped it), or
                // an on-demand one started or went idle, or only its readiness
                // changed: the round's table shows it.
                exit = self.supervisor.next_exit() => {
                    if let Some((name, generation)) = exit {
                        self.exited(&name, generation);
                    }
                    while let Some((name, generation)) = self.supervisor.exited_now() {
                        self.exited(&name, generation);
                    }
                }
                // An operator's command from the control socket, or a
                // source that went up or down (its event is recorded).
                request = self.control.next() => {
                    if let Some(request) = request {
                        self.on_command(request);
                    }
                }
                // A singleton's lease was taken, renewed or lost.
                Some(notice) = self.singletons.next() => {
                    self.singletons.on_notice(notice, &mut self.controller, &mut self.supervisor);
                }
                // The status table held back after a busy round is due.
                _ = sleep_until(table_due) => {
                    self.publish();
                    continue;
                }
                // The service manager's watchdog, or READY=1 overdue.
                _ = sleep_until(self.notify.next_timer()) => {
                    self.notify.on_timer();
                    continue;
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
                    self.notify.stopping();
                    return Ok(Ending::Handover);
                }
                _ = signals.hup.recv() => {
                    tracing::info!("SIGHUP: reloading every vassal");
                    let now = self.now();
                    self.observed(|controller, exec| controller.reload_all(now, exec));
                }
                // More starts wait: the next round, once the sources, the
                // exits and the control socket had their turn.
                () = tokio::task::yield_now(), if rounds_due => continuing = true,
            }
            if shutting_down {
                // Nothing is started or respawned any more: no round, and no
                // wake-up for one (an expired one would fire at every turn).
                (wake, rounds_due) = (None, false);
                self.persist();
                self.control.release_events();
                if self.supervisor.is_idle() {
                    self.singletons.release_all().await;
                    self.supervisor.retire_holder();
                    tracing::info!("every vassal stopped; bye");
                    return Ok(Ending::Stopped);
                }
                continue;
            }
            if std::mem::take(&mut sources_changed) {
                self.report_conflicts();
            }
            wake = self.round();
            rounds_due = self.controller.deferred_starts() > 0 && !self.pace.stop_flag().is_raised();
            self.singletons.publish(&self.controller, &mut self.supervisor);
            self.metrics.round_done();
            let now = Instant::now();
            let settled = !continuing || !rounds_due;
            if settled || self.pace.commit_due(now) {
                self.persist();
                self.pace.committed(now);
                self.publish();
            }
            self.trim_after_burst();
        }
    }

    /// One reconcile round, paced; returns when the next respawn is due
    /// (`None` while starts wait: the next round comes at the loop's next
    /// turn anyway).
    fn round(&mut self) -> Option<u64> {
        if self.pace.stop_flag().is_raised() {
            // A stop signal arrived and the loop's next turn takes it: a
            // round now would only record intents for starts it cannot make.
            return None;
        }
        let now = self.now();
        self.pace.begin(Instant::now());
        self.controller.set_start_budget(Some(self.pace.round_starts()));
        self.controller.set_intent_batch(self.pace.intent_batch());
        let wake = self.observed(|controller, exec| controller.reconcile(now, exec));
        self.pace.end(Instant::now());
        wake.filter(|_| self.controller.deferred_starts() == 0)
    }

    /// Gives the heap's free memory back once a large burst of starts is
    /// over (none of them still held back).
    fn trim_after_burst(&mut self) {
        let generation = self.controller.next_generation();
        if generation - self.trimmed_at >= TRIM_AFTER_STARTS && self.controller.deferred_starts() == 0 {
            self.trimmed_at = generation;
            let released = crate::sys::heap::trim();
            tracing::debug!(released, "heap trimmed after a burst of starts");
        }
    }

    pub(super) fn now(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn deadline(&self, wake: Option<u64>) -> Option<Instant> {
        wake.map(|ms| self.clock + std::time::Duration::from_millis(ms))
    }

    fn shutdown(&mut self, signal: &str) -> bool {
        tracing::info!(signal, "stopping every vassal");
        self.pace.stop_flag().raise();
        self.notify.stopping();
        let running =
            self.controller.actual().iter().filter(|(_, a)| matches!(a.phase, reconciler::Phase::Running { .. }));
        let supervisor = &self.supervisor;
        self.control.stopping_all(running.map(|(name, _)| (name, supervisor.status(name).pid)));
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
                self.notify.settled(&source);
                let detail = crate::control::Detail { vassals: Some(specs.len()), ..Default::default() };
                self.control.source_event(&source, crate::control::Kind::SourceSynced, detail);
                self.metrics.source_event(&source);
                self.singletons.on_specs(&source, &specs, &mut self.controller);
                let specs: BTreeMap<_, _> = specs.into_iter().map(|s| (s.name.clone(), s)).collect();
                self.controller.set_snapshot(&source, specs, true);
            }
            SourceEvent::Upsert(spec) => {
                self.notify.settled(&spec.source);
                self.metrics.source_event(&spec.source);
                self.singletons.on_spec(&spec.source, &spec.name, Some(&spec), &mut self.controller);
                self.controller.upsert(spec);
            }
            SourceEvent::Remove { source, name } => {
                self.notify.settled(&source);
                self.metrics.source_event(&source);
                self.singletons.on_spec(&source, &name, None, &mut self.controller);
                self.controller.remove(&source, &name);
            }
        }
    }

    /// Tells the reconciler that a vassal's process is gone (and reaped).
    fn exited(&mut self, name: &VassalName, generation: u64) {
        self.observe_exit(name, generation);
    }

    fn report_conflicts(&mut self) {
        for c in self.controller.conflicts() {
            if self.conflicts.insert((c.name.clone(), c.loser.clone())) {
                tracing::warn!(vassal = %c.name, used = %c.winner, ignored = %c.loser, "the same vassal name comes from two sources; using the first");
            }
        }
    }

    /// Makes the round's writes (its events too) durable and tells the
    /// sources waiting for it.
    fn persist(&mut self) {
        self.journal.set_next_generation(self.controller.next_generation());
        self.control.stage_events();
        self.journal.commit();
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
