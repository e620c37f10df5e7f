//! The main loop's side of the control socket: the commands it receives
//! and the table it publishes after each round.

use super::events::{Detail, EventFeed, EventLog, Kind, Subject};
use super::source_events::SourceWatch;
use super::table::{Table, Tracker, VassalCounts};
use super::{Action, Reply};
use crate::source::supervise::StatusBoard;
use crate::supervisor::ProcStatus;
use reconciler::{Controller, SourceId, VassalName};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// How many commands may wait for the loop; a client beyond that waits.
const QUEUE: usize = 64;

/// Building the table takes time in proportion to the vassals; it is built
/// again no sooner than this many times its last cost after it, so that it
/// takes at most about 1/SHARE of the loop's time however many vassals
/// there are and however many rounds run (a large start runs hundreds).
const SHARE: u32 = 20;

/// The longest a round's changes wait to be in the table; also how long
/// the table waits while the rounds hold starts back (a large start): only
/// its own starts happen meanwhile, and each build is O(N).
const MAX_DELAY: Duration = Duration::from_millis(200);

/// A command for the main loop, with where to send its outcome.
#[derive(Debug)]
pub struct Request {
    /// The vassal it concerns.
    pub name: VassalName,
    /// What to do.
    pub action: Action,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Reply>,
}

/// Held by the main loop: receives commands and publishes the table.
pub struct Hook {
    commands: Option<mpsc::Receiver<Request>>,
    table: watch::Sender<Arc<Table>>,
    tracker: Tracker,
    /// The per-state counts of the last table, for the sources.
    counts: watch::Sender<VassalCounts>,
    /// Outcomes held back until the round they caused has run.
    replies: Vec<(oneshot::Sender<Reply>, Reply)>,
    /// The event stream.
    events: EventLog,
    /// The sources' statuses, for their up/down events.
    sources: Option<SourceWatch>,
    /// Whether the emperor is stopping every vassal (exits are then no crashes).
    stopping_all: bool,
    /// When the last table was built, and how long the next one waits.
    built: Option<(Instant, Duration)>,
    /// Whether a round ran since the last table was built.
    stale: bool,
}

/// The control task's side: sends commands, reads the table.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) commands: mpsc::Sender<Request>,
    pub(crate) table: watch::Receiver<Arc<Table>>,
    pub(crate) events: EventFeed,
}

