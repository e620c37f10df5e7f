//! What the message sources (`amqp://`, `zmq://`) share: turning one
//! untrusted message into a [`SourceEvent`], with the size limits and the
//! name and path checks that keep a hostile sender from spawning anything
//! outside the rules.

pub mod amqp;
pub mod zmq;

use crate::source::util::hash::fnv1a;
use crate::source::SourceEvent;
use reconciler::{ConfigRef, NameError, SourceId, VassalName, VassalSpec};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest whole message accepted (all parts together), in bytes.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Largest config accepted: the uWSGI config channel carries a 16-bit size.
pub const MAX_CONFIG: usize = 65_535;

/// Longest config path accepted in a message (the Linux `PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// Why a message was refused. Each variant names what was wrong so the
/// warning logged for it tells the sender what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The whole message is larger than [`MAX_MESSAGE`].
    #[error("message of {0} bytes is larger than the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    /// A config is larger than [`MAX_CONFIG`].
    #[error("config of {0} bytes is larger than the {MAX_CONFIG}-byte limit of the config channel")]
    ConfigTooLarge(usize),
    /// A part that must be text is not UTF-8.
    #[error("the {0} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// The vassal name is refused (a path separator, `..`, NUL, too long) or has no config extension.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A config path is not absolute, holds `..` or NUL, or is too long.
    #[error("config path {0:?} must be an absolute path without '..' or NUL, at most {MAX_PATH} bytes")]
    BadPath(String),
    /// A message with the wrong number of parts.
    #[error("message has {0} part(s); expected 2 to 6 (command, name[, config[, uid[, gid[, socket]]]])")]
    PartCount(usize),
    /// A command other than `touch` or `destroy`.
    #[error("unknown command {0:?} (expected \"touch\" or \"destroy\")")]
    UnknownCommand(String),
    /// A uid or gid part that is not a decimal number.
    #[error("{0} part {1:?} is not a decimal number")]
    BadId(&'static str, String),
    /// A uid part without a gid part, or the reverse.
    #[error("the uid and gid parts must be given together")]
    HalfOwner,
    /// An on-demand socket part that cannot be a socket address.
    #[error("socket part {0:?} is empty, holds NUL or is longer than 255 bytes")]
    BadSocket(String),
    /// A body that is neither an absolute path nor an `http://` URL.
    #[error("body {0:?} is neither an absolute config path nor an http:// URL")]
    NotAPath(String),
}

/// Hands out versions for message-borne configs: every message is a new
/// version, even with identical content, and versions never repeat across
/// restarts of the emperor (they start with the source's start time).
#[derive(Debug)]
pub struct Versioner {
    epoch: u128,
    counter: u64,
}

impl Default for Versioner {
    fn default() -> Self {
        Self::new()
    }
}

impl Versioner {
    /// A versioner whose versions all differ from those of earlier runs.
    pub fn new() -> Self {
        let epoch = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self { epoch, counter: 0 }
    }

    /// The next version for content `bytes`.
    pub fn next(&mut self, bytes: &[u8]) -> String {
        self.counter += 1;
        format!("m{:x}.{}.{:016x}", self.epoch, self.counter, fnv1a(bytes))
    }
}

/// `bytes` as text, or the error naming `what`.
pub fn text<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a str, MessageError> {
    std::str::from_utf8(bytes).map_err(|_| MessageError::NotUtf8(what))
}

/// An upsert of vassal `name` with the inline config `config`.
pub fn inline_upsert(
    source: &SourceId,
    name: VassalName,
    config: &[u8],
    versions: &mut Versioner,
) -> Result<VassalSpec, MessageError> {
    if config.len() > MAX_CONFIG {
        return Err(MessageError::ConfigTooLarge(config.len()));
    }
    let text = text(config, "config")?.to_owned();
    let version = versions.next(config);
    Ok(VassalSpec { name, source: source.clone(), config: ConfigRef::Inline(text), version, owner: None, socket: None })
}

/// Checks an untrusted config path (absolute, no `..`, no NUL, bounded) and
/// returns it with the vassal name its file name gives.
pub fn checked_path(path: &str) -> Result<(PathBuf, VassalName), MessageError> {
    let bad = || MessageError::BadPath(path.chars().take(256).collect());
    if path.len() > MAX_PATH || path.contains('\0') || !path.starts_with('/') {
        return Err(bad());
    }
    let p = Path::new(path);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(bad());
    }
    let file_name = p.file_name().and_then(|n| n.to_str()).ok_or_else(bad)?;
    let name = VassalName::parse(file_name)?;
    Ok((p.to_owned(), name))
}

/// A file-backed spec of `name` at `path`.
pub fn file_spec(source: &SourceId, name: VassalName, path: PathBuf, version: String) -> VassalSpec {
    VassalSpec { name, source: source.clone(), config: ConfigRef::File(path), version, owner: None, socket: None }
}

/// The event that removes vassal `name` of `source`.
pub fn remove(source: &SourceId, name: VassalName) -> SourceEvent {
    SourceEvent::Remove { source: source.clone(), name }
}

/// A short, printable excerpt of untrusted bytes for log lines.
pub fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
    match bytes.len() > 80 {
        true => format!("{text:?}…"),
        false => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_differ_per_message_and_per_run() {
        let mut a = Versioner::new();
        let v1 = a.next(b"x");
        let v2 = a.next(b"x");
        assert_ne!(v1, v2, "the same content sent twice is a new version");
        let mut b = Versioner { epoch: a.epoch + 1, counter: 0 };
        let mut c = Versioner { epoch: a.epoch, counter: 0 };
        assert_ne!(b.next(b"x"), c.next(b"x"), "a restarted source never repeats a version");
    }

    #[test]
    fn paths_must_be_absolute_and_safe() {
        let (p, n) = checked_path("/etc/vassals/app.ini").unwrap();
        assert_eq!((p.to_str().unwrap(), n.as_str()), ("/etc/vassals/app.ini", "app.ini"));
        for bad in ["app.ini", "./app.ini", "/etc/../app.ini", "/etc/a\0.ini", "/", ""] {
            assert!(matches!(checked_path(bad), Err(MessageError::BadPath(_))), "{bad:?}");
        }
        assert!(matches!(checked_path("/etc/app.sh"), Err(MessageError::Name(NameError::BadExtension(_)))));
        let long = format!("/x/{}.ini", "a".repeat(300));
        assert!(matches!(checked_path(&long), Err(MessageError::Name(NameError::TooLong(_)))));
    }

    #[test]
    fn inline_configs_are_bounded_text() {
        let src = SourceId("zmq://x".into());
        let name = VassalName::parse("a.ini").unwrap();
        let mut v = Versioner::new();
        let spec = inline_upsert(&src, name.clone(), b"[uwsgi]\n", &mut v).unwrap();
        assert_eq!(spec.config, ConfigRef::Inline("[uwsgi]\n".into()));
        let big = vec![b'x'; MAX_CONFIG + 1];
        assert_eq!(inline_upsert(&src, name.clone(), &big, &mut v), Err(MessageError::ConfigTooLarge(MAX_CONFIG + 1)));
        assert_eq!(inline_upsert(&src, name, b"\xff", &mut v), Err(MessageError::NotUtf8("config")));
    }
}
