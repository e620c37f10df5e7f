//! Socket addresses as sources and configs write them: `HOST:PORT`,
//! `:PORT` (every interface, as upstream), `[IPv6]:PORT`, or an absolute
//! unix socket path.

use reconciler::VassalName;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Where a socket the emperor holds for a vassal listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SocketAddress {
    /// TCP; an empty host means every IPv4 interface.
    Tcp {
        /// Host name or address (brackets of an IPv6 address removed).
        host: String,
        /// Port.
        port: u16,
    },
    /// A unix socket file.
    Unix(PathBuf),
}

/// An address that cannot be used, or a socket that cannot be bound.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// The text is not an address.
    #[error("{vassal}: bad socket address {address:?}: {reason}")]
    Invalid {
        /// The vassal that asked for it.
        vassal: VassalName,
        /// The address as written.
        address: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The address could not be bound.
    #[error("{vassal}: cannot listen on {address}: {source}")]
    Bind {
        /// The vassal that asked for it.
        vassal: VassalName,
        /// The address as written.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl SocketAddress {
    /// Parses `text` as `vassal`'s socket address.
    pub fn parse(vassal: &VassalName, text: &str) -> Result<Self, AddressError> {
        let invalid = |reason| AddressError::Invalid { vassal: vassal.clone(), address: text.to_owned(), reason };
        let text = text.trim();
        if text.starts_with('/') {
            return match text.contains('\0') {
                true => Err(invalid("a NUL byte in the path")),
                false => Ok(SocketAddress::Unix(text.into())),
            };
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(|| invalid("expected HOST:PORT, :PORT or /path.sock"))?;
        let port = port.parse::<u16>().map_err(|_| invalid("the port is not a number from 0 to 65535"))?;
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6,
            None if host.contains(':') => return Err(invalid("an IPv6 address goes in brackets: [::1]:PORT")),
            None => host,
        };
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("the host contains a space or a control character"));
        }
        Ok(SocketAddress::Tcp { host: host.to_owned(), port })
    }

    /// Binds and listens on this address, for `vassal` (`text` is the
    /// address as written, for the error).
    pub fn listen(&self, vassal: &VassalName, text: &str) -> Result<OwnedFd, AddressError> {
        let bound = match self {
            SocketAddress::Tcp { host, port } => crate::sys::socket::listen_tcp(host, *port),
            SocketAddress::Unix(path) => crate::sys::socket::listen_unix(path),
        };
        bound.map_err(|source| AddressError::Bind { vassal: vassal.clone(), address: text.to_owned(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SocketAddress, String> {
        SocketAddress::parse(&VassalName::parse("app.ini").unwrap(), text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_three_forms() {
        assert_eq!(parse("127.0.0.1:8000"), Ok(SocketAddress::Tcp { host: "127.0.0.1".into(), port: 8000 }));
        assert_eq!(parse(":3031"), Ok(SocketAddress::Tcp { host: String::new(), port: 3031 }));
        assert_eq!(parse("[::1]:80"), Ok(SocketAddress::Tcp { host: "::1".into(), port: 80 }));
        assert_eq!(parse("/run/app.sock"), Ok(SocketAddress::Unix("/run/app.sock".into())));
    }

    #[test]
    fn bad_addresses_name_the_vassal_and_the_address() {
        for (text, why) in [
            ("app.sock", "expected HOST:PORT"),
            ("host:http", "port is not a number"),
            (":70000", "port is not a number"),
            ("::1:80", "IPv6"),
            ("a b:80", "space"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains("app.ini") && err.contains(text) && err.contains(why), "{text}: {err}");
        }
    }
}