impl Hook {
    /// A hook for an emperor with these sources, keeping the tail of its
    /// event stream in `events`, and the handle the control task uses to
    /// reach it.
    pub(crate) fn new(sources: Vec<SourceId>, events: Option<state::Events>) -> (Self, Handle) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (table, table_rx) = watch::channel(Arc::default());
        let (events, feed) = EventLog::new(events);
        let hook = Self {
            commands: Some(rx),
            table,
            tracker: Tracker::new(sources),
            counts: watch::Sender::default(),
            replies: Vec::new(),
            events,
            sources: None,
            stopping_all: false,
            built: None,
            stale: false,
        };
        (hook, Handle { commands: tx, table: table_rx, events: feed })
    }

    /// A hook no control task talks to (in-process tests, embedders).
    pub fn detached() -> Self {
        let (table, _) = watch::channel(Arc::default());
        Self {
            commands: None,
            table,
            tracker: Tracker::default(),
            counts: watch::Sender::default(),
            replies: Vec::new(),
            events: EventLog::new(None).0,
            sources: None,
            stopping_all: false,
            built: None,
            stale: false,
        }
    }

    /// Records `source_up`/`source_down` events for the sources of `board`.
    pub fn watch_sources(&mut self, board: StatusBoard) {
        self.sources = Some(SourceWatch::new(board));
    }

    /// Completes when a source may have gone up or down (never without
    /// [`Hook::watch_sources`]).
    async fn sources_changed_in(sources: &Option<SourceWatch>) {
        match sources {
            Some(watch) => watch.changed().await,
            None => std::future::pending().await,
        }
    }

    /// Notes that the emperor stops every vassal (its shutdown): each one
    /// running gets its `stopping` event, and exits from now on are no crashes.
    pub fn stopping_all<'a>(&mut self, running: impl IntoIterator<Item = (&'a VassalName, Option<i32>)>) {
        self.stopping_all = true;
        for (name, pid) in running {
            self.vassal_event(name, Kind::Stopping, Detail { pid, ..Detail::default() });
        }
    }

    /// Whether the emperor is stopping every vassal.
    pub fn is_stopping_all(&self) -> bool {
        self.stopping_all
    }

    /// Records an event about vassal `name`.
    pub fn vassal_event(&mut self, name: &VassalName, kind: Kind, detail: Detail) {
        self.events.record(kind, Subject::Vassal(name.to_string()), detail);
    }

    /// Records an event about source `id`.
    pub fn source_event(&mut self, id: &SourceId, kind: Kind, detail: Detail) {
        self.events.record(kind, Subject::Source(id.0.clone()), detail);
    }

    /// Writes the round's events to the state store, before its flush.
    pub fn stage_events(&mut self) {
        self.events.stage();
    }

    /// Publishes the events already written (see [`Hook::stage_events`]).
    pub fn release_events(&mut self) {
        self.events.release();
    }

    /// The per-state vassal counts, updated after each round that changed
    /// them (what sources read through [`crate::source::SourceContext::counts`]).
    pub fn counts(&self) -> watch::Receiver<VassalCounts> {
        self.counts.subscribe()
    }

    /// The tables published after each round, from the next one on (what
    /// the status writer follows).
    pub fn tables(&self) -> watch::Receiver<Arc<Table>> {
        self.table.subscribe()
    }

    /// The next command, or `None` once a source went up or down (its
    /// event is recorded; the round that follows publishes it).
    pub async fn next(&mut self) -> Option<Request> {
        tokio::select! {
            request = Self::next_command(&mut self.commands) => Some(request),
            () = Self::sources_changed_in(&self.sources) => {
                if let Some(watch) = &mut self.sources {
                    watch.note(&mut self.events);
                }
                None
            }
        }
    }

    /// The next command; pending forever when no control task is left.
    async fn next_command(commands: &mut Option<mpsc::Receiver<Request>>) -> Request {
        if let Some(rx) = commands {
            if let Some(request) = rx.recv().await {
                return request;
            }
            *commands = None;
        }
        std::future::pending().await
    }

    /// Queues a command's outcome; it is sent after the next publish.
    pub fn answer(&mut self, reply: oneshot::Sender<Reply>, outcome: Reply) {
        self.replies.push((reply, outcome));
    }

    /// Rebuilds and publishes the table (after a round), then sends the
    /// outcomes of the commands that round carried out; returns how many
    /// vassals are in each state (also published to the sources that read
    /// them). Without outcomes to send, a table built less than [`SHARE`]
    /// times its cost ago (or [`MAX_DELAY`] ago, while the rounds hold
    /// starts back) is not built again yet: `None`, and [`Hook::table_due`]
    /// says when to call again.
    pub fn publish(
        &mut self,
        controller: &Controller,
        status: impl Fn(&VassalName) -> ProcStatus,
        now_ms: u64,
    ) -> Option<VassalCounts> {
        let started = Instant::now();
        if self.replies.is_empty() && self.next_build().is_some_and(|at| at > started) {
            self.stale = true;
            self.events.release();
            return None;
        }
        let table = self.tracker.build(controller, status, now_ms);
        let counts = table.counts();
        self.counts.send_if_modified(|old| std::mem::replace(old, counts) != counts);
        if self.commands.is_some() || self.table.receiver_count() > 0 {
            self.table.send_replace(Arc::new(table));
        }
        self.events.release();
        let wait = if controller.deferred_starts() > 0 { MAX_DELAY } else { started.elapsed() * SHARE };
        self.built = Some((started, wait.min(MAX_DELAY)));
        self.stale = false;
        for (reply, outcome) in self.replies.drain(..) {
            let _ = reply.send(outcome);
        }
        Some(counts)
    }

    /// When the table held back by [`Hook::publish`] is due, if one is.
    pub fn table_due(&self) -> Option<Instant> {
        self.next_build().filter(|_| self.stale)
    }

    /// The earliest time the table may be built again.
    fn next_build(&self) -> Option<Instant> {
        self.built.map(|(at, wait)| at + wait)
    }
}
