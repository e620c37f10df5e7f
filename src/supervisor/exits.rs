//! What comes back from the processes: exits (SIGCHLD for our children, a
//! readable pidfd for re-adopted ones), control-channel messages and the
//! supervisor's own deadlines. All of it is handled here; the main loop only
//! hears, through [`Supervisor::next_exit`], that a vassal's process is gone.

use super::channel::{self, VassalMessage};
use super::executor::begin_stop;
use super::proc::Overdue;
use super::process::Handle;
use super::{logs, Supervisor};
use crate::sys;
use reconciler::VassalName;
use std::time::Instant;

/// Something a watched process did: reported by its exit watch task, read
/// from its control channel, or a connection to its on-demand socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProcEvent {
    /// The vassal.
    pub(super) name: VassalName,
    /// Its generation.
    pub(super) generation: u64,
    /// What happened.
    pub(super) kind: ProcEventKind,
}

/// The kinds of [`ProcEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProcEventKind {
    /// The (adopted) process exited; init reaps it.
    Exited,
    /// A byte arrived on the control channel.
    Message(u8),
    /// The control channel closed.
    Eof,
    /// A connection waits on the socket of an on-demand vassal.
    Connection,
}

impl Supervisor {
    /// Waits until a vassal's process is gone, and returns its name and
    /// generation; by then it is reaped and its channels released. Returns
    /// `None` instead when only what operators see changed: an on-demand
    /// vassal's process started or went idle, or a vassal's readiness or
    /// status text changed (the main loop then publishes its table again).
    /// Meanwhile it serves control messages and notifications, reaps
    /// children on SIGCHLD and enforces stop timeouts, heartbeats and
    /// watchdogs. Cancel-safe: everything it learns is kept for the next call.
    pub async fn next_exit(&mut self) -> Option<(VassalName, u64)> {
        self.ondemand.sockets.close_orphans(&mut self.holder);
        loop {
            if let Some(exit) = self.exits.pop_front() {
                self.news.told(Instant::now());
                return Some(exit);
            }
            if self.ondemand.take_changed() {
                return None;
            }
            if self.news.due(Instant::now()) {
                return None;
            }
            let deadline = [self.next_deadline(), self.news.deadline()].into_iter().flatten().min();
            let wake = tokio::select! {
                Some(()) = self.sigchld.recv() => Wake::Child,
                Some(event) = self.event_rx.recv() => Wake::Event(event),
                () = self.channels.readable() => Wake::Channel,
                () = notify_readable(self.notify.as_ref()) => Wake::Notification,
                () = sleep_until(deadline) => Wake::Deadline,
                () = self.holder.broken() => Wake::Holder,
            };
            self.note_wake(Instant::now());
            match wake {
                // Notifications first: a STOPPING=1 sent just before an
                // exit is read before the exit is reaped.
                Wake::Child => {
                    self.read_notifications();
                    self.read_channels();
                    self.reap_children();
                }
                Wake::Event(event) => {
                    self.on_event(event);
                    // A burst (every vassal ready at once) makes one round.
                    while let Ok(event) = self.event_rx.try_recv() {
                        self.on_event(event);
                    }
                }
                Wake::Notification => self.read_notifications(),
                Wake::Channel => self.read_channels(),
                // Pings still queued count before a watchdog is judged.
                Wake::Deadline => {
                    self.read_notifications();
                    let now = Instant::now();
                    self.tick(now);
                    self.fence_tick(now);
                    if self.stale_retry_at.is_some_and(|at| at <= now) {
                        self.rewrite_stale_records();
                    }
                }
                Wake::Holder => {
                    let control = self.procs.iter().filter_map(|(name, proc)| {
                        let key = super::fdholder::key("control", proc.generation, name.as_str());
                        proc.control.as_ref().map(|c| (key, std::os::fd::AsFd::as_fd(&**c)))
                    });
                    self.holder.repair(control);
                }
            }
        }
    }

