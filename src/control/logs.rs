//! Reading a vassal's log file for `ctl logs`: its last lines, then what
//! is appended, across a rotation (the file renamed away and created anew,
//! or truncated in place).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How much is read backwards at a time looking for line starts.
const BLOCK: u64 = 64 * 1024;
/// The most of a file `last_lines` returns, whatever the line count.
const MAX_TAIL: u64 = 16 * 1024 * 1024;
/// The most one [`Follower::read_new`] returns.
const MAX_READ: u64 = 256 * 1024;

/// The last `n` lines of the file at `path` (nothing if it does not exist).
pub(crate) fn tail(path: &Path, n: usize) -> Vec<u8> {
    File::open(path).and_then(|mut file| last_lines(&mut file, n)).map(|(text, _)| text).unwrap_or_default()
}

/// The last `n` lines of `file` (at most [`MAX_TAIL`] bytes), and the
/// offset of the end they were read up to.
pub(crate) fn last_lines(file: &mut File, n: usize) -> io::Result<(Vec<u8>, u64)> {
    let end = file.metadata()?.len();
    if n == 0 {
        return Ok((Vec::new(), end));
    }
    let floor = end.saturating_sub(MAX_TAIL);
    let mut start = end;
    let mut text = Vec::new();
    loop {
        let from = start.saturating_sub(BLOCK).max(floor);
        let mut block = vec![0; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut block)?;
        block.append(&mut text);
        text = block;
        start = from;
        if let Some(at) = nth_line_start(&text, n) {
            return Ok((text.split_off(at), end));
        }
        if start == floor {
            // The whole file, or as much as allowed: drop a cut first line.
            let at = if start == 0 { 0 } else { text.iter().position(|b| *b == b'\n').map_or(text.len(), |i| i + 1) };
            return Ok((text.split_off(at), end));
        }
    }
}

/// Where the last `n` lines of `text` begin, if it holds that many whole
/// lines (the last one may lack its newline).
fn nth_line_start(text: &[u8], n: usize) -> Option<usize> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    body.iter().enumerate().rev().filter(|(_, b)| **b == b'\n').nth(n - 1).map(|(i, _)| i + 1)
}

/// Follows a log file by path: reads what is appended, and when the file
/// is renamed away (rotation) finishes the old one and goes on with the
/// new file at that path; a truncated file is read again from its start.
pub(crate) struct Follower {
    path: PathBuf,
    file: Option<File>,
    pos: u64,
    inode: u64,
}

impl Follower {
    /// Follows `path` from its current end; its last `n` lines are returned.
    pub(crate) fn open(path: PathBuf, n: usize) -> (Self, Vec<u8>) {
        let mut follower = Self { path, file: None, pos: 0, inode: 0 };
        let mut text = Vec::new();
        if let Ok(mut file) = File::open(&follower.path) {
            if let (Ok((tail, end)), Ok(meta)) = (last_lines(&mut file, n), file.metadata()) {
                (text, follower.pos, follower.inode) = (tail, end, meta.ino());
                follower.file = Some(file);
            }
        }
        (follower, text)
    }

    /// What was appended since the last call (at most [`MAX_READ`] bytes;
    /// call again while it returns some).
    pub(crate) fn read_new(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(file) = &mut self.file {
            if file.metadata().is_ok_and(|m| m.len() < self.pos) {
                self.pos = 0; // truncated in place
            }
            if file.seek(SeekFrom::Start(self.pos)).is_ok() {
                let _ = file.take(MAX_READ).read_to_end(&mut out);
                self.pos += out.len() as u64;
            }
        }
        if out.is_empty() && self.replaced() {
            return self.read_new();
        }
        out
    }

    /// Whether another file now has the path (the old one is done): then it
    /// is the one followed, from its start.
    fn replaced(&mut self) -> bool {
        let Ok(meta) = std::fs::metadata(&self.path) else { return false };
        if self.file.is_some() && meta.ino() == self.inode {
            return false;
        }
        match File::open(&self.path) {
            Ok(file) => {
                (self.file, self.pos, self.inode) = (Some(file), 0, meta.ino());
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, text: &str) {
        File::options().create(true).append(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn the_last_lines_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        assert!(tail(&path, 3).is_empty(), "no file, no lines");
        append(&path, "one\ntwo\nthree\nfour\n");
        assert_eq!(tail(&path, 3), b"two\nthree\nfour\n");
        assert_eq!(tail(&path, 10), b"one\ntwo\nthree\nfour\n");
        assert!(tail(&path, 0).is_empty());
        append(&path, "partial");
        assert_eq!(tail(&path, 2), b"four\npartial");
        let long: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
        append(&path, &long);
        assert_eq!(tail(&path, 2), b"line 49998\nline 49999\n");
        assert_eq!(String::from_utf8(tail(&path, 30_000)).unwrap().lines().count(), 30_000);
    }

    #[test]
    fn a_follower_goes_on_across_a_rename_and_a_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        append(&path, "old 1\nold 2\n");
        let (mut follower, text) = Follower::open(path.clone(), 1);
        assert_eq!(text, b"old 2\n");
        assert!(follower.read_new().is_empty());
        append(&path, "new 1\n");
        assert_eq!(follower.read_new(), b"new 1\n");
        append(&path, "last of the old file\n");
        std::fs::rename(&path, dir.path().join("a.log.1")).unwrap();
        append(&path, "first of the new file\n");
        assert_eq!(follower.read_new(), b"last of the old file\n");
        assert_eq!(follower.read_new(), b"first of the new file\n");
        File::create(&path).unwrap();
        append(&path, "after truncation\n");
        assert_eq!(follower.read_new(), b"after truncation\n");
    }
}
