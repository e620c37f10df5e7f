//! The log pipe reader: one thread, one edge-triggered epoll set, every
//! vassal's output pipe in it. For each pipe it looks at what waits (a
//! `tee`), then moves the whole lines into the vassal's log (a `splice`);
//! a partial last line stays in the pipe until its newline comes, the pipe
//! closes, or it grows past [`LONG_LINE`].

use super::rotate::{LogFile, Rotation};
use crate::sys::epoll::{Poller, Readiness, WAKE_TOKEN};
use crate::sys::pipe::{self, Peeked, Peeker};
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;

/// A line without newline this long is written as it is, so that a vassal
/// writing one never fills its pipe and blocks.
pub(super) const LONG_LINE: usize = 16 * 1024;

/// What the emperor asks of the reader.
pub(super) enum Command {
    /// Read `pipe`, the output of `vassal`, into `<log dir>/<file>`.
    Add {
        /// The vassal's name.
        vassal: String,
        /// Its log's file name.
        file: String,
        /// The pipe's read end.
        pipe: OwnedFd,
    },
    /// Write out everything the pipes hold, partial lines included, and end.
    Drain,
}

/// One pipe being read.
struct Pipe {
    fd: OwnedFd,
    vassal: String,
    file: String,
    /// Its writers are gone: what is left is written out, then it closes.
    hangup: bool,
    /// Its last write failed (reported once until one succeeds).
    failing: bool,
}

/// The reader thread's state.
pub(super) struct Reader {
    dir: PathBuf,
    rotation: Option<Rotation>,
    poller: Poller,
    peeker: Peeker,
    commands: Receiver<Command>,
    pipes: HashMap<u64, Pipe>,
    /// Open logs, with how many pipes write to each (a vassal being
    /// replaced and its successor share one).
    files: HashMap<String, (LogFile, usize)>,
    next_token: u64,
    buf: Vec<u8>,
}

impl Reader {
    /// A reader of pipes into logs in `dir`, taking commands from `commands`.
    pub(super) fn new(
        dir: PathBuf,
        rotation: Option<Rotation>,
        poller: Poller,
        commands: Receiver<Command>,
    ) -> std::io::Result<Self> {
        let peeker = Peeker::new()?;
        let (pipes, files, buf) = (HashMap::new(), HashMap::new(), Vec::new());
        Ok(Self { dir, rotation, poller, peeker, commands, pipes, files, next_token: WAKE_TOKEN + 1, buf })
    }

    /// Serves the pipes until told to drain (or the emperor's side is gone).
    pub(super) fn run(mut self) {
        let mut ready: Vec<Readiness> = Vec::new();
        loop {
            ready.clear();
            if let Err(e) = self.poller.wait(&mut ready) {
                tracing::error!(error = %e, "log pipe reader: cannot wait for output; vassal output is no longer read");
                return;
            }
            for Readiness { token, hangup } in ready.drain(..) {
                if token != WAKE_TOKEN {
                    self.service(token, hangup);
                } else if !self.take_commands() {
                    self.drain();
                    return;
                }
            }
        }
    }

    /// Carries out the queued commands; `false` once told to drain.
    fn take_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Add { vassal, file, pipe }) => self.add(vassal, file, pipe),
                Ok(Command::Drain) | Err(std::sync::mpsc::TryRecvError::Disconnected) => return false,
                Err(std::sync::mpsc::TryRecvError::Empty) => return true,
            }
        }
    }

    fn add(&mut self, vassal: String, file: String, fd: OwnedFd) {
        if let Some((_, users)) = self.files.get_mut(&file) {
            *users += 1;
        } else {
            // A log that cannot be opened still has its pipe read (into
            // /dev/null), so that the vassal never blocks on it.
            let log = LogFile::open(self.dir.join(&file), self.rotation).or_else(|e| {
                tracing::error!(vassal, error = %e, "cannot open the vassal's log; its output is dropped");
                LogFile::open("/dev/null".into(), None)
            });
            match log {
                Ok(log) => self.files.insert(file.clone(), (log, 1)),
                Err(e) => return tracing::error!(vassal, error = %e, "vassal output is not read"),
            };
        }
        let token = self.next_token;
        self.next_token += 1;
        if let Err(e) = self.poller.add(fd.as_fd(), token) {
            tracing::error!(vassal, error = %e, "cannot watch the vassal's output pipe");
        }
        self.pipes.insert(token, Pipe { fd, vassal, file, hangup: false, failing: false });
        // Output may already wait (a pipe taken back after a restart).
        self.service(token, false);
    }

    /// Writes out what pipe `token` holds; closes it once its writers are
    /// gone and it is empty.
    fn service(&mut self, token: u64, hangup: bool) {
        let Some(pipe) = self.pipes.get_mut(&token) else { return };
        pipe.hangup |= hangup;
        let Some((log, _)) = self.files.get_mut(&pipe.file) else { return };
        loop {
            let take = match self.peeker.peek(pipe.fd.as_fd(), &mut self.buf) {
                Ok(Peeked::Data(n)) => match self.buf.iter().rposition(|b| *b == b'\n') {
                    Some(last) => last + 1,
                    None if pipe.hangup || n >= LONG_LINE => n,
                    None => return,
                },
                Ok(Peeked::Empty) => return,
                Ok(Peeked::Eof) => break,
                Err(e) => {
                    tracing::warn!(vassal = pipe.vassal, error = %e, "cannot read the vassal's output pipe");
                    break;
                }
            };
            let unfinished = pipe.hangup && self.buf[take - 1] != b'\n';
            let mut written = log.append_from(pipe.fd.as_fd(), &self.buf[..take]);
            if written.is_ok() && unfinished {
                written = log.end_line();
            }
            if let Err(e) = written {
                if !std::mem::replace(&mut pipe.failing, true) {
                    tracing::warn!(vassal = pipe.vassal, error = %e, "vassal output lost: cannot write its log");
                }
                // Thrown away rather than left to fill the pipe and block the vassal.
                if pipe::discard(pipe.fd.as_fd(), take).is_err() {
                    break;
                }
            } else if std::mem::replace(&mut pipe.failing, false) {
                tracing::info!(vassal = pipe.vassal, log = %log.path().display(), "vassal log written again");
            }
        }
        self.close(token);
    }

    /// Stops reading pipe `token`; its log closes with its last pipe.
    fn close(&mut self, token: u64) {
        let Some(pipe) = self.pipes.remove(&token) else { return };
        // Removed explicitly: the fd holder's copy would keep it in the set.
        let _ = self.poller.remove(pipe.fd.as_fd());
        if let Some((_, users)) = self.files.get_mut(&pipe.file) {
            *users -= 1;
            if *users == 0 {
                self.files.remove(&pipe.file);
            }
        }
    }

    /// Writes out everything every pipe holds (the vassals are gone), then
    /// closes them all.
    fn drain(&mut self) {
        let tokens: Vec<u64> = self.pipes.keys().copied().collect();
        for token in tokens {
            self.service(token, true);
            self.close(token);
        }
    }
}
