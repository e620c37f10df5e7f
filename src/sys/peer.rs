//! Who is at the other end of a unix socket (`SO_PEERCRED`), and whether
//! that peer may talk to a socket of the emperor's.

use std::io;
use std::os::fd::AsFd;

/// The credentials of a connected unix-socket peer, as the kernel recorded
/// them when it connected: they cannot be forged by the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    /// The peer's process id.
    pub pid: i32,
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
}

/// The credentials of the peer of the connected unix socket `sock`.
pub fn credentials(sock: impl AsFd) -> io::Result<Credentials> {
    let cred = rustix::net::sockopt::socket_peercred(sock)?;
    Ok(Credentials { pid: cred.pid.as_raw_nonzero().get(), uid: cred.uid.as_raw(), gid: cred.gid.as_raw() })
}

/// Whether a peer running as `uid` may use the sockets of a process running
/// as our own effective uid: only that uid, and root.
pub fn is_trusted(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_socketpair_peer_is_this_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let cred = credentials(&a).unwrap();
        assert_eq!(cred.pid, std::process::id() as i32);
        assert_eq!(cred.uid, rustix::process::geteuid().as_raw());
        assert_eq!(cred.gid, rustix::process::getegid().as_raw());
        assert!(is_trusted(cred.uid));
        assert!(is_trusted(0));
    }
}
