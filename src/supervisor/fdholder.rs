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

use crate::sys::scm;
use std::collections::HashMap;
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
            env_remove: vec!["EMPEROR_ID".into(), "EMPEROR_VASSAL".into()],
            keep_fds: Vec::new(),
            log,
            user: None,
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

    /// Makes the holder close its copy of `key`.
    pub fn drop_key(&self, key: &str) -> io::Result<()> {
        send(self.conn.as_fd(), format!("DROP {key}").as_bytes(), None)
    }

    /// Makes the holder close its copies of both channel ends of generation
    /// `generation` of the vassal `name`.
    pub fn release(&self, name: &str, generation: u64) {
        for kind in ["control", "config"] {
            let _ = self.drop_key(&key(kind, generation, name));
        }
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
pub fn serve(socket_path: &Path) -> io::Result<()> {
    let listener = scm::listen(socket_path)?;
    let mut held: HashMap<String, OwnedFd> = HashMap::new();
    loop {
        let conn = scm::accept(listener.as_fd())?;
        if serve_connection(&conn, &mut held) {
            let _ = std::fs::remove_file(socket_path);
            return Ok(());
        }
    }
}

/// Serves one emperor until it disconnects; `true` when it said QUIT.
fn serve_connection(conn: &OwnedFd, held: &mut HashMap<String, OwnedFd>) -> bool {
    loop {
        let Ok((text, fd)) = recv(conn.as_fd()) else { return false };
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
                    if send(conn.as_fd(), format!("FD {key}").as_bytes(), Some(fd.as_fd())).is_err() {
                        return false;
                    }
                }
                if send(conn.as_fd(), b"END", None).is_err() {
                    return false;
                }
            }
            ("QUIT", _) => return true,
            _ => {}
        }
    }
}

fn connect(path: &Path) -> io::Result<OwnedFd> {
    scm::connect(path)
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
