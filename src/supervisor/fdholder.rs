//! The fd holder: a tiny long-lived process that keeps a copy of the
//! emperor's end of every uWSGI control and config channel.
//!
//! A uWSGI vassal exits when its control channel hits EOF, which happens
//! when every copy of the emperor's end is closed. With a copy held here, an
//! emperor that crashes (or exits for an upgrade) leaves its uWSGI vassals
//! running; the next emperor takes the copies back and talks to them again.
//! The read ends of the vassals' log pipes (with log rotation on) are held
//! the same way, so that a vassal writing its output never gets EPIPE.
//!
//! Protocol: a `SOCK_SEQPACKET` unix socket in the state dir; one datagram
//! per message, fds passed with `SCM_RIGHTS`:
//! `PUT <key>` + fd, `DROP <key>`, `LIST` → `FD <key>` + fd … `END`, `QUIT`,
//! and for singletons `WATCH <deadline ns> <pid> <name>` + pidfd and
//! `UNWATCH <name>` (see [`watchdog`](super::watchdog)).

use super::watchdog::Watchdog;
use crate::sys::{peer, scm};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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
        let request = crate::sys::spawn::SpawnRequest {
            program: exe.to_string_lossy().into_owned(),
            args: vec!["--fd-holder".into(), socket_path.to_string_lossy().into_owned()],
            cwd: Some("/".into()),
            env: Vec::new(),
            env_remove: ["EMPEROR_ID", "EMPEROR_VASSAL"]
                .into_iter()
                .chain(super::withheld_variables())
                .map(str::to_owned)
                .collect(),
            moved_fds: Vec::new(),
            log,
            user: None,
            umask: None,
        };
        crate::sys::spawn::spawn(request)?;
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
    pub fn put(&self, key: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
        send(self.conn.as_fd(), format!("PUT {key}").as_bytes(), Some(fd))
    }

    /// Makes the holder kill the singleton `name` (its process `pid`,
    /// `pidfd`) at `deadline_ns` of CLOCK_MONOTONIC, unless told a later one.
    pub fn watch(&self, name: &str, pid: i32, deadline_ns: u64, pidfd: BorrowedFd<'_>) -> io::Result<()> {
        let text = super::watchdog::watch_message(name, pid, deadline_ns);
        send(self.conn.as_fd(), text.as_bytes(), Some(pidfd))
    }

    /// Ends the watch of the singleton `name`.
    pub fn unwatch(&self, name: &str) -> io::Result<()> {
        send(self.conn.as_fd(), format!("UNWATCH {name}").as_bytes(), None)
    }

    /// Makes the holder close its copy of `key`.
    pub fn drop_key(&self, key: &str) -> io::Result<()> {
        send(self.conn.as_fd(), format!("DROP {key}").as_bytes(), None)
    }

    /// The holder's process id (the kernel's record of the peer).
    pub fn pid(&self) -> io::Result<i32> {
        Ok(peer::credentials(&self.conn)?.pid)
    }

    /// Takes back a copy of every fd the holder keeps.
    pub fn list(&self) -> io::Result<Vec<(String, OwnedFd)>> {
        send(self.conn.as_fd(), b"LIST", None)?;
        let mut out = Vec::new();
        loop {
            let (text, fd) = recv(self.conn.as_fd())?;
            match (text.strip_prefix("FD "), fd) {
                (Some(key), Some(fd)) => out.push((key.to_owned(), fd)),
                _ if text == "END" => return Ok(out),
                _ => return Err(io::Error::other(format!("fd holder answered {text:?}"))),
            }
        }
    }

    /// Ends the holder (after every vassal has stopped).
    pub fn quit(self) {
        let _ = send(self.conn.as_fd(), b"QUIT", None);
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
///
/// Only the emperor's own uid (and root) may connect: the kernel's record of
/// each peer (`SO_PEERCRED`) is checked whatever the socket file's mode,
/// and a refused uid is logged once. One emperor is served at a time; a
/// second one waits its turn, while refusals are answered at once.
pub fn serve(socket_path: &Path) -> io::Result<()> {
    let listener = scm::listen(socket_path)?;
    let mut held: HashMap<String, OwnedFd> = HashMap::new();
    let mut waiting: VecDeque<OwnedFd> = VecDeque::new();
    let mut refused: HashSet<u32> = HashSet::new();
    let mut current: Option<OwnedFd> = None;
    let mut watchdog = Watchdog::default();
    loop {
        if current.is_none() {
            current = waiting.pop_front();
        }
        let mut fds = vec![listener.as_fd()];
        fds.extend(current.as_ref().map(|c| c.as_fd()));
        let ready = scm::wait_readable_for(&fds, watchdog.timeout())?;
        watchdog.fire();
        if ready[0] {
            let conn = scm::accept(listener.as_fd())?;
            if admit(&conn, &mut refused) {
                waiting.push_back(conn);
            }
        }
        if ready.get(1).copied().unwrap_or(false) {
            let conn = current.as_ref().expect("polled with a connection");
            match serve_message(conn, &mut held, &mut watchdog) {
                Flow::Next => {}
                Flow::Closed => current = None,
                Flow::Quit => {
                    let _ = std::fs::remove_file(socket_path);
                    return Ok(());
                }
            }
        }
    }
}

/// Whether the peer of `conn` may use the holder; a refused uid is logged
/// the first time only, so that a local user cannot flood the log.
fn admit(conn: &OwnedFd, refused: &mut HashSet<u32>) -> bool {
    match peer::credentials(conn) {
        Ok(cred) if peer::is_trusted(cred.uid) => true,
        Ok(cred) => {
            if refused.insert(cred.uid) {
                tracing::warn!(uid = cred.uid, pid = cred.pid, "fd holder: connection refused: not the emperor's uid");
            }
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "fd holder: connection refused: peer credentials unknown");
            false
        }
    }
}

