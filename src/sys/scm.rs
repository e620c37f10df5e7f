//! Unix sockets that carry file descriptors (`SCM_RIGHTS`), and the one-byte
//! writes of the control channels.

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// The address of a socket file; a clear error when the path is too long.
fn address(path: &Path) -> io::Result<SocketAddrUnix> {
    SocketAddrUnix::new(path)
        .map_err(|e| io::Error::new(e.kind(), format!("socket path {} is unusable: {e}", path.display())))
}

/// A close-on-exec `SOCK_SEQPACKET` unix socket.
fn seqpacket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?)
}

/// Connects to the `SOCK_SEQPACKET` socket listening at `path`.
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let fd = seqpacket()?;
    rustix::net::connect(&fd, &address(path)?)?;
    Ok(fd)
}

/// Listens on a new `SOCK_SEQPACKET` socket at `path` (replacing a stale file).
pub fn listen(path: &Path) -> io::Result<OwnedFd> {
    let fd = seqpacket()?;
    let addr = address(path)?;
    let _ = std::fs::remove_file(path);
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, 4)?;
    Ok(fd)
}

/// Accepts one connection (close-on-exec); retries when a signal interrupts.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    loop {
        match rustix::net::accept_with(listener, SocketFlags::CLOEXEC) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return Ok(other?),
        }
    }
}

/// Waits until at least one of `fds` is readable (or hung up), or at most
/// `timeout` (`None`: no limit); returns which (all `false` when the time
/// ran out). Retries when a signal interrupts.
pub fn wait_readable_for(fds: &[BorrowedFd<'_>], timeout: Option<std::time::Duration>) -> io::Result<Vec<bool>> {
    let mut polled: Vec<libc::pollfd> =
        fds.iter().map(|fd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    // Rounded up, so that a deadline is never woken for a millisecond early.
    let ms = timeout.map_or(-1, |t| t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int);
    loop {
        // SAFETY: `polled` is a live array of `polled.len()` pollfd structs.
        let rc = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, ms) };
        if rc >= 0 {
            return Ok(polled.iter().map(|p| p.revents != 0).collect());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Sends one datagram, with `fd` attached when given.
pub fn send(sock: BorrowedFd<'_>, data: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("no room for the fd in the control message"));
    }
    rustix::net::sendmsg(sock, &[IoSlice::new(data)], &mut control, SendFlags::NOSIGNAL)?;
    Ok(())
}

/// Receives one datagram into `buf` and the fd attached to it, if any
/// (close-on-exec); returns the datagram's length (0 when the peer left).
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(sock, &mut [IoSliceMut::new(buf)], &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let mut fd = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            // Extra fds, if a peer ever sent more than one, are closed here.
            for received in fds {
                fd.get_or_insert(received);
            }
        }
    }
    Ok((received.bytes, fd))
}

/// Writes one byte without blocking and without SIGPIPE: a control-channel
/// message. One byte is never a partial write.
pub fn send_byte(sock: impl AsFd, byte: u8) -> io::Result<()> {
    match rustix::net::send(sock, &[byte], SendFlags::DONTWAIT | SendFlags::NOSIGNAL)? {
        1 => Ok(()),
        _ => Err(io::ErrorKind::WriteZero.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn an_fd_travels_with_its_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = listen(&path).unwrap();
        let client = connect(&path).unwrap();
        let server = accept(listener.as_fd()).unwrap();
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        send(client.as_fd(), b"PUT x", Some(ours.as_fd())).unwrap();
        drop(ours);
        let mut buf = [0u8; 64];
        let (n, fd) = recv(server.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"PUT x");
        send_byte(fd.unwrap(), 7).unwrap();
        let mut byte = [0u8];
        theirs.read_exact(&mut byte).unwrap();
        assert_eq!(byte, [7]);
        send(client.as_fd(), b"END", None).unwrap();
        assert_eq!(recv(server.as_fd(), &mut buf).unwrap().1.map(|_| ()), None);
        drop(client);
        assert_eq!(recv(server.as_fd(), &mut buf).unwrap().0, 0, "EOF once the peer left");
    }
}
