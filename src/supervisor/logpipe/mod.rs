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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A pipe handed to a reader writing into `dir`: its write end.
    fn piped(pipes: &mut LogPipes, vassal: &str) -> std::fs::File {
        let (read, write) = crate::sys::pipe::output_pipe().unwrap();
        pipes.add(vassal, format!("{vassal}.log"), read).unwrap();
        std::fs::File::from(write)
    }

    #[test]
    fn a_closed_pipe_has_its_last_partial_line_ended_and_long_lines_go_through() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Some(Rotation { max_size: 1 << 20, keep: 1 });
        let mut pipes = LogPipes::new(dir.path().to_owned(), rotation);
        let mut first = piped(&mut pipes, "a.ini");
        let mut second = piped(&mut pipes, "b.ini");
        first.write_all(b"one\ntwo").unwrap();
        drop(first);
        // No newline in 20 KiB: written as it is rather than left to fill the pipe.
        let long = vec![b'x'; 20 * 1024];
        second.write_all(&long).unwrap();
        let path = dir.path().join("b.ini.log");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::metadata(&path).map_or(0, |m| m.len()) < long.len() as u64 {
            assert!(std::time::Instant::now() < deadline, "the long line was not written");
            std::thread::yield_now();
        }
        second.write_all(b"tail").unwrap();
        pipes.finish();
        assert_eq!(std::fs::read_to_string(dir.path().join("a.ini.log")).unwrap(), "one\ntwo\n");
        let mut expected = long;
        expected.extend_from_slice(b"tail\n");
        assert_eq!(std::fs::read(&path).unwrap(), expected, "drained at the end, partial line included");
    }
}
