//! The `zoo://` URI grammar:
//! `zoo://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]/PATH[?session-timeout=SECS&register=PATH[&status=1]&leases=PATH]`.
//!
//! The host list is comma-separated, so the URI is split by hand rather than
//! as a URL. The password (percent-encoded where it holds `@`, `/`, `:` or
//! `%`) is kept for the digest login only: the id masks it.

use crate::source::util::percent;
use crate::source::util::seconds;
use crate::source::util::secret::Password;
use std::time::Duration;

/// The ZooKeeper client port when a host gives none.
pub const DEFAULT_PORT: u16 = 2181;
/// The session timeout asked for when the URI gives none: long enough that
/// a server restart or a short network cut does not end the session (the
/// server clamps it to [2, 20] × its tickTime).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed `zoo://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZooUri {
    /// The id: the URI with the password masked.
    pub id: String,
    /// The connect string for the client (`h1:2181,h2:2181`).
    pub hosts: String,
    /// Digest credentials (`user`, `password`).
    pub auth: Option<(String, Password)>,
    /// The watched node whose children are the vassals.
    pub base: String,
    /// The session timeout asked for.
    pub session_timeout: Duration,
    /// Where to keep this emperor's ephemeral registration node.
    pub register: Option<String>,
    /// Whether to keep a node per vassal under `register/<host>/` (`status=1`).
    pub status: bool,
    /// Where singleton leases are queued: one child per singleton
    /// (`leases=PATH`, default: the base path with `.leases` appended).
    pub leases: String,
}

/// Parses the part after `zoo://`; the error says what is wrong.
pub fn parse(rest: &str) -> Result<ZooUri, String> {
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let slash = main.find('/').ok_or("a base path is needed: zoo://HOST:PORT/PATH")?;
    let (authority, path) = main.split_at(slash);
    let (auth, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(credentials(userinfo)?), hosts),
        None => (None, authority),
    };
    let hosts = host_list(hosts)?;
    let base = znode_path(path, "the base path")?;
    let mut session_timeout = DEFAULT_SESSION_TIMEOUT;
    let mut register = None;
    let mut status = false;
    let mut leases = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("session-timeout", secs)) => {
                session_timeout = seconds::parse_positive(secs).map_err(|e| format!("session-timeout: {e}"))?;
            }
            Some(("register", path)) => register = Some(znode_path(path, "register")?),
            Some(("status", "1")) => status = true,
            Some(("status", "0")) => status = false,
            Some(("leases", path)) => leases = Some(znode_path(path, "leases")?),
            _ => {
                return Err(format!(
                    "unknown option `{pair}` (known: session-timeout=SECS, register=PATH, status=1, leases=PATH)"
                ))
            }
        }
    }
    if status && register.is_none() {
        return Err("status=1 needs register=PATH (the status nodes go under it)".into());
    }
    if let Some(reg) = &register {
        if within(reg, &base) || within(&base, reg) {
            return Err(format!("register={reg} must lie outside the base path {base} (and not above it)"));
        }
    }
    let leases = leases.unwrap_or_else(|| default_leases(&base));
    // The root watches every node: its lease nodes are a child it skips.
    if base != "/" && (within(&leases, &base) || within(&base, &leases)) {
        return Err(format!("leases={leases} must lie outside the base path {base} (and not above it)"));
    }
    let user = auth.as_ref().map_or(String::new(), |(user, _)| format!("{user}:***@"));
    let query = if query.is_empty() { String::new() } else { format!("?{query}") };
    let id = format!("zoo://{user}{hosts}{base}{query}");
    Ok(ZooUri { id, hosts, auth, base, session_timeout, register, status, leases })
}

/// The lease path when the URI names none: a sibling of the base
/// (`/emperor/vassals.leases`; `/emperor.leases` for the root).
fn default_leases(base: &str) -> String {
    match base {
        "/" => "/emperor.leases".to_owned(),
        base => format!("{base}.leases"),
    }
}

/// `USER:PASSWORD`, each percent-decoded.
fn credentials(userinfo: &str) -> Result<(String, Password), String> {
    let (user, password) = userinfo.split_once(':').ok_or("user info must be USER:PASSWORD (digest login)")?;
    let (user, password) = (percent_decode(user)?, percent_decode(password)?);
    if user.is_empty() {
        return Err("the user name is empty".into());
    }
    Ok((user, Password::new(password)))
}

