//! `zmq://ENDPOINT`: the emperor binds a ZeroMQ PULL socket and applies the
//! upstream multipart commands `touch|destroy, NAME[, CONFIG[, UID[, GID[,
//! SOCKET]]]]`.
//!
//! Everything that arrives is untrusted: names go through
//! [`VassalName::parse`], paths must be absolute without `..`, sizes are
//! bounded, and every refused message is logged with what was wrong.

use super::{self as message, MessageError, Versioner, MAX_MESSAGE};
use crate::source::util::retry::Outage;
use crate::source::{Built, Resource, Source, SourceContext, SourceError, SourceEvent, SourceTask};
use reconciler::{SourceId, VassalName};
use std::path::PathBuf;
use zeromq::{PullSocket, Socket, SocketRecv};

/// Where the PULL socket binds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    /// `tcp://HOST:PORT` (HOST is an address; `*` became `0.0.0.0`).
    Tcp(String, u16),
    /// `ipc://PATH`.
    Ipc(PathBuf),
}

impl Endpoint {
    /// Parses the part after `zmq://`: `tcp://HOST:PORT`, `ipc://PATH`, or a
    /// bare `PORT`/`:PORT`/`HOST:PORT` (tcp). A missing host is loopback.
    fn parse(rest: &str) -> Result<Self, String> {
        if let Some(path) = rest.strip_prefix("ipc://") {
            if path.is_empty() || path.contains('\0') {
                return Err("ipc:// needs a socket path".into());
            }
            return Ok(Self::Ipc(crate::source::util::path::absolute(std::path::Path::new(path))));
        }
        let hostport = match rest.split_once("://") {
            Some(("tcp", hostport)) => hostport,
            Some((transport, _)) => return Err(format!("unsupported transport {transport:?} (use tcp:// or ipc://)")),
            None => rest,
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) => (host, port),
            None => ("", hostport),
        };
        let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
        let host = match host {
            "" => "127.0.0.1".to_owned(),
            "*" => "0.0.0.0".to_owned(),
            h if h.starts_with('[') && h.ends_with(']') => {
                h[1..h.len() - 1].parse::<std::net::Ipv6Addr>().map_err(|_| format!("bad IPv6 address {h:?}"))?;
                h.to_owned()
            }
            h => h
                .parse::<std::net::Ipv4Addr>()
                .map_err(|_| format!("bad address {h:?} (use an IP address)"))?
                .to_string(),
        };
        Ok(Self::Tcp(host, port))
    }

    fn url(&self) -> String {
        match self {
            Self::Tcp(host, port) => format!("tcp://{host}:{port}"),
            Self::Ipc(path) => format!("ipc://{}", path.display()),
        }
    }
}

/// A ZeroMQ PULL socket taking upstream emperor commands.
#[derive(Debug)]
pub struct ZmqSource {
    endpoint: Endpoint,
}

impl ZmqSource {
    /// Builds the source from the part after `zmq://`.
    pub fn from_uri(rest: &str) -> Result<Box<dyn Source>, SourceError> {
        let endpoint =
            Endpoint::parse(rest).map_err(|message| SourceError::Invalid { uri: format!("zmq://{rest}"), message })?;
        Ok(Box::new(Self { endpoint }))
    }
}

impl Source for ZmqSource {
    fn id(&self) -> SourceId {
        SourceId(format!("zmq://{}", self.endpoint.url()))
    }

    fn lists(&self) -> bool {
        false
    }

    fn resources(&self) -> Vec<Resource> {
        match &self.endpoint {
            Endpoint::Tcp(_, port) => vec![Resource::TcpPort(*port)],
            Endpoint::Ipc(path) => vec![Resource::Path(path.clone())],
        }
    }

