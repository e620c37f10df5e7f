//! Built-in size rotation of the vassals' logs (`--log-max-size`,
//! `--log-keep`), losing no line and needing nothing of the vassal.
//!
//! Without rotation a vassal writes to `<log dir>/<name>.log` itself (the
//! file is its stdout and stderr), which is simple and outlives any emperor
//! crash, but cannot be rotated without losing lines. With rotation on:
//!
//! * the vassal's stdout and stderr are one pipe; the emperor reads it and
//!   appends to `<name>.log` (mode `0640`), and once the next line would
//!   take it past the limit renames it `<name>.log.1` (`.1` → `.2` … `.N`,
//!   the oldest dropped) and starts a fresh `<name>.log`: rotation happens
//!   on line boundaries, and a line longer than the limit gets a file of
//!   its own;
//! * bytes leave the pipe only by `splice(2)` into the file, after a
//!   `tee(2)` showed where the lines end: what leaves the pipe is what
//!   lands in the file, so even a `kill -9` of the emperor loses or
//!   doubles nothing;
//! * a partial last line stays in the pipe until its newline comes (or its
//!   writers close it, when it is written with a newline added, or it
//!   reaches 16 KiB, when it is written as it is);
//! * the pipe's read end is also handed to the fd holder (key
//!   `log:<generation>:<name>`), like the uWSGI control channels: if the
//!   emperor dies, a reader remains, so the vassal gets no SIGPIPE/EPIPE and
//!   keeps running; it only blocks once the pipe buffer (64 KiB) is full,
//!   until a restarted emperor takes the pipe back on re-adoption and reads
//!   on from where the last one stopped;
//! * one thread with one epoll set reads every pipe ([`reader`]), so the
//!   main loop never waits on a log, and thousands of vassals cost one
//!   thread.

mod reader;
mod rotate;

pub use rotate::Rotation;

use crate::sys::epoll::{Poller, Waker};
use reader::{Command, Reader};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

/// Why the log pipe reader could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the log pipe reader for {dir}: {source}")]
pub struct StartError {
    /// The log dir it would write to.
    dir: PathBuf,
    /// The cause.
    #[source]
    source: std::io::Error,
}

/// The emperor's side of the log pipes: hands pipes to the reader thread,
/// started at the first one.
#[derive(Debug)]
pub(super) struct LogPipes {
    dir: PathBuf,
    rotation: Option<Rotation>,
    running: Option<Running>,
}

/// The reader thread and how to reach it.
#[derive(Debug)]
struct Running {
    commands: Sender<Command>,
    waker: Waker,
    thread: JoinHandle<()>,
}

impl LogPipes {
    /// Log pipes writing into `dir`, rotating per `rotation` (never when `None`).
    pub(super) fn new(dir: PathBuf, rotation: Option<Rotation>) -> Self {
        Self { dir, rotation, running: None }
    }

    /// Whether new vassals write into a pipe (rotation is on).
    pub(super) fn rotating(&self) -> bool {
        self.rotation.is_some()
    }

    /// Starts the reader thread if it does not run yet.
    pub(super) fn ensure_running(&mut self) -> Result<(), StartError> {
        if self.running.is_some() {
            return Ok(());
        }
        let failed = |source| StartError { dir: self.dir.clone(), source };
        let poller = Poller::new().map_err(failed)?;
        let waker = poller.waker();
        let (commands, receiver) = channel();
        let reader = Reader::new(self.dir.clone(), self.rotation, poller, receiver).map_err(failed)?;
        let thread = std::thread::Builder::new().name("log-pipes".into()).spawn(move || reader.run());
        self.running = Some(Running { commands, waker, thread: thread.map_err(failed)? });
        Ok(())
    }

    /// Has the reader write what `pipe` carries into the log `file` of `vassal`.
    pub(super) fn add(&mut self, vassal: &str, file: String, pipe: OwnedFd) -> Result<(), StartError> {
        self.ensure_running()?;
        let running = self.running.as_ref().expect("started above");
        let _ = running.commands.send(Command::Add { vassal: vassal.to_owned(), file, pipe });
        running.waker.wake();
        Ok(())
    }

    /// Writes out what every pipe still holds and ends the reader; call
    /// once every vassal has stopped.
    pub(super) fn finish(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.commands.send(Command::Drain);
            running.waker.wake();
            let _ = running.thread.join();
        }
    }
}
