//! Watching one vassal process: its exit through its pidfd, its messages
//! through its control channel.

use super::launch::Launch;
use super::process::Pidfd;
use super::{Proc, ProcEvent, ProcEventKind, Supervisor};
use reconciler::{VassalName, VassalSpec};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc::UnboundedSender;

/// A process about to be watched, and its channels.
pub(super) struct Watched {
    pub(super) generation: u64,
    pub(super) pid: i32,
    pub(super) child: bool,
    pub(super) pidfd: Arc<AsyncFd<Pidfd>>,
    pub(super) spec: VassalSpec,
    pub(super) launch: Launch,
    pub(super) control: Option<UnixStream>,
    pub(super) config: Option<(UnixStream, Vec<u8>)>,
}

impl Supervisor {
    /// Starts watching a process (its exit and its control channel).
    pub(super) fn watch_proc(&self, w: Watched) -> Proc {
        let reader = w.control.as_ref().and_then(|c| {
            reader_of(c)
                .inspect_err(|e| tracing::warn!(vassal = %w.spec.name, error = %e, "cannot read the control channel"))
                .ok()
        });
        let task = tokio::spawn(watch(w.spec.name.clone(), w.generation, w.pidfd.clone(), reader, self.events.clone()));
        Proc {
            generation: w.generation,
            pid: w.pid,
            child: w.child,
            pidfd: w.pidfd,
            spec: w.spec,
            launch: w.launch,
            control: w.control,
            config: w.config,
            stop_deadline: None,
            last_heartbeat: None,
            stopping: false,
            task,
        }
    }
}

fn reader_of(control: &UnixStream) -> std::io::Result<tokio::net::UnixStream> {
    control.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(control.try_clone()?)
}

/// Watches one process: its exit (pidfd readable) and its control channel.
async fn watch(
    name: VassalName,
    generation: u64,
    pidfd: Arc<AsyncFd<Pidfd>>,
    mut control: Option<tokio::net::UnixStream>,
    events: UnboundedSender<ProcEvent>,
) {
    let send = |kind| events.send(ProcEvent { name: name.clone(), generation, kind }).is_ok();
    let mut buf = [0u8; 64];
    loop {
        tokio::select! {
            // Readable pidfd = the process has exited.
            _ = pidfd.readable() => {
                send(ProcEventKind::Exited);
                return;
            }
            read = async { control.as_mut().expect("guarded").read(&mut buf).await }, if control.is_some() => {
                match read {
                    Ok(n) if n > 0 => {
                        if !buf[..n].iter().all(|b| send(ProcEventKind::Message(*b))) {
                            return;
                        }
                    }
                    _ => {
                        control = None;
                        send(ProcEventKind::Eof);
                    }
                }
            }
        }
    }
}
