//! Pipes that carry a vassal's output to the emperor: creating them,
//! looking at what waits in one without taking it (`tee(2)` into a scratch
//! pipe), and moving bytes from one straight into a file (`splice(2)`), so
//! that what leaves the pipe is exactly what lands in the file, even if the
//! emperor is killed in between two calls.

use rustix::io::Errno;
use rustix::pipe::{PipeFlags, SpliceFlags};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

/// A new pipe, both ends close-on-exec and blocking: `(read end, write end)`.
///
/// The write end becomes a vassal's stdout and stderr; the emperor reads
/// the other end only with non-blocking `tee`/`splice` calls, so the
/// vassal's writes stay ordinary blocking writes.
pub fn output_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?)
}

/// What [`Peeker::peek`] found in a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peeked {
    /// This many bytes, copied into the caller's buffer and still in the pipe.
    Data(usize),
    /// Nothing for now; a writer may still write.
    Empty,
    /// Nothing, and every writer has closed its end.
    Eof,
}

/// A scratch pipe through which the content of other pipes is copied
/// (never consumed) for a look at it.
#[derive(Debug)]
pub struct Peeker {
    read: OwnedFd,
    write: OwnedFd,
}

/// The scratch pipe's capacity asked for: the most one peek shows.
const SCRATCH_CAPACITY: usize = 1 << 20;

impl Peeker {
    /// A peeker with its own scratch pipe (non-blocking at both ends).
    pub fn new() -> io::Result<Self> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // A bigger scratch pipe shows more of a pipe a vassal enlarged; the
        // default one (64 KiB) is as big as the pipes the emperor creates.
        let _ = rustix::pipe::fcntl_setpipe_size(&write, SCRATCH_CAPACITY);
        Ok(Self { read, write })
    }

    /// Copies what waits in `pipe` into `buf` (replacing its content)
    /// without taking it out of `pipe`.
    pub fn peek(&self, pipe: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<Peeked> {
        buf.clear();
        let copied = match rustix::pipe::tee(pipe, &self.write, usize::MAX, SpliceFlags::NONBLOCK) {
            Ok(0) => return Ok(Peeked::Eof),
            Ok(n) => n,
            Err(Errno::AGAIN) => return Ok(Peeked::Empty),
            Err(e) => return Err(e.into()),
        };
        buf.resize(copied, 0);
        let mut filled = 0;
        while filled < copied {
            match rustix::io::read(&self.read, &mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(filled);
        Ok(Peeked::Data(filled))
    }
}

/// Moves the first `bytes.len()` bytes of `pipe` (which a peek showed to
/// be `bytes`) into `file` at `*offset`, advancing it.
///
/// The move is a `splice`: the kernel takes from the pipe exactly what it
/// writes to the file. A file system that cannot splice gets `bytes` written
/// the ordinary way, then as many bytes taken out of the pipe.
pub fn move_to_file(pipe: BorrowedFd<'_>, file: &File, offset: &mut u64, bytes: &[u8]) -> io::Result<()> {
    let mut left = bytes.len();
    while left > 0 {
        match rustix::pipe::splice(pipe, None, file.as_fd(), Some(offset), left, SpliceFlags::NONBLOCK) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "pipe emptied under the reader")),
            Ok(n) => left -= n,
            Err(Errno::INTR) => {}
            Err(Errno::INVAL) => {
                let done = bytes.len() - left;
                file.write_all_at(&bytes[done..], *offset)?;
                *offset += left as u64;
                return discard(pipe, left);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Takes `len` bytes out of `pipe` and throws them away (they are known to
/// be there: a peek showed them).
pub fn discard(pipe: BorrowedFd<'_>, mut len: usize) -> io::Result<()> {
    let mut sink = [0u8; 8192];
    while len > 0 {
        let want = len.min(sink.len());
        match rustix::io::read(pipe, &mut sink[..want]) {
            Ok(0) => return Ok(()),
            Ok(n) => len -= n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_peek_leaves_the_bytes_and_a_move_takes_exactly_them() {
        let (read, write) = output_pipe().unwrap();
        let mut writer = File::from(write);
        writer.write_all(b"one\ntw").unwrap();
        let peeker = Peeker::new().unwrap();
        let mut buf = Vec::new();
        assert_eq!(peeker.peek(read.as_fd(), &mut buf).unwrap(), Peeked::Data(6));
        assert_eq!(buf, b"one\ntw");
        assert_eq!(peeker.peek(read.as_fd(), &mut buf).unwrap(), Peeked::Data(6), "still there");

        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("out")).unwrap();
        let mut offset = 0;
        move_to_file(read.as_fd(), &file, &mut offset, &buf[..4]).unwrap();
        assert_eq!(offset, 4);
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), b"one\n");
        peeker.peek(read.as_fd(), &mut buf).unwrap();
        assert_eq!(buf, b"tw");

        discard(read.as_fd(), 2).unwrap();
        assert_eq!(peeker.peek(read.as_fd(), &mut buf).unwrap(), Peeked::Empty);
        drop(writer);
        assert_eq!(peeker.peek(read.as_fd(), &mut buf).unwrap(), Peeked::Eof);
    }
}