    /// Binds the PULL socket (an error names the endpoint).
    fn build(&self, ctx: SourceContext) -> Built<'_> {
        Box::pin(async move {
            if let Endpoint::Ipc(path) = &self.endpoint {
                remove_stale_socket(path);
            }
            let mut socket = PullSocket::new();
            let bound = socket.bind(&self.endpoint.url()).await.map_err(|e| SourceError::Start {
                uri: ctx.id.0.clone(),
                message: format!("cannot bind {}: {e}", self.endpoint.url()),
            })?;
            tracing::info!(source = %ctx.id, endpoint = %bound, "zmq PULL socket bound");
            Ok(Box::pin(async move {
                Receiver::new(ctx).run(socket).await;
                Ok(())
            }) as SourceTask)
        })
    }
}

/// libzmq removes a leftover socket file before binding an ipc endpoint; so
/// do we, but only when it is a socket.
fn remove_stale_socket(path: &std::path::Path) {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// A parsed, validated command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Create or reload vassal `name`.
    Touch {
        /// The vassal.
        name: VassalName,
        /// Inline config, or the config file (`None`: file mode, see `path`).
        config: Option<Vec<u8>>,
        /// The config file when there is no config part.
        path: Option<PathBuf>,
        /// uid and gid parts, when given (tyrant mode runs the vassal as them).
        owner: Option<(u32, u32)>,
        /// On-demand socket, when given.
        socket: Option<String>,
    },
    /// Stop and forget vassal `name`.
    Destroy(VassalName),
}

/// Validates one multipart message.
pub(crate) fn parse_command(parts: &[&[u8]]) -> Result<Command, MessageError> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total > MAX_MESSAGE {
        return Err(MessageError::TooLarge(total));
    }
    if !(2..=6).contains(&parts.len()) {
        return Err(MessageError::PartCount(parts.len()));
    }
    let command = message::text(parts[0], "command part")?;
    let name = message::text(parts[1], "name part")?;
    let config = parts.get(2).filter(|c| !c.is_empty());
    // Without a config the name is a config file path (as upstream).
    let named = |name: &str| match name.starts_with('/') {
        true => message::checked_path(name),
        false => Ok((PathBuf::new(), VassalName::parse(name)?)),
    };
    match command {
        "destroy" => Ok(Command::Destroy(named(name)?.1)),
        "touch" => {
            let (name, path) = match config {
                Some(_) => (VassalName::parse(name)?, None),
                None => {
                    let (path, name) = message::checked_path(name)?;
                    (name, Some(path))
                }
            };
            if let Some(c) = config {
                if c.len() > message::MAX_CONFIG {
                    return Err(MessageError::ConfigTooLarge(c.len()));
                }
                message::text(c, "config")?;
            }
            let id = |i: usize, what: &'static str| -> Result<Option<u32>, MessageError> {
                match parts.get(i).filter(|p| !p.is_empty()) {
                    None => Ok(None),
                    Some(p) => {
                        let t = message::text(p, what)?;
                        t.parse().map(Some).map_err(|_| MessageError::BadId(what, t.chars().take(32).collect()))
                    }
                }
            };
            let owner = match (id(3, "uid")?, id(4, "gid")?) {
                (Some(uid), Some(gid)) => Some((uid, gid)),
                (None, None) => None,
                _ => return Err(MessageError::HalfOwner),
            };
            let socket = match parts.get(5).filter(|p| !p.is_empty()) {
                None => None,
                Some(p) => {
                    let s = message::text(p, "socket part")?;
                    if s.len() > 255 || s.contains('\0') || s.trim().is_empty() {
                        return Err(MessageError::BadSocket(s.chars().take(64).collect()));
                    }
                    Some(s.to_owned())
                }
            };
            Ok(Command::Touch { name, config: config.map(|c| c.to_vec()), path, owner, socket })
        }
        other => Err(MessageError::UnknownCommand(other.chars().take(64).collect())),
    }
}

/// Turns received messages into events.
struct Receiver {
    ctx: SourceContext,
    versions: Versioner,
}

impl Receiver {
    fn new(ctx: SourceContext) -> Self {
        Self { ctx, versions: Versioner::new() }
    }

