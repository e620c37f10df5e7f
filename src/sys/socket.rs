//! Listening sockets the emperor binds for its vassals (on-demand starts and
//! held sockets), and the fd copies that pass them to a child.

use std::io;
use std::net::{TcpListener, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

/// Binds and listens on TCP `host:port` (an empty host is every IPv4
/// interface, as upstream's `:PORT`). `SO_REUSEADDR` is set, so a socket
/// rebound after a restart does not wait out `TIME_WAIT`; the fd is
/// close-on-exec and blocking (the vassal inherits it as it is).
pub fn listen_tcp(host: &str, port: u16) -> io::Result<OwnedFd> {
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let addrs: Vec<_> = (host, port).to_socket_addrs()?.collect();
    let listener = TcpListener::bind(&addrs[..])?;
    Ok(listener.into())
}

/// Binds and listens on the unix socket `path`: a stale file there is
/// removed first and the socket is made `0666`, as upstream does, so a
/// vassal running as another user can be reached through it.
pub fn listen_unix(path: &Path) -> io::Result<OwnedFd> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener.into())
}

/// Registers a copy of a listening socket with the runtime, to await a
/// pending connection (the socket turns readable) without accepting it.
pub fn watch_readable(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd owns its fd for its whole life and always reports
    // that same fd, as registration requires.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_tcp_listener_queues_a_connection_before_any_accept() {
        let fd = listen_tcp("127.0.0.1", 0).unwrap();
        let listener = TcpListener::from(fd);
        let port = listener.local_addr().unwrap().port();
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        client.write_all(b"x").unwrap();
        let (mut served, _) = listener.accept().unwrap();
        let mut byte = [0u8];
        served.read_exact(&mut byte).unwrap();
        assert_eq!(byte, *b"x");
    }

    #[test]
    fn a_unix_listener_replaces_a_stale_file_and_is_world_writable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.socket");
        std::fs::write(&path, "stale").unwrap();
        let _fd = listen_unix(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);
        std::os::unix::net::UnixStream::connect(&path).unwrap();
    }
}
