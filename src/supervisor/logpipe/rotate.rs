//! One vassal's log file as the log pipe reader writes it: bytes go in on
//! line boundaries, and past the size limit `<name>.log` is renamed
//! `<name>.log.1` (`.1` → `.2` … up to `.N`, the oldest dropped) before a
//! fresh `<name>.log` takes the next line.

use super::super::logs;
use crate::sys::pipe;
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

/// Size-based rotation of the vassals' logs (`--log-max-size`, `--log-keep`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Size (bytes) past which `<name>.log` is rotated.
    pub max_size: u64,
    /// How many rotated files (`<name>.log.1` … `.N`) are kept.
    pub keep: u32,
}

/// Why a vassal's log file could not be opened, rotated or written.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    /// The file could not be opened (or created).
    #[error("cannot open {path}: {source}")]
    Open {
        /// The log file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A rotation step (a rename or removal) failed.
    #[error("cannot rotate {path}: {source}")]
    Rotate {
        /// The file being moved or removed.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Bytes could not be moved from the pipe into the file.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The log file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A vassal's open log file and its size (the offset of the next byte).
#[derive(Debug)]
pub(super) struct LogFile {
    path: PathBuf,
    rotation: Option<Rotation>,
    file: File,
    size: u64,
}

impl LogFile {
    /// Opens (creating, mode `0640`) the log at `path`, to be written at its end.
    pub(super) fn open(path: PathBuf, rotation: Option<Rotation>) -> Result<Self, LogFileError> {
        let opened = logs::open_for_splice(&path).and_then(|file| Ok((file.metadata()?.len(), file)));
        match opened {
            Ok((size, file)) => Ok(Self { path, rotation, file, size }),
            Err(source) => Err(LogFileError::Open { path, source }),
        }
    }

    /// The file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Moves `bytes`, the next bytes waiting in `pipe`, into the log,
    /// rotating first whenever the next line would not fit.
    pub(super) fn append_from(&mut self, pipe: BorrowedFd<'_>, bytes: &[u8]) -> Result<(), LogFileError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let next = plan(self.size, self.rotation.map(|r| r.max_size), rest);
            if next.rotate_first {
                self.rotate()?;
            }
            let (chunk, after) = rest.split_at(next.len);
            pipe::move_to_file(pipe, &self.file, &mut self.size, chunk).map_err(|source| self.write_error(source))?;
            rest = after;
        }
        Ok(())
    }

    /// Ends the last line (a vassal's output that stopped mid-line).
    pub(super) fn end_line(&mut self) -> Result<(), LogFileError> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(b"\n", self.size).map_err(|source| self.write_error(source))?;
        self.size += 1;
        Ok(())
    }

    fn write_error(&self, source: std::io::Error) -> LogFileError {
        LogFileError::Write { path: self.path.clone(), source }
    }

    /// `.N-1` → `.N` … `.1` → `.2`, the log → `.1` (with nothing to keep,
    /// the log is removed), `.N+1` and on removed, then a fresh log.
    fn rotate(&mut self) -> Result<(), LogFileError> {
        let keep = self.rotation.map_or(0, |r| r.keep);
        for n in (1..keep).rev() {
            rename_if_present(&numbered(&self.path, n), &numbered(&self.path, n + 1))?;
        }
        let moved = match keep {
            0 => std::fs::remove_file(&self.path),
            _ => std::fs::rename(&self.path, numbered(&self.path, 1)),
        };
        moved.map_err(|source| LogFileError::Rotate { path: self.path.clone(), source })?;
        // Files past `.N` (kept when `--log-keep` was larger) go too.
        let mut n = keep + 1;
        while std::fs::remove_file(numbered(&self.path, n)).is_ok() {
            n += 1;
        }
        *self = Self::open(self.path.clone(), self.rotation)?;
        Ok(())
    }
}

/// `<path>.<n>`.
pub(super) fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{n}"));
    name.into()
}

/// Renames `from` to `to`, replacing it; a missing `from` is no error.
fn rename_if_present(from: &Path, to: &Path) -> Result<(), LogFileError> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(LogFileError::Rotate { path: from.to_owned(), source: e })
        }
        _ => Ok(()),
    }
}

/// What to do with the next bytes: rotate first or not, then write how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    rotate_first: bool,
    len: usize,
}

/// The next step for `bytes` (whole lines, perhaps a last one without its
/// newline) into a file of `size` bytes: as many whole lines as fit under
/// `max`; if not even one fits, rotate first; a line longer than `max`
/// alone goes into a fresh file of its own.
fn plan(size: u64, max: Option<u64>, bytes: &[u8]) -> Plan {
    let Some(max) = max else { return Plan { rotate_first: false, len: bytes.len() } };
    let room = max.saturating_sub(size);
    let fitting = line_ends(bytes).take_while(|&end| end as u64 <= room).last();
    match fitting {
        Some(len) => Plan { rotate_first: false, len },
        None if size > 0 => Plan { rotate_first: true, ..plan(0, Some(max), bytes) },
        None => Plan { rotate_first: false, len: line_ends(bytes).next().unwrap_or(bytes.len()) },
    }
}

/// The offsets just past each line of `bytes` (the last one may lack its newline).
fn line_ends(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let newlines = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1);
    let tail = (bytes.last() != Some(&b'\n') && !bytes.is_empty()).then_some(bytes.len());
    newlines.chain(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(rotate_first: bool, len: usize) -> Plan {
        Plan { rotate_first, len }
    }

    #[test]
    fn whole_lines_fill_the_file_up_to_the_limit() {
        assert_eq!(plan(0, Some(10), b"aaaa\nbbbb\ncccc\n"), p(false, 10));
        assert_eq!(plan(5, Some(10), b"bbbb\ncccc\n"), p(false, 5));
        assert_eq!(plan(10, Some(10), b"cccc\n"), p(true, 5), "full: rotate, then the line");
        assert_eq!(plan(6, Some(10), b"cccc\n"), p(true, 5), "the line would cross the limit");
        assert_eq!(plan(9, None, b"cccc\n"), p(false, 5), "no limit");
    }

    #[test]
    fn a_line_longer_than_the_limit_gets_a_file_of_its_own() {
        assert_eq!(plan(0, Some(4), b"0123456789\nab\n"), p(false, 11));
        assert_eq!(plan(3, Some(4), b"0123456789\nab\n"), p(true, 11));
        assert_eq!(plan(0, Some(4), b"0123456789"), p(false, 10), "a tail without newline counts as a line");
    }

    #[test]
    fn rotation_shifts_numbered_files_and_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ini.log");
        let mut log = LogFile::open(path.clone(), Some(Rotation { max_size: 4, keep: 2 })).unwrap();
        // Left by a larger --log-keep.
        for n in [3, 4] {
            std::fs::write(numbered(&path, n), "old\n").unwrap();
        }
        for text in ["1\n", "2\n", "3\n", "4\n"] {
            std::fs::write(&path, text).unwrap();
            log.rotate().unwrap();
        }
        assert_eq!(std::fs::read_to_string(numbered(&path, 1)).unwrap(), "4\n");
        assert_eq!(std::fs::read_to_string(numbered(&path, 2)).unwrap(), "3\n");
        assert!(!numbered(&path, 3).exists() && !numbered(&path, 4).exists());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o640);
    }
}
