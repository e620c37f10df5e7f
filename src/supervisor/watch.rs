//! Watching one vassal process: its messages through its control channel
//! and, for a re-adopted process, its exit through a pidfd (the exits of
//! our own children arrive through SIGCHLD). A re-adopted process with a
//! control channel gets its pidfd only once the channel hangs up.

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
use tokio::sync::mpsc::UnboundedSender;

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
        let exit = match &w.handle {
            Handle::Adopted(adopted) => Some(adopted.clone()),
            Handle::Child(pid) => {
                self.children.insert(*pid, (w.spec.name.clone(), w.generation));
                None
            }
        };
        let task = (exit.is_some() || control.is_some()).then(|| {
            let watch = watch(w.spec.name.clone(), w.generation, exit, control.clone(), self.event_tx.clone());
            tokio::spawn(watch)
        });
        Proc {
            generation: w.generation,
            handle: w.handle,
            spec: w.spec,
            launch: w.launch,
            control,
            config: w.config,
            state,
            readiness,
            task,
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
/// watch task (reads) and the supervisor (one-byte writes).
fn control_of(control: UnixStream) -> std::io::Result<Arc<tokio::net::UnixStream>> {
    control.set_nonblocking(true)?;
    Ok(Arc::new(tokio::net::UnixStream::from_std(control)?))
}

/// Watches one process: its control channel until it hangs up and then,
/// adopted, its exit (a readable pidfd: the one kept when there is no
/// channel, or one opened after the hang-up). One step after the other, so
/// that the task of each of thousands of vassals stays small.
async fn watch(
    name: VassalName,
    generation: u64,
    adopted: Option<Adopted>,
    control: Option<Arc<tokio::net::UnixStream>>,
    events: UnboundedSender<ProcEvent>,
) {
    let send = |kind| events.send(ProcEvent { name: name.clone(), generation, kind }).is_ok();
    if let Some(control) = control {
        if !read_control(&control, &send).await {
            return;
        }
        send(ProcEventKind::Eof);
    }
    let Some(adopted) = adopted else { return };
    // The channel hung up (or there is none): the process has exited, or is about to.
    if let Ok(pidfd) = adopted.pidfd() {
        let _ = pidfd.readable().await;
    }
    send(ProcEventKind::Exited);
}

/// Passes on the bytes of a control channel until it hangs up; `false`
/// when nobody hears them any more.
async fn read_control(control: &tokio::net::UnixStream, send: &impl Fn(ProcEventKind) -> bool) -> bool {
    loop {
        if control.readable().await.is_err() {
            return true;
        }
        let mut buf = [0u8; 64];
        match control.try_read(&mut buf) {
            Ok(n) if n > 0 => {
                if !buf[..n].iter().all(|b| send(ProcEventKind::Message(*b))) {
                    return false;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => return true,
        }
    }
}