/// What became of a connection after one message.
enum Flow {
    /// It stays open.
    Next,
    /// The emperor went away.
    Closed,
    /// The emperor said QUIT.
    Quit,
}

/// Serves one message of the connected emperor.
fn serve_message(conn: &OwnedFd, held: &mut HashMap<String, OwnedFd>, watchdog: &mut Watchdog) -> Flow {
    let Ok((text, fd)) = recv(conn.as_fd()) else { return Flow::Closed };
    if text.is_empty() && fd.is_none() {
        return Flow::Closed;
    }
    let (verb, arg) = text.split_once(' ').unwrap_or((text.as_str(), ""));
    match (verb, fd) {
        ("PUT", Some(fd)) => {
            held.insert(arg.to_owned(), fd);
        }
        ("DROP", _) => {
            held.remove(arg);
        }
        ("WATCH", Some(pidfd)) => watchdog.watch(arg, pidfd),
        ("UNWATCH", _) => watchdog.unwatch(arg),
        ("LIST", _) => {
            for (key, fd) in held.iter() {
                if send(conn.as_fd(), format!("FD {key}").as_bytes(), Some(fd.as_fd())).is_err() {
                    return Flow::Closed;
                }
            }
            if send(conn.as_fd(), b"END", None).is_err() {
                return Flow::Closed;
            }
        }
        ("QUIT", _) => return Flow::Quit,
        _ => {}
    }
    Flow::Next
}

/// Connects to the holder at `path`, refusing one run by another user.
fn connect(path: &Path) -> io::Result<OwnedFd> {
    let conn = scm::connect(path)?;
    let cred = peer::credentials(&conn)?;
    if !peer::is_trusted(cred.uid) {
        let message = format!("the fd holder on {} runs as uid {}", path.display(), cred.uid);
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, message));
    }
    Ok(conn)
}

/// Sends one datagram, with `fd` attached when given.
fn send(sock: BorrowedFd<'_>, data: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    scm::send(sock, data, fd)
}

/// Receives one datagram and the fd attached to it, if any (close-on-exec).
fn recv(sock: BorrowedFd<'_>) -> io::Result<(String, Option<OwnedFd>)> {
    let mut data = [0u8; MAX_MESSAGE];
    let (n, fd) = scm::recv(sock, &mut data)?;
    Ok((String::from_utf8_lossy(&data[..n]).into_owned(), fd))
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
        first.put("control:1:a.ini", ours.as_fd()).unwrap();
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
