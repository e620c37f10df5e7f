//! Watching one vassal process: its messages through its control channel
//! (read with every other channel, see [`Channels`](super::channels::Channels))
//! and, for a re-adopted process, its exit through a pidfd (the exits of
//! our own children arrive through SIGCHLD). A re-adopted process with a
//! control channel gets its pidfd only once the channel hangs up.

use super::channels::Heard;
use super::exits::{ProcEvent, ProcEventKind};
use super::launch::Launch;
use super::proc::{Proc, ProcState};
use super::process::{Adopted, Handle};
use super::readiness::Readiness;
use super::Supervisor;
use reconciler::{VassalName, VassalSpec};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// A process about to be watched, and its channels.
pub(super) struct Watched {
    pub(super) generation: u64,
    pub(super) handle: Handle,
    pub(super) spec: VassalSpec,
    pub(super) launch: Launch,
    pub(super) control: Option<UnixStream>,
    pub(super) config: Option<(UnixStream, Vec<u8>)>,
}

impl Supervisor {
    /// Starts watching a process (its control channel, and its exit when
    /// it is not our child).
    pub(super) fn watch_proc(&mut self, w: Watched) -> Proc {
        let (state, readiness) = self.first_state(&w);
        let control = w.control.and_then(|c| {
            control_of(c)
                .inspect_err(|e| tracing::warn!(vassal = %w.spec.name, error = %e, "cannot read the control channel"))
                .ok()
        });
        let slot = control.as_ref().and_then(|c| {
            self.channels
                .watch(&w.spec.name, w.generation, c.clone())
                .inspect_err(|e| tracing::warn!(vassal = %w.spec.name, error = %e, "cannot watch the control channel"))
                .ok()
        });
        let task = match &w.handle {
            // Its exit shows as the channel's hang-up first (see `hung_up`).
            Handle::Adopted(_) if slot.is_some() => None,
            Handle::Adopted(adopted) => Some(self.watch_exit(w.spec.name.clone(), w.generation, adopted.clone())),
            Handle::Child(pid, _) => {
                self.children.insert(*pid, (w.spec.name.clone(), w.generation));
                None
            }
        };
        Proc {
            generation: w.generation,
            handle: w.handle,
            spec: w.spec,
            launch: w.launch,
            control,
            slot,
            config: w.config,
            state,
            readiness,
            task,
        }
    }

    /// A task that reports the exit of an adopted process (a readable
    /// pidfd: the one kept, or one opened now).
    fn watch_exit(&self, name: VassalName, generation: u64, adopted: Adopted) -> tokio::task::JoinHandle<()> {
        let events = self.event_tx.clone();
        tokio::spawn(async move {
            if let Ok(pidfd) = adopted.pidfd() {
                let _ = pidfd.readable().await;
            }
            let _ = events.send(ProcEvent { name, generation, kind: ProcEventKind::Exited });
        })
    }

    /// Serves what the control channels ready now brought: their bytes as
    /// messages; a hang-up is logged and, for an adopted process, starts
    /// the wait for its exit (the channel hung up: it has exited, or is about to).
    pub(super) fn read_channels(&mut self) {
        for (name, generation, heard) in self.channels.drain() {
            match heard {
                Heard::Bytes(bytes) => {
                    for byte in bytes {
                        self.on_event(ProcEvent { name: name.clone(), generation, kind: ProcEventKind::Message(byte) });
                    }
                }
                Heard::HungUp => {
                    self.on_event(ProcEvent { name: name.clone(), generation, kind: ProcEventKind::Eof });
                    self.hung_up(name, generation);
                }
            }
        }
    }

    /// Waits for the exit of the adopted process whose channel hung up.
    fn hung_up(&mut self, name: VassalName, generation: u64) {
        let Some(proc) = self.procs.get(&name).filter(|p| p.generation == generation) else { return };
        let Handle::Adopted(adopted) = &proc.handle else { return };
        let task = self.watch_exit(name.clone(), generation, adopted.clone());
        if let Some(proc) = self.procs.get_mut(&name) {
            proc.task = Some(task);
        }
    }

    /// Where a process starts: ready or not, its watchdog armed or not. An
    /// adopted process counts as ready: it ran before the emperor restarted.
    fn first_state(&mut self, w: &Watched) -> (ProcState, Readiness) {
        let now = SystemTime::now();
        let adopted = matches!(w.handle, Handle::Adopted(..));
        let Launch::Native(native) = &w.launch else {
            return (ProcState::STARTED, if adopted { Readiness::ready_at(now) } else { Readiness::starting() });
        };
        if self.notify.is_none() {
            return (ProcState::STARTED, Readiness::ready_at(now));
        }
        self.native_pids.insert(w.handle.pid(), w.spec.name.clone());
        let readiness = match native.readiness.notify && !adopted {
            true => Readiness::starting(),
            false => Readiness::ready_at(now),
        };
        let state = match native.readiness.watchdog {
            Some(_) => {
                self.timed.insert(w.spec.name.clone());
                ProcState::watched_from(Instant::now())
            }
            None => ProcState::STARTED,
        };
        (state, readiness)
    }
}

/// The emperor's end of a control channel, non-blocking, shared by the
/// channel set (reads) and the supervisor (one-byte writes).
fn control_of(control: UnixStream) -> std::io::Result<Arc<UnixStream>> {
    control.set_nonblocking(true)?;
    Ok(Arc::new(control))
}