    /// Checks whether the emperor itself was away since its last wake-up
    /// (see [`StallClock`](super::stall::StallClock)); if so, that time does not count as any
    /// vassal's silence. Said once per stall.
    fn note_wake(&mut self, now: Instant) {
        let timeout = self.settings.heartbeat_timeout;
        let Some(away) = self.stall.woke(now, !self.timed.is_empty(), timeout) else { return };
        tracing::warn!(
            away_secs = away.as_secs_f64(),
            "the emperor itself was not running (stopped, starved of CPU, or busy); that time does not count against vassal heartbeats"
        );
        for name in &self.timed {
            if let Some(proc) = self.procs.get_mut(name) {
                proc.state.excuse(away);
            }
        }
    }

    /// An exit already known, without waiting (to drain a burst of them).
    pub fn exited_now(&mut self) -> Option<(VassalName, u64)> {
        while self.exits.is_empty() {
            let Ok(event) = self.event_rx.try_recv() else { break };
            self.on_event(event);
        }
        self.exits.pop_front()
    }

    pub(super) fn on_event(&mut self, ProcEvent { name, generation, kind }: ProcEvent) {
        match kind {
            ProcEventKind::Exited => {
                // What it said before it went (STOPPING=1) counts first.
                self.read_notifications();
                self.finish(&name, generation, Ok(None));
            }
            ProcEventKind::Message(byte) => self.on_message(&name, generation, byte),
            ProcEventKind::Eof => tracing::debug!(vassal = %name, generation, "control channel closed"),
            ProcEventKind::Connection => self.on_connection(&name, generation),
        }
    }

    /// Reaps every child that has exited. A vassal's group is killed first
    /// (its leader, an unreaped zombie, keeps the group id from reuse); a
    /// child that is not a vassal (an fd holder we started) is just reaped.
    pub(super) fn reap_children(&mut self) {
        while let Some(pid) = sys::wait::next_exited_child() {
            let vassal = self.children.remove(&pid);
            if vassal.is_some() {
                let _ = sys::signal::kill_group(pid, libc::SIGKILL);
            }
            let exit = sys::wait::reap(pid);
            match vassal {
                Some((name, generation)) => self.finish(&name, generation, exit),
                None => tracing::debug!(pid, status = ?exit, "reaped a child that is not a vassal"),
            }
        }
    }

    /// Drops a process that is gone and queues its exit; a stale generation
    /// (already replaced) is ignored.
    fn finish(&mut self, name: &VassalName, generation: u64, exit: std::io::Result<Option<sys::wait::Exit>>) {
        if self.procs.get(name).is_none_or(|p| p.generation != generation) {
            return;
        }
        let proc = self.procs.remove(name).expect("checked above");
        if let Some(slot) = proc.slot {
            self.channels.forget(slot, generation);
        }
        self.timed.remove(name);
        self.fence_exited(name);
        if self.native_pids.get(&proc.pid()) == Some(name) {
            self.native_pids.remove(&proc.pid());
        }
        self.release(name.as_str(), generation);
        let status = match &exit {
            Ok(Some(exit)) => exit.to_string(),
            Ok(None) if matches!(proc.handle, Handle::Adopted(..)) => "exit status unknown (adopted process)".into(),
            Ok(None) => "still running?".to_owned(),
            Err(e) => format!("unknown status ({e})"),
        };
        let pid = proc.pid();
        self.note_exit(name, exit.as_ref().ok().copied().flatten().into());
        if proc.state.is_stopping() {
            tracing::info!(vassal = %name, pid, generation, %status, "vassal stopped");
        } else {
            let log = logs::path(&self.settings.log_dir, name);
            tracing::warn!(vassal = %name, pid, generation, %status, log = %log.display(), "vassal died");
        }
        if self.returns_to_waiting(&proc, matches!(exit, Ok(Some(sys::wait::Exit::Code(0))))) {
            return;
        }
        self.exits.push_back((name.clone(), generation));
    }

