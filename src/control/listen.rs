//! The listening sockets of the read-only status servers (`--http` and
//! `--stats`): a TCP address (`HOST:PORT`) or a Unix socket path.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many connections one server answers at once; more are closed at
/// once, so that a flood of idle clients cannot exhaust the emperor's fds.
const MAX_CONNECTIONS: usize = 64;

/// A connection, TCP or Unix.
pub(crate) trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// Why a status server could not listen.
#[derive(Debug, thiserror::Error)]
#[error("{server}: cannot listen on {addr}: {source}")]
pub struct ListenError {
    /// The flag that asked for it (`--http`, `--stats`).
    pub server: &'static str,
    /// The address as given.
    pub addr: String,
    /// What failed.
    pub source: std::io::Error,
}

/// A bound listening socket.
#[derive(Debug)]
pub struct Listener {
    server: &'static str,
    kind: Kind,
    slots: Arc<Semaphore>,
}

#[derive(Debug)]
enum Kind {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Listens on `addr` for the server named `server`: a Unix socket when
    /// `addr` holds a `/` (a stale socket file is replaced), else a TCP
    /// address. A TCP address other than loopback logs a warning: the
    /// status says which programs run on this host.
    pub async fn bind(server: &'static str, addr: &str) -> Result<Self, ListenError> {
        let error = |source| ListenError { server, addr: addr.to_owned(), source };
        let kind = if addr.contains('/') {
            let path = PathBuf::from(addr);
            if std::fs::symlink_metadata(&path).is_ok() && std::os::unix::net::UnixStream::connect(&path).is_err() {
                std::fs::remove_file(&path).map_err(error)?;
            }
            Kind::Unix(UnixListener::bind(&path).map_err(error)?, path)
        } else {
            let listener = TcpListener::bind(addr).await.map_err(error)?;
            let local = listener.local_addr().map_err(error)?;
            if !local.ip().is_loopback() {
                tracing::warn!(server, addr = %local, "listening beyond this host: anyone who can connect sees every vassal");
            }
            Kind::Tcp(listener)
        };
        Ok(Self { server, kind, slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)) })
    }

    /// Where it listens: `HOST:PORT` (the port the system chose, for port
    /// 0) or the socket's path.
    pub fn local_addr(&self) -> String {
        match &self.kind {
            Kind::Tcp(listener) => listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
            Kind::Unix(_, path) => path.display().to_string(),
        }
    }

    /// Answers every connection with `answer`, each on a task of its own
    /// that may take `deadline` at most, until the task is dropped.
    pub(crate) async fn serve<F, A>(self, deadline: Duration, answer: F)
    where
        F: Fn(Box<dyn Connection>) -> A,
        A: std::future::Future<Output = ()> + Send + 'static,
    {
        loop {
            let (stream, permit) = self.accept().await;
            let answering = answer(stream);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(deadline, answering).await;
                drop(permit);
            });
        }
    }

    /// The next connection, with the slot it holds until it is dropped.
    async fn accept(&self) -> (Box<dyn Connection>, OwnedSemaphorePermit) {
        loop {
            let accepted = match &self.kind {
                Kind::Tcp(listener) => listener.accept().await.map(|(s, _)| Box::new(s) as Box<dyn Connection>),
                Kind::Unix(listener, _) => listener.accept().await.map(|(s, _)| Box::new(s) as Box<dyn Connection>),
            };
            match accepted {
                Ok(stream) => match self.slots.clone().try_acquire_owned() {
                    Ok(permit) => return (stream, permit),
                    Err(_) => tracing::debug!(server = self.server, "too many connections; one closed"),
                },
                Err(e) => {
                    tracing::warn!(server = self.server, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Kind::Unix(_, path) = &self.kind {
            let _ = std::fs::remove_file(path);
        }
    }
}