    async fn run(mut self, mut socket: PullSocket) {
        let mut outage = Outage::new(self.ctx.id.clone());
        loop {
            let msg = tokio::select! {
                msg = socket.recv() => msg,
                () = self.ctx.events.closed() => return,
            };
            match msg {
                Ok(msg) => {
                    outage.ok();
                    let parts: Vec<&[u8]> = msg.iter().map(|f| f.as_ref()).collect();
                    if !self.handle(&parts).await {
                        return;
                    }
                }
                // Do not spin on a persistent error.
                Err(e) => tokio::time::sleep(outage.failed("receiving on the zmq socket failed", &e)).await,
            }
        }
    }

    /// Applies one message; `false` once the emperor is shutting down.
    async fn handle(&mut self, parts: &[&[u8]]) -> bool {
        let command = match parse_command(parts) {
            Ok(c) => c,
            Err(error) => {
                let first = parts.first().map_or_else(String::new, |p| message::excerpt(p));
                let name = parts.get(1).map_or_else(String::new, |p| message::excerpt(p));
                tracing::warn!(source = %self.ctx.id, %error, command = %first, vassal = %name, "zmq message refused");
                return true;
            }
        };
        let event = match command {
            Command::Destroy(name) => {
                tracing::info!(source = %self.ctx.id, vassal = %name, "zmq destroy");
                message::remove(&self.ctx.id, name)
            }
            Command::Touch { name, config, path, owner, socket } => {
                let spec = match (config, path) {
                    (Some(config), _) => {
                        message::inline_upsert(&self.ctx.id, name.clone(), &config, &mut self.versions)
                    }
                    (None, Some(path)) => match crate::source::util::path::file_version(&path) {
                        Ok(Some(v)) => {
                            let version = self.versions.next(v.as_bytes());
                            Ok(message::file_spec(&self.ctx.id, name.clone(), path, version))
                        }
                        Ok(None) => {
                            tracing::warn!(source = %self.ctx.id, vassal = %name, path = %path.display(), "zmq touch refused: the config path is not a regular file");
                            return true;
                        }
                        Err(e) => {
                            tracing::warn!(source = %self.ctx.id, vassal = %name, path = %path.display(), error = %e, "zmq touch refused: cannot read the config file");
                            return true;
                        }
                    },
                    (None, None) => unreachable!("parse_command gives a path when there is no config"),
                };
                match spec {
                    Ok(mut spec) => {
                        spec.socket = socket;
                        spec.owner = owner;
                        tracing::info!(source = %self.ctx.id, vassal = %spec.name, version = %spec.version, "zmq touch");
                        SourceEvent::Upsert(spec)
                    }
                    Err(error) => {
                        tracing::warn!(source = %self.ctx.id, vassal = %name, %error, "zmq touch refused");
                        return true;
                    }
                }
            }
        };
        self.ctx.send(event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconciler::NameError;

    #[test]
    fn endpoints() {
        let tcp = |h: &str, p| Ok(Endpoint::Tcp(h.into(), p));
        assert_eq!(Endpoint::parse("tcp://127.0.0.1:5250"), tcp("127.0.0.1", 5250));
        assert_eq!(Endpoint::parse("tcp://*:5250"), tcp("0.0.0.0", 5250));
        assert_eq!(Endpoint::parse("tcp://0.0.0.0:5250"), tcp("0.0.0.0", 5250));
        assert_eq!(Endpoint::parse("tcp://:5250"), tcp("127.0.0.1", 5250));
        assert_eq!(Endpoint::parse("5250"), tcp("127.0.0.1", 5250));
        assert_eq!(Endpoint::parse(":5250"), tcp("127.0.0.1", 5250));
        assert_eq!(Endpoint::parse("tcp://[::1]:5250"), tcp("[::1]", 5250));
        assert_eq!(Endpoint::parse("ipc:///run/emperor.sock"), Ok(Endpoint::Ipc("/run/emperor.sock".into())));
        for bad in ["tcp://host.example:1", "tcp://1.2.3.4", "inproc://x", "ipc://", "tcp://1.2.3.4:99999", "x"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        let src = ZmqSource::from_uri("5250").unwrap();
        assert_eq!(src.id().0, "zmq://tcp://127.0.0.1:5250");
    }

    fn name(s: &str) -> VassalName {
        VassalName::parse(s).unwrap()
    }

    #[test]
    fn well_formed_commands() {
        let touch = parse_command(&[b"touch", b"a.ini", b"[uwsgi]\n"]).unwrap();
        assert_eq!(
            touch,
            Command::Touch {
                name: name("a.ini"),
                config: Some(b"[uwsgi]\n".to_vec()),
                path: None,
                owner: None,
                socket: None
            }
        );
        // Five parts (no socket) is the documented tyrant form.
        let Command::Touch { owner, socket, .. } =
            parse_command(&[b"touch", b"a.ini", b"x", b"1000", b"1001"]).unwrap()
        else {
            panic!("touch")
        };
        assert_eq!((owner, socket), (Some((1000, 1001)), None));
        let Command::Touch { socket, .. } = parse_command(&[b"touch", b"a.ini", b"x", b"", b"", b"/tmp/s"]).unwrap()
        else {
            panic!("touch")
        };
        assert_eq!(socket.as_deref(), Some("/tmp/s"));
        let Command::Touch { name: n, path, config, .. } = parse_command(&[b"touch", b"/etc/v/b.ini"]).unwrap() else {
            panic!("touch")
        };
        assert_eq!((n, path, config), (name("b.ini"), Some("/etc/v/b.ini".into()), None));
        assert_eq!(parse_command(&[b"destroy", b"a.ini"]).unwrap(), Command::Destroy(name("a.ini")));
        assert_eq!(parse_command(&[b"destroy", b"/etc/v/a.ini"]).unwrap(), Command::Destroy(name("a.ini")));
    }

    #[test]
    fn hostile_commands() {
        let err = |parts: &[&[u8]]| parse_command(parts).unwrap_err();
        assert!(matches!(err(&[b"touch", b"../evil.ini", b"x"]), MessageError::Name(NameError::Unsafe(_))));
        assert!(matches!(err(&[b"touch", b"a/b.ini", b"x"]), MessageError::Name(NameError::Unsafe(_))));
        assert!(matches!(err(&[b"touch", b"a\0.ini", b"x"]), MessageError::Name(NameError::Unsafe(_))));
        let long = format!("{}.ini", "a".repeat(300));
        assert!(matches!(err(&[b"touch", long.as_bytes(), b"x"]), MessageError::Name(NameError::TooLong(_))));
        assert!(matches!(err(&[b"touch", b"a.sh", b"x"]), MessageError::Name(NameError::BadExtension(_))));
        assert_eq!(err(&[b"launch", b"a.ini", b"x"]), MessageError::UnknownCommand("launch".into()));
        assert_eq!(err(&[b"touch"]), MessageError::PartCount(1));
        assert_eq!(err(&[b"touch", b"a.ini", b"x", b"", b"", b"", b"extra"]), MessageError::PartCount(7));
        assert_eq!(err(&[b"touch", b"\xffa.ini", b"x"]), MessageError::NotUtf8("name part"));
        assert_eq!(err(&[b"touch", b"a.ini", b"\xff"]), MessageError::NotUtf8("config"));
        assert!(matches!(err(&[b"touch", b"a.ini", b"x", b"root"]), MessageError::BadId("uid", _)));
        assert_eq!(err(&[b"touch", b"a.ini", b"x", b"1000"]), MessageError::HalfOwner);
        assert_eq!(err(&[b"touch", b"a.ini", b"x", b"", b"1000"]), MessageError::HalfOwner);
        assert!(matches!(err(&[b"touch", b"a.ini"]), MessageError::BadPath(_)), "no config: needs an absolute path");
        assert!(matches!(err(&[b"touch", b"/etc/../x/a.ini"]), MessageError::BadPath(_)));
        let big = vec![b'x'; message::MAX_CONFIG + 1];
        assert_eq!(err(&[b"touch", b"a.ini", &big]), MessageError::ConfigTooLarge(big.len()));
        let huge = vec![b'x'; MAX_MESSAGE + 1];
        assert_eq!(err(&[b"touch", b"a.ini", &huge]), MessageError::TooLarge(huge.len() + 10));
    }
}
