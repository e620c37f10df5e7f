//! The fd holder: a tiny long-lived process that keeps a copy of the
//! emperor's end of every uWSGI control and config channel.
//!
//! A uWSGI vassal exits when its control channel hits EOF, which happens
//! when every copy of the emperor's end is closed. With a copy held here, an
//! emperor that crashes (or exits for an upgrade) leaves its uWSGI vassals
//! running; the next emperor takes the copies back and talks to them again.
//!
//! Protocol: a `SOCK_SEQPACKET` unix socket in the state dir; one datagram
//! per message, fds passed with `SCM_RIGHTS`:
//! `PUT <key>` + fd, `DROP <key>`, `LIST` → `FD <key>` + fd … `END`, `QUIT`.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MAX_MESSAGE: usize = 4096;

/// The emperor's connection to its fd holder.
pub struct FdHolder {
    socket_path: PathBuf,
    conn: OwnedFd,
}

impl FdHolder {
    /// Connects to the holder of `state_dir`, starting one if none answers.
    pub fn connect_or_spawn(state_dir: &Path, log: std::fs::File) -> io::Result<Self> {
        let socket_path = state_dir.join("fd-holder.sock");
        if let Ok(conn) = connect(&socket_path) {
            return Ok(Self { socket_path, conn });
        }
        let _ = std::fs::remove_file(&socket_path);
        let exe = std::env::current_exe()?;
        let request = super::spawn::SpawnRequest {
            program: exe.to_string_lossy().into_owned(),
            args: vec!["--fd-holder".into(), socket_path.to_string_lossy().into_owned()],
            cwd: Some("/".into()),
            env: Vec::new(),
            env_remove: vec!["EMPEROR_ID".into(), "EMPEROR_VASSAL".into()],
            keep_fds: Vec::new(),
            log,
            user: None,
        };
        super::spawn::spawn(request)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match connect(&socket_path) {
                Ok(conn) => return Ok(Self { socket_path, conn }),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    /// Hands a copy of `fd` to the holder under `key`.
    pub fn put(&self, key: &str, fd: RawFd) -> io::Result<()> {
        send(self.conn.as_raw_fd(), format!("PUT {key}").as_bytes(), Some(fd))
    }

    /// Makes the holder close its copy of `key`.
    pub fn drop_key(&self, key: &str) -> io::Result<()> {
        send(self.conn.as_raw_fd(), format!("DROP {key}").as_bytes(), None)
    }

    /// Takes back a copy of every fd the holder keeps.
    pub fn list(&self) -> io::Result<Vec<(String, OwnedFd)>> {
        send(self.conn.as_raw_fd(), b"LIST", None)?;
        let mut out = Vec::new();
        loop {
            let (text, fd) = recv(self.conn.as_raw_fd())?;
            match (text.strip_prefix("FD "), fd) {
                (Some(key), Some(fd)) => out.push((key.to_owned(), fd)),
                _ if text == "END" => return Ok(out),
                _ => return Err(io::Error::other(format!("fd holder answered {text:?}"))),
            }
        }
    }

    /// Ends the holder (after every vassal has stopped).
    pub fn quit(self) {
        let _ = send(self.conn.as_raw_fd(), b"QUIT", None);
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

/// The key of one channel end: `control:<generation>:<name>` or `config:…`.
pub fn key(kind: &str, generation: u64, name: &str) -> String {
    format!("{kind}:{generation}:{name}")
}

/// Splits a key into kind, generation and name.
pub fn parse_key(key: &str) -> Option<(&str, u64, &str)> {
    let (kind, rest) = key.split_once(':')?;
    let (generation, name) = rest.split_once(':')?;
    Some((kind, generation.parse().ok()?, name))
}

/// Runs the holder itself (`emperor --fd-holder SOCKET`); returns when told to quit.
pub fn serve(socket_path: &Path) -> io::Result<()> {
    let listener = listen(socket_path)?;
    let mut held: HashMap<String, OwnedFd> = HashMap::new();
    loop {
        // SAFETY: accept4 on a listening socket we own; the result is a new fd we own.
        let conn = unsafe {
            libc::accept4(listener.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC)
        };
        if conn < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: accept4 returned a fresh fd.
        let conn = unsafe { OwnedFd::from_raw_fd(conn) };
        if serve_connection(&conn, &mut held) {
            let _ = std::fs::remove_file(socket_path);
            return Ok(());
        }
    }
}

/// Serves one emperor until it disconnects; `true` when it said QUIT.
fn serve_connection(conn: &OwnedFd, held: &mut HashMap<String, OwnedFd>) -> bool {
    loop {
        let Ok((text, fd)) = recv(conn.as_raw_fd()) else { return false };
        if text.is_empty() && fd.is_none() {
            return false; // the emperor went away
        }
        let (verb, arg) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        match (verb, fd) {
            ("PUT", Some(fd)) => {
                held.insert(arg.to_owned(), fd);
            }
            ("DROP", _) => {
                held.remove(arg);
            }
            ("LIST", _) => {
                for (key, fd) in held.iter() {
                    if send(conn.as_raw_fd(), format!("FD {key}").as_bytes(), Some(fd.as_raw_fd())).is_err() {
                        return false;
                    }
                }
                if send(conn.as_raw_fd(), b"END", None).is_err() {
                    return false;
                }
            }
            ("QUIT", _) => return true,
            _ => {}
        }
    }
}

fn sockaddr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::other(format!("socket path {} is too long", path.display())));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a new fd we own.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn connect(path: &Path) -> io::Result<OwnedFd> {
    let fd = socket()?;
    let (addr, len) = sockaddr(path)?;
    // SAFETY: addr is a valid sockaddr_un of `len` bytes.
    if unsafe { libc::connect(fd.as_raw_fd(), std::ptr::addr_of!(addr).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn listen(path: &Path) -> io::Result<OwnedFd> {
    let fd = socket()?;
    let (addr, len) = sockaddr(path)?;
    let _ = std::fs::remove_file(path);
    // SAFETY: addr is a valid sockaddr_un of `len` bytes.
    if unsafe { libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(addr).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain syscall on our socket.
    if unsafe { libc::listen(fd.as_raw_fd(), 4) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Sends one datagram, with `fd` attached when given.
fn send(sock: RawFd, data: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // Room for one fd's control message, aligned as cmsghdr requires.
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: the buffer is large enough for CMSG_SPACE(sizeof(int)) and aligned;
        // CMSG_FIRSTHDR/CMSG_DATA point inside it.
        unsafe {
            let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = space;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    // SAFETY: msg points at live buffers for the duration of the call.
    if unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one datagram and the fd attached to it, if any (close-on-exec).
fn recv(sock: RawFd) -> io::Result<(String, Option<OwnedFd>)> {
    let mut data = [0u8; MAX_MESSAGE];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: msg points at live buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fd = None;
    // SAFETY: the kernel filled msg_control; we walk it with the CMSG macros.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((String::from_utf8_lossy(&data[..n as usize]).into_owned(), fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn keys_round_trip() {
        let k = key("control", 7, "/opt/a:b/uwsgi.ini");
        assert_eq!(parse_key(&k), Some(("control", 7, "/opt/a:b/uwsgi.ini")));
        assert_eq!(parse_key("junk"), None);
    }

    #[test]
    fn the_holder_keeps_fds_across_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sock");
        let server_path = path.clone();
        let server = std::thread::spawn(move || serve(&server_path).unwrap());
        let deadline = Instant::now() + Duration::from_secs(5);
        let conn = loop {
            match connect(&path) {
                Ok(c) => break c,
                Err(e) => assert!(Instant::now() < deadline, "holder not listening: {e}"),
            }
            std::thread::yield_now();
        };
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let first = FdHolder { socket_path: path.clone(), conn };
        first.put("control:1:a.ini", ours.as_raw_fd()).unwrap();
        drop(ours);
        drop(first);
        // A new emperor connects and takes the copy back: the channel is still open.
        let second = FdHolder { socket_path: path.clone(), conn: connect(&path).unwrap() };
        let mut listed = second.list().unwrap();
        assert_eq!(listed.len(), 1);
        let (k, fd) = listed.pop().unwrap();
        assert_eq!(k, "control:1:a.ini");
        let mut back = UnixStream::from(fd);
        back.write_all(&[1]).unwrap();
        let mut byte = [0u8];
        theirs.read_exact(&mut byte).unwrap();
        assert_eq!(byte, [1]);
        second.drop_key("control:1:a.ini").unwrap();
        assert!(second.list().unwrap().is_empty());
        second.quit();
        server.join().unwrap();
    }
}
