//! The `amqp://` URI: `[USER:PASS@]HOST[:PORT][/VHOST][?exchange=NAME&queue=NAME&heartbeat=SECS]`,
//! its upstream defaults, and the default per-emperor queue name.

use crate::source::util::percent;
use crate::source::util::secret::Password;
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use std::time::Duration;

/// The exchange upstream publishers use.
pub const DEFAULT_EXCHANGE: &str = "uwsgi.emperor";
/// Default heartbeat interval, in seconds.
pub const DEFAULT_HEARTBEAT: u16 = 10;

/// Connection settings parsed from the URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// User name (default `guest`).
    pub user: String,
    /// Password (default `guest`).
    pub password: Password,
    /// Broker host (IPv6 without brackets).
    pub host: String,
    /// Broker port (default 5672).
    pub port: u16,
    /// Virtual host (default `/`).
    pub vhost: String,
    /// Fanout exchange to bind to (default `uwsgi.emperor`).
    pub exchange: String,
    /// Durable queue to consume from (default: [`default_queue`]).
    pub queue: Option<String>,
    /// Heartbeat interval in seconds (default 10).
    pub heartbeat: u16,
}

impl Settings {
    /// The lapin URI, with heartbeats on and `connect_timeout`.
    pub fn lapin_uri(&self, connect_timeout: Duration) -> AMQPUri {
        let s = self;
        AMQPUri {
            scheme: AMQPScheme::AMQP,
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo { username: s.user.clone(), password: s.password.expose().to_owned() },
                host: s.host.clone(),
                port: s.port,
            },
            vhost: s.vhost.clone(),
            query: AMQPQueryString {
                heartbeat: Some(s.heartbeat),
                connection_timeout: Some(connect_timeout.as_millis() as u64),
                ..AMQPQueryString::default()
            },
        }
    }
}

/// Parses `[USER:PASS@]HOST[:PORT][/VHOST][?QUERY]`.
pub fn parse(rest: &str) -> Result<Settings, String> {
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, vhost) = match main.find('/') {
        Some(i) => (&main[..i], &main[i + 1..]),
        None => (main, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => ("guest".to_owned(), Password::new("guest")),
        Some(info) => {
            let (u, p) = info.split_once(':').unwrap_or((info, ""));
            // The error of a bad password must not quote it.
            let password = percent::decode(p).map_err(|e| format!("the password: {e}"))?;
            (decode(u)?, Password::new(password))
        }
    };
    let (host, port) = split_host_port(hostport)?;
    let vhost = match decode(vhost)? {
        v if v.is_empty() => "/".to_owned(),
        v => v,
    };
    let mut settings = Settings {
        user,
        password,
        host,
        port,
        vhost,
        exchange: DEFAULT_EXCHANGE.into(),
        queue: None,
        heartbeat: DEFAULT_HEARTBEAT,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value)?;
        match key {
            "exchange" => settings.exchange = checked_name("exchange", value)?,
            "queue" => settings.queue = Some(checked_name("queue", value)?),
            "heartbeat" => {
                settings.heartbeat =
                    value.parse().map_err(|_| format!("heartbeat {value:?} is not a number of seconds"))?
            }
            other => return Err(format!("unknown option {other:?} (known: exchange, queue, heartbeat)")),
        }
    }
    Ok(settings)
}

fn split_host_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed '[' in the host")?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("no host given".into());
    }
    let port = match port {
        None => 5672,
        Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
    };
    Ok((host.to_owned(), port))
}

/// An exchange or queue name: 1 to 255 bytes, printable, not `amq.`-reserved.
fn checked_name(what: &str, value: String) -> Result<String, String> {
    if value.is_empty() || value.len() > 255 || value.chars().any(char::is_control) || value.starts_with("amq.") {
        return Err(format!("{what} name {value:?} must be 1 to 255 printable bytes and not start with \"amq.\""));
    }
    Ok(value)
}

/// Percent-decodes a URI component (not a secret: the error quotes it).
fn decode(text: &str) -> Result<String, String> {
    percent::decode(text).map_err(|e| format!("{text:?}: {e}"))
}

/// `emperor.<hostname>.<emperor id>`: stable for one emperor (the id is
/// kept in its state dir), different for two emperors on one host.
pub fn default_queue(emperor_id: &str) -> String {
    let id: String = emperor_id.chars().take(16).collect();
    format!("emperor.{}.{id}", hostname())
}

fn hostname() -> String {
    let name = crate::sys::host::name().replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
    if !name.is_empty() {
        name
    } else {
        "localhost".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::message::amqp::AmqpSource;

    #[test]
    fn a_bad_password_is_not_quoted() {
        let err = AmqpSource::from_uri("app:s3cr%zzet@mq:5672").err().unwrap().to_string();
        assert!(!err.contains("s3cr") && err.contains("password"), "{err}");
    }

    #[test]
    fn uri_defaults_are_upstream() {
        let s = parse("192.168.0.1:5672").unwrap();
        assert_eq!(
            (s.user.as_str(), s.password.expose(), s.host.as_str(), s.port),
            ("guest", "guest", "192.168.0.1", 5672)
        );
        assert_eq!((s.vhost.as_str(), s.exchange.as_str(), s.queue.as_deref()), ("/", "uwsgi.emperor", None));
        assert_eq!(s.heartbeat, DEFAULT_HEARTBEAT);
        assert_eq!(parse("rabbit").unwrap().port, 5672);
        assert_eq!(parse("rabbit/").unwrap().vhost, "/");
        assert_eq!(parse("rabbit/%2f").unwrap().vhost, "/");
    }

    #[test]
    fn uri_with_everything() {
        let s = parse("bob:p%40ss:w@[::1]:5673/prod?exchange=deploy&queue=emperor.web1&heartbeat=5").unwrap();
        assert_eq!((s.user.as_str(), s.password.expose(), s.host.as_str(), s.port), ("bob", "p@ss:w", "::1", 5673));
        assert_eq!(
            (s.vhost.as_str(), s.exchange.as_str(), s.queue.as_deref()),
            ("prod", "deploy", Some("emperor.web1"))
        );
        assert_eq!(s.heartbeat, 5);
    }

    #[test]
    fn bad_uris() {
        for bad in
            ["", ":5672", "h:x", "h?color=red", "h?queue=", "h?exchange=amq.fanout", "h/%zz", "[::1", "h?heartbeat=-1"]
        {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let err = AmqpSource::from_uri("u:secret@h?nope=1").err().unwrap().to_string();
        assert!(err.contains("nope") && !err.contains("secret"), "{err}");
    }

    #[test]
    fn ids_hide_the_password() {
        assert_eq!(AmqpSource::from_uri("u:secret@h:1/v?queue=q").unwrap().id().0, "amqp://u@h:1/v?queue=q");
        assert_eq!(AmqpSource::from_uri("h:1").unwrap().id().0, "amqp://h:1");
    }

    #[test]
    fn default_queue_is_stable_and_named() {
        let q = default_queue("0123456789abcdef0123456789abcdef");
        assert_eq!(q, default_queue("0123456789abcdef0123456789abcdef"));
        assert_ne!(q, default_queue("fedcba98765432100123456789abcdef"));
        assert!(q.starts_with("emperor.") && q.ends_with(".0123456789abcdef") && q.len() <= 255, "{q}");
    }
}
