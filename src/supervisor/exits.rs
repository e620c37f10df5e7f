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

/// Something a watched process did, reported by its watch task.
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
}

impl Supervisor {
    /// Waits until a vassal's process is gone, and returns its name and
    /// generation; by then it is reaped and its channels released. Meanwhile
    /// it serves control messages, reaps children on SIGCHLD and enforces
    /// stop timeouts and heartbeats. Cancel-safe: everything it learns is
    /// kept for the next call.
    pub async fn next_exit(&mut self) -> (VassalName, u64) {
        loop {
            if let Some(exit) = self.exits.pop_front() {
                return exit;
            }
            let deadline = self.next_deadline();
            let wake = tokio::select! {
                Some(()) = self.sigchld.recv() => Wake::Child,
                Some(event) = self.event_rx.recv() => Wake::Event(event),
                () = sleep_until(deadline) => Wake::Deadline,
                () = self.holder.broken() => Wake::Holder,
            };
            self.note_wake(Instant::now());
            match wake {
                Wake::Child => self.reap_children(),
                Wake::Event(event) => self.on_event(event),
                Wake::Deadline => {
                    let now = Instant::now();
                    self.tick(now);
                    if self.stale_retry_at.is_some_and(|at| at <= now) {
                        self.rewrite_stale_records();
                    }
                }
                Wake::Holder => self.holder.repair(),
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

    fn on_event(&mut self, ProcEvent { name, generation, kind }: ProcEvent) {
        match kind {
            ProcEventKind::Exited => self.finish(&name, generation, Ok(None)),
            ProcEventKind::Message(byte) => self.on_message(&name, generation, byte),
            ProcEventKind::Eof => tracing::debug!(vassal = %name, generation, "control channel closed"),
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
        self.timed.remove(name);
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
            VassalMessage::Heartbeat => {
                if proc.state.heartbeat(Instant::now()) {
                    let timeout = self.settings.heartbeat_timeout.as_secs_f64();
                    tracing::info!(vassal = %name, timeout, "vassal sends heartbeats; a silence this long gets it killed and respawned");
                    self.timed.insert(name.clone());
                }
            }
            VassalMessage::WantsStop => {
                tracing::info!(vassal = %name, "vassal asked to stop; it will be respawned");
                begin_stop(proc, &self.settings);
                self.timed.insert(name.clone());
            }
            VassalMessage::Reinforcements => {
                tracing::debug!(vassal = %name, "reinforcements requested; not supported")
            }
            other => tracing::debug!(vassal = %name, message = ?other, "vassal message"),
        }
    }

    /// Sends the SIGKILLs that are due: stop timeouts and missed heartbeats.
    fn tick(&mut self, now: Instant) {
        let timeout = self.settings.heartbeat_timeout;
        self.timed.retain(|name| {
            let Some(proc) = self.procs.get_mut(name) else { return false };
            match proc.state.check(now, timeout) {
                Some(Overdue::StopTimeout) => {
                    tracing::warn!(vassal = %name, pid = proc.pid(), "vassal did not stop in time; sending SIGKILL to its process group");
                    Self::signal_group(proc, libc::SIGKILL);
                }
                Some(Overdue::MissedHeartbeat) => {
                    tracing::warn!(vassal = %name, pid = proc.pid(), "vassal missed its heartbeat; killing it for a respawn");
                    Self::signal_group(proc, libc::SIGKILL);
                }
                None => {}
            }
            proc.state.deadline(timeout).is_some()
        });
    }

    /// The next time [`Supervisor::tick`] has work, the supervisor's pulse
    /// is due (see [`StallClock`](super::stall::StallClock)), or records
    /// are to be written again.
    fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.settings.heartbeat_timeout;
        let due = self.timed.iter().filter_map(|name| self.procs.get(name)?.state.deadline(timeout)).min();
        due.into_iter().chain(self.stall.next_pulse(timeout)).chain(self.stale_retry_at).min()
    }
}

/// What woke [`Supervisor::next_exit`].
enum Wake {
    /// SIGCHLD.
    Child,
    /// A watched process did something.
    Event(ProcEvent),
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
