//! Where a vassal's stdout and stderr go: its log file itself, or (with
//! rotation on) a pipe the emperor reads, whose read end the fd holder
//! also keeps so that the vassal outlives an emperor crash (see
//! [`super::logpipe`]).

use super::{fdholder, logs, Supervisor};
use crate::sys;
use reconciler::VassalName;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

/// A new vassal's output: what it writes to, and the read end of its pipe.
pub(super) struct Output {
    /// Its stdout and stderr: the log file, or a pipe's write end.
    pub(super) writer: File,
    /// The emperor's end of the pipe, when it has one.
    pub(super) pipe: Option<OwnedFd>,
}

/// The fd holder's key kind of a log pipe's read end.
pub(super) const HELD_KIND: &str = "log";

impl Supervisor {
    /// Opens the output of a new vassal `name`: a pipe when rotation is on
    /// and its reader runs, else the log file.
    pub(super) fn vassal_output(&mut self, name: &VassalName) -> std::io::Result<Output> {
        if self.log_pipes.rotating() {
            match self.log_pipes.ensure_running() {
                Ok(()) => {
                    let (read, write) = sys::pipe::output_pipe()?;
                    return Ok(Output { writer: File::from(write), pipe: Some(read) });
                }
                Err(e) => {
                    tracing::error!(vassal = %name, error = %e, "no log rotation: the vassal writes to its log file")
                }
            }
        }
        Ok(Output { writer: logs::open(&self.settings.log_dir, name)?, pipe: None })
    }

    /// Gives the fd holder a copy of the read end of a new vassal's pipe.
    pub(super) fn hold_output(&mut self, name: &VassalName, generation: u64, output: &Output) {
        let Some(pipe) = &output.pipe else { return };
        let key = fdholder::key(HELD_KIND, generation, name.as_str());
        if let Err(e) = self.holder.put(&key, pipe.as_fd()) {
            tracing::warn!(vassal = %name, error = %e, "cannot hand the log pipe to the fd holder");
        }
    }

    /// Has the log pipe reader take the read end of `vassal`'s pipe (a new
    /// one, or one taken back from the fd holder).
    pub(super) fn read_output(&mut self, vassal: &str, pipe: OwnedFd) {
        if let Err(e) = self.log_pipes.add(vassal, logs::file_name_of(vassal), pipe) {
            tracing::error!(vassal, error = %e, "the vassal's output is not read; it blocks once its pipe is full");
        }
    }
}
