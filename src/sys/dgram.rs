//! Datagram unix sockets that tell who sent each datagram (`SO_PASSCRED`):
//! the kernel attaches the sender's pid to every message, so a receiver can
//! tell its senders apart without trusting what they write.

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SocketAddrUnix, SocketFlags, SocketType,
};
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use tokio::io::{unix::AsyncFd, Interest};

/// A non-blocking, close-on-exec `SOCK_DGRAM` socket bound to the abstract
/// name `name` (no file: nothing to clean up, and the name is free again as
/// soon as the socket is closed, even by a crash), receiving its senders'
/// credentials.
pub fn bind_abstract(name: &[u8]) -> io::Result<OwnedFd> {
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::DGRAM, flags, None)?;
    rustix::net::sockopt::set_socket_passcred(&fd, true)?;
    rustix::net::bind(&fd, &SocketAddrUnix::new_abstract_name(name)?)?;
    Ok(fd)
}

/// Registers a socket from [`bind_abstract`] (or any fd that turns
/// readable, such as an epoll set) with the runtime, to await datagrams
/// (the socket turns readable).
pub fn into_async(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd owns its fd for its whole life and always reports
    // that same fd, as registration requires.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(io::Error::from)
}

/// One datagram as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Its length in the buffer (cut to the buffer's size).
    pub len: usize,
    /// The sender's process id, as the kernel recorded it.
    pub pid: Option<i32>,
}

/// Receives one datagram without blocking (`WouldBlock` when none is
/// queued). Fds a sender attached are closed at once.
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8), ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let flags = RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC;
    let received = rustix::net::recvmsg(sock, &mut [IoSliceMut::new(buf)], &mut control, flags)?;
    let mut pid = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmCredentials(cred) = message {
            pid = Some(cred.pid.as_raw_nonzero().get());
        }
    }
    Ok(Received { len: received.bytes.min(buf.len()), pid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    #[test]
    fn a_datagram_names_its_sender() {
        let name = format!("emperor-test-dgram-{}", std::process::id());
        let sock = bind_abstract(name.as_bytes()).unwrap();
        let mut buf = [0u8; 64];
        let err = recv(sock.as_fd(), &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let client = UnixDatagram::unbound().unwrap();
        let addr = <SocketAddr as SocketAddrExt>::from_abstract_name(name.as_bytes()).unwrap();
        client.send_to_addr(b"READY=1", &addr).unwrap();
        let got = recv(sock.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..got.len], b"READY=1");
        assert_eq!(got.pid, Some(std::process::id() as i32));
        assert!(bind_abstract(name.as_bytes()).is_err(), "the name is taken while the socket lives");
    }
}