    /// Handles a byte from a vassal's control channel.
    fn on_message(&mut self, name: &VassalName, generation: u64, byte: u8) {
        let Some(proc) = self.procs.get_mut(name).filter(|p| p.generation == generation) else { return };
        match VassalMessage::from(byte) {
            VassalMessage::ConfigRequest => {
                if let Some((stream, framed)) = &proc.config {
                    if let Err(e) = channel::send_all(stream, framed) {
                        tracing::warn!(vassal = %name, error = %e, "cannot resend the config");
                    }
                }
            }
            VassalMessage::Ready | VassalMessage::Accepting => {
                if proc.readiness.ready(std::time::SystemTime::now()) {
                    tracing::debug!(vassal = %name, "vassal is ready");
                    self.news.readiness();
                }
            }
            VassalMessage::Heartbeat => {
                if proc.state.heartbeat(Instant::now()) {
                    let timeout = self.settings.heartbeat_timeout.as_secs_f64();
                    tracing::info!(vassal = %name, timeout, "vassal sends heartbeats; a silence this long gets it killed and respawned");
                    self.timed.insert(name.clone());
                }
            }
            VassalMessage::WantsStop => {
                if self.note_idle(name, generation) {
                    tracing::info!(vassal = %name, "on-demand vassal is idle; stopping it until the next connection");
                } else {
                    tracing::info!(vassal = %name, "vassal asked to stop; it will be respawned");
                }
                let Some(proc) = self.procs.get_mut(name) else { return };
                begin_stop(proc, &self.settings);
                self.timed.insert(name.clone());
            }
            VassalMessage::Reinforcements => {
                tracing::debug!(vassal = %name, "reinforcements requested; not supported")
            }
            other => tracing::debug!(vassal = %name, message = ?other, "vassal message"),
        }
    }

    /// Sends the SIGKILLs that are due: stop timeouts, missed heartbeats
    /// and watchdogs.
    fn tick(&mut self, now: Instant) {
        let default = self.settings.heartbeat_timeout;
        let kills = &mut self.kills;
        self.timed.retain(|name| {
            let Some(proc) = self.procs.get_mut(name) else { return false };
            let timeout = proc.heartbeat_timeout(default);
            match proc.state.check(now, timeout) {
                Some(Overdue::StopTimeout) => {
                    tracing::warn!(vassal = %name, pid = proc.pid(), "vassal did not stop in time; sending SIGKILL to its process group");
                    Self::signal_group(proc, libc::SIGKILL);
                    *kills += 1;
                }
                Some(Overdue::MissedHeartbeat) => {
                    tracing::warn!(vassal = %name, pid = proc.pid(), "vassal missed its heartbeat; killing it for a respawn");
                    Self::signal_group(proc, libc::SIGKILL);
                    *kills += 1;
                }
                None => {}
            }
            proc.state.deadline(timeout).is_some()
        });
    }

    /// How many SIGKILLs [`Supervisor::tick`] has sent so far.
    pub fn kills(&self) -> u64 {
        self.kills
    }

    /// The next time [`Supervisor::tick`] has work (a vassal's own watchdog
    /// or the heartbeat timeout), the supervisor's pulse is due (see
    /// [`StallClock`](super::stall::StallClock)), or records are to be
    /// written again.
    fn next_deadline(&self) -> Option<Instant> {
        let default = self.settings.heartbeat_timeout;
        let deadline = |p: &super::Proc| p.state.deadline(p.heartbeat_timeout(default));
        let due = self.timed.iter().filter_map(|name| deadline(self.procs.get(name)?)).min();
        due.into_iter()
            .chain(self.stall.next_pulse(default))
            .chain(self.stale_retry_at)
            .chain(self.fence_deadline())
            .min()
    }
}

async fn notify_readable(socket: Option<&super::notify::NotifySocket>) {
    match socket {
        Some(socket) => socket.readable().await,
        None => std::future::pending().await,
    }
}

/// What woke [`Supervisor::next_exit`].
enum Wake {
    /// SIGCHLD.
    Child,
    /// A watched process did something.
    Event(ProcEvent),
    /// A native vassal's notification is waiting.
    Notification,
    /// A control channel has bytes or hung up.
    Channel,
    /// A stop timeout, heartbeat deadline or the pulse.
    Deadline,
    /// The fd holder went away, or another attempt to start one is due.
    Holder,
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
