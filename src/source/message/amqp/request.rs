//! What one amqp message asks for, decided from its routing key and body
//! alone, before any file is read or URL fetched: the untrusted part of the
//! protocol, kept pure so that it can be fuzzed.

use super::super::{self as message, MessageError, MAX_MESSAGE};
use reconciler::VassalName;
use std::path::PathBuf;

/// The request of one message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    /// A named vassal with its config in the body.
    Inline {
        /// The vassal (the routing key).
        name: VassalName,
        /// Its config, not yet checked.
        config: &'a [u8],
    },
    /// A named vassal with an empty body: remove it.
    Remove(VassalName),
    /// A config file to read; the vassal is named by its file name.
    File {
        /// The absolute, checked path.
        path: PathBuf,
        /// The vassal.
        name: VassalName,
    },
    /// An `http://` URL to fetch.
    Fetch(&'a str),
}

/// Classifies a message: routing key → inline config or removal; empty key →
/// a config path or an `http://` URL in the body.
pub(crate) fn classify<'a>(routing_key: &str, body: &'a [u8]) -> Result<Request<'a>, MessageError> {
    if body.len() > MAX_MESSAGE {
        return Err(MessageError::TooLarge(body.len()));
    }
    if !routing_key.is_empty() {
        let name = VassalName::parse(routing_key)?;
        return Ok(match body.is_empty() {
            true => Request::Remove(name),
            false => Request::Inline { name, config: body },
        });
    }
    let text = message::text(body, "body")?.trim();
    if text.starts_with("http://") {
        return Ok(Request::Fetch(text));
    }
    if !text.starts_with('/') {
        return Err(MessageError::NotAPath(text.chars().take(256).collect()));
    }
    let (path, name) = message::checked_path(text)?;
    Ok(Request::File { path, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> VassalName {
        VassalName::parse(text).unwrap()
    }

    #[test]
    fn each_kind_of_message() {
        assert_eq!(classify("a.ini", b"x").unwrap(), Request::Inline { name: name("a.ini"), config: b"x" });
        assert_eq!(classify("a.ini", b"").unwrap(), Request::Remove(name("a.ini")));
        assert_eq!(
            classify("", b" /etc/v/b.ini\n").unwrap(),
            Request::File { path: "/etc/v/b.ini".into(), name: name("b.ini") }
        );
        assert_eq!(classify("", b"http://h/c.ini").unwrap(), Request::Fetch("http://h/c.ini"));
    }

    #[test]
    fn hostile_messages_are_refused() {
        assert!(matches!(classify("../x", b"a"), Err(MessageError::Name(_))));
        assert!(matches!(classify("", b"etc/x.ini"), Err(MessageError::NotAPath(_))));
        assert!(matches!(classify("", b"/etc/../x.ini"), Err(MessageError::BadPath(_))));
        assert!(matches!(classify("", &[0xff, 0xfe]), Err(MessageError::NotUtf8(_))));
        assert!(matches!(classify("a", &vec![b'x'; MAX_MESSAGE + 1]), Err(MessageError::TooLarge(_))));
    }
}