/// `HOST[:PORT],…` normalised to `HOST:PORT,…`.
fn host_list(hosts: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for host in hosts.split(',') {
        let (name, port) = match host.rsplit_once(':') {
            // `[v6]` without a port; `[v6]:PORT` splits at its last colon.
            _ if host.starts_with('[') && host.ends_with(']') => (host, DEFAULT_PORT),
            Some((name, port)) if !name.ends_with(':') => {
                (name, port.parse::<u16>().map_err(|_| format!("host `{host}`: bad port `{port}`"))?)
            }
            _ => (host, DEFAULT_PORT),
        };
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || "/@?".contains(c)) {
            return Err(format!("bad host `{host}` in the host list"));
        }
        out.push(format!("{name}:{port}"));
    }
    Ok(out.join(","))
}

/// An absolute znode path without a trailing slash, empty, `.` or `..`
/// segments.
fn znode_path(path: &str, what: &str) -> Result<String, String> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() && path.starts_with('/') {
        return Ok("/".into());
    }
    if !trimmed.starts_with('/') {
        return Err(format!("{what} `{path}` must start with /"));
    }
    let bad = trimmed[1..].split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad || trimmed.contains(|c: char| c.is_control()) {
        return Err(format!("{what} `{path}` has an empty, `.` or `..` segment, or a control character"));
    }
    Ok(trimmed.to_owned())
}

/// Whether `path` is `dir` or below it.
fn within(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// `%XX` escapes of the user info decoded; the error never quotes it.
fn percent_decode(text: &str) -> Result<String, String> {
    percent::decode(text).map_err(|e| format!("the user info: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_path_and_defaults() {
        let u = parse("127.0.0.1:2181/emperor/vassals").unwrap();
        assert_eq!((u.hosts.as_str(), u.base.as_str()), ("127.0.0.1:2181", "/emperor/vassals"));
        assert_eq!((u.auth, u.register), (None, None));
        assert_eq!(u.session_timeout, DEFAULT_SESSION_TIMEOUT);
        assert_eq!(u.id, "zoo://127.0.0.1:2181/emperor/vassals");
        let u = parse("zk1,zk2:2182,zk3:2183/a/").unwrap();
        assert_eq!((u.hosts.as_str(), u.base.as_str()), ("zk1:2181,zk2:2182,zk3:2183", "/a"));
        assert_eq!(parse("h/").unwrap().base, "/");
        assert_eq!(parse("[::1]:2182,[::1]/v").unwrap().hosts, "[::1]:2182,[::1]:2181");
    }

    #[test]
    fn options() {
        let u = parse("h:1/v?session-timeout=2.5&register=/emperor/hosts").unwrap();
        assert_eq!(u.session_timeout, Duration::from_millis(2500));
        assert_eq!(u.register.as_deref(), Some("/emperor/hosts"));
        assert_eq!(u.id, "zoo://h:1/v?session-timeout=2.5&register=/emperor/hosts");
        assert!(!u.status);
        assert!(parse("h:1/v?register=/emperor/hosts&status=1").unwrap().status);
        assert_eq!(u.leases, "/v.leases");
        assert_eq!(parse("h:1/?leases=/l").unwrap().leases, "/l");
        assert_eq!(parse("h:1/").unwrap().leases, "/emperor.leases");
        for bad in [
            "h:1/v?status=1",
            "h:1/v?register=/r&status=yes",
            "h:1/v?session-timeout=0",
            "h:1/v?session-timeout=x",
            "h:1/v?interval=3",
            "h:1/v?register=rel",
            "h:1/v?register=/v/hosts",
            "h:1/v/x?register=/v",
            "h:1/v?leases=/v/l",
            "h:1/v/x?leases=/v",
            "h:1/v?leases=rel",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_are_decoded_and_never_in_the_id() {
        let u = parse("ops:s%40cr%2Ft@h:1,h2:2/v").unwrap();
        assert_eq!(u.auth, Some(("ops".into(), Password::new("s@cr/t"))));
        assert_eq!(u.id, "zoo://ops:***@h:1,h2:2/v");
        assert!(!u.id.contains("cr"), "{}", u.id);
        let err = parse("ops:secret@h:x/v").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
        assert!(parse("ops@h:1/v").is_err());
        assert!(parse(":pw@h:1/v").is_err());
        assert!(parse("u:%zz@h:1/v").is_err());
    }

    #[test]
    fn malformed() {
        for bad in ["h:1", "h:99999/v", ":1/v", "h:1,/v", "h:1/v//x", "h:1/v/../x", "h:1/./v", "a b:1/v"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
