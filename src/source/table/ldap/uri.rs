//! The `ldap://` source URI (RFC 4516) with the emperor's defaults and
//! extensions:
//!
//! ```text
//! ldap[s]://[HOST[:PORT]]/BASEDN[?ATTRIBUTES[?SCOPE[?FILTER[?EXTENSIONS]]]]
//! ```
//!
//! Unlike RFC 4516 the default scope is `one` and the default filter
//! `(objectClass=uWSGIConfig)`. A password is never taken from the URI
//! (`x-bindpw` and `credentials` are refused), so the URI is the source id
//! as given.

use ldap3::Scope;
use percent_encoding::percent_decode_str;
use std::path::PathBuf;
use std::time::Duration;

/// The default filter: upstream's object class.
pub const DEFAULT_FILTER: &str = "(objectClass=uWSGIConfig)";
/// The default polling interval on a server without syncrepl.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain LDAP.
    Plain,
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
    /// `x-starttls`: plain LDAP upgraded with the StartTLS operation.
    StartTls,
}

/// A parsed `ldap://` URI.
#[derive(Debug, Clone, PartialEq)]
pub struct LdapUri {
    /// The source id: the URI as given.
    pub id: String,
    /// What to connect to: `ldap[s]://HOST:PORT`.
    pub server: String,
    /// Transport protection.
    pub tls: Transport,
    /// The search base.
    pub base: String,
    /// The attributes listed in the URI (empty: all user attributes).
    pub attrs: Vec<String>,
    /// The search scope.
    pub scope: Scope,
    /// The search filter.
    pub filter: String,
    /// `bindname=DN`: bind as this DN (else anonymously).
    pub bind_dn: Option<String>,
    /// `x-password-file=PATH`: the bind password's file.
    pub password_file: Option<PathBuf>,
    /// `x-name=ATTR`: the attribute naming the vassal (default `cn`).
    pub name_attr: String,
    /// `x-config=ATTR`: the single-valued attribute holding the whole
    /// config (else the config is rendered from `uWSGI…` attributes).
    pub config_attr: Option<String>,
    /// `x-uid=ATTR` (default `uidNumber`).
    pub uid_attr: String,
    /// `x-gid=ATTR` (default `gidNumber`).
    pub gid_attr: String,
    /// `x-socket=ATTR`: the on-demand socket (default none).
    pub socket_attr: Option<String>,
    /// `x-interval=SECS`: polling period without syncrepl.
    pub interval: Duration,
}

impl LdapUri {
    /// Parses the part after `ldap://` (`ldaps`: after `ldaps://`).
    pub fn parse(rest: &str, ldaps: bool) -> Result<LdapUri, String> {
        let scheme = if ldaps { "ldaps" } else { "ldap" };
        let (hostport, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let tail = tail.strip_prefix('/').unwrap_or(tail);
        let mut fields = tail.split('?');
        let base = decode(fields.next().unwrap_or_default())?;
        let attrs_field = fields.next().unwrap_or_default();
        let scope_field = fields.next().unwrap_or_default();
        let filter_field = fields.next().unwrap_or_default();
        let extensions = fields.next().unwrap_or_default();
        if fields.next().is_some() {
            return Err("too many '?' fields (a '?' inside a field must be written %3F)".into());
        }
        let mut uri = LdapUri {
            id: format!("{scheme}://{rest}"),
            server: server(scheme, hostport)?,
            tls: if ldaps { Transport::Ldaps } else { Transport::Plain },
            base,
            attrs: attributes(attrs_field)?,
            scope: scope(scope_field)?,
            filter: filter(filter_field)?,
            bind_dn: None,
            password_file: None,
            name_attr: "cn".into(),
            config_attr: None,
            uid_attr: "uidNumber".into(),
            gid_attr: "gidNumber".into(),
            socket_attr: None,
            interval: DEFAULT_INTERVAL,
        };
        for ext in extensions.split(',').filter(|e| !e.is_empty()) {
            uri.extension(ext)?;
        }
        Ok(uri)
    }

    /// Applies one `[!]type[=value]` extension.
    fn extension(&mut self, ext: &str) -> Result<(), String> {
        let (critical, ext) = match ext.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, ext),
        };
        let (kind, value) = match ext.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(decode(v)?)),
            None => (ext.to_ascii_lowercase(), None),
        };
        let need = |v: Option<String>| v.filter(|v| !v.is_empty()).ok_or(format!("extension {kind} needs a value"));
        match kind.as_str() {
            "bindname" => self.bind_dn = Some(need(value)?),
            "x-bindpw" | "credentials" => {
                return Err(format!(
                    "extension {kind}: a password is never taken from the URI \
                     (use x-password-file=PATH or $EMPEROR_LDAP_PASSWORD)"
                ))
            }
            "x-password-file" => self.password_file = Some(need(value)?.into()),
            "x-name" => self.name_attr = need(value)?,
            "x-config" => self.config_attr = Some(need(value)?),
            "x-uid" => self.uid_attr = need(value)?,
            "x-gid" => self.gid_attr = need(value)?,
            "x-socket" => self.socket_attr = Some(need(value)?),
            "x-interval" => {
                let secs = need(value)?;
                self.interval = crate::source::util::seconds::parse_positive(&secs)
                    .map_err(|e| format!("extension x-interval: {e}"))?;
            }
            "x-starttls" | "starttls" => match self.tls {
                Transport::Ldaps => return Err("x-starttls with ldaps:// (already TLS)".into()),
                _ => self.tls = Transport::StartTls,
            },
            _ if critical => return Err(format!("unknown critical extension !{kind}")),
            _ => tracing::warn!(source = %self.id, extension = %kind, "ignoring an unknown URI extension"),
        }
        Ok(())
    }

    /// The attributes to request: the URI's list plus every attribute the
    /// source maps (`*` when the URI lists none).
    pub fn requested(&self) -> Vec<String> {
        if self.attrs.is_empty() {
            return vec!["*".into()];
        }
        let mut out = self.attrs.clone();
        let mapped = [Some(&self.name_attr), self.config_attr.as_ref(), Some(&self.uid_attr), Some(&self.gid_attr)];
        for attr in mapped.into_iter().chain([self.socket_attr.as_ref()]).flatten() {
            if !out.iter().any(|a| a.eq_ignore_ascii_case(attr)) {
                out.push(attr.clone());
            }
        }
        out
    }

    /// What identifies the search to the server: a sync cookie is only
    /// valid for exactly this search (RFC 4533 §3.5).
    pub fn search_key(&self) -> String {
        let scope = match self.scope {
            Scope::Base => "base",
            Scope::OneLevel => "one",
            Scope::Subtree => "sub",
        };
        let attrs = self.requested().join(",");
        let bind = self.bind_dn.as_deref().unwrap_or("");
        format!("{}\0{bind}\0{}\0{scope}\0{}\0{attrs}", self.server, self.base, self.filter)
    }
}

fn decode(text: &str) -> Result<String, String> {
    percent_decode_str(text).decode_utf8().map(|s| s.into_owned()).map_err(|_| format!("{text:?} is not UTF-8"))
}

/// `ldap[s]://HOST:PORT` (default `localhost` and 389 / 636).
fn server(scheme: &str, hostport: &str) -> Result<String, String> {
    let hostport = decode(hostport)?;
    if hostport.contains('@') {
        return Err("user info is not part of an LDAP URI (use bindname=DN and x-password-file=PATH)".into());
    }
    let default_port = if scheme == "ldaps" { 636 } else { 389 };
    let (host, port) = match hostport.rsplit_once(':').filter(|(_, p)| !p.contains(']')) {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| format!("bad port {port:?}"))?),
        None => (hostport.as_str(), default_port),
    };
    let host = if host.is_empty() { "localhost" } else { host };
    Ok(format!("{scheme}://{host}:{port}"))
}

fn attributes(field: &str) -> Result<Vec<String>, String> {
    let attrs: Vec<String> = field.split(',').filter(|a| !a.is_empty()).map(decode).collect::<Result<_, _>>()?;
    if let [only] = attrs.as_slice() {
        if ["base", "one", "sub"].contains(&only.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "the attributes field is {only:?}: the scope is the third field (…/BASEDN??{only}?FILTER)"
            ));
        }
    }
    Ok(attrs)
}

fn scope(field: &str) -> Result<Scope, String> {
    match field.to_ascii_lowercase().as_str() {
        "" | "one" => Ok(Scope::OneLevel),
        "base" => Ok(Scope::Base),
        "sub" => Ok(Scope::Subtree),
        other => Err(format!("bad scope {other:?} (base, one or sub)")),
    }
}

fn filter(field: &str) -> Result<String, String> {
    let filter = decode(field)?;
    if filter.is_empty() {
        return Ok(DEFAULT_FILTER.into());
    }
    Ok(if filter.starts_with('(') { filter } else { format!("({filter})") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rest: &str) -> LdapUri {
        LdapUri::parse(rest, false).unwrap()
    }

    #[test]
    fn defaults() {
        let u = parse("127.0.0.1:3890/ou=vassals,dc=example,dc=org");
        assert_eq!(u.server, "ldap://127.0.0.1:3890");
        assert_eq!(u.base, "ou=vassals,dc=example,dc=org");
        assert_eq!(u.scope, Scope::OneLevel);
        assert_eq!(u.filter, DEFAULT_FILTER);
        assert!(u.attrs.is_empty());
        assert_eq!(u.requested(), ["*"]);
        assert_eq!((u.name_attr.as_str(), u.uid_attr.as_str(), u.gid_attr.as_str()), ("cn", "uidNumber", "gidNumber"));
        assert_eq!((u.config_attr, u.socket_attr, u.bind_dn), (None, None, None));
        assert_eq!(u.interval, DEFAULT_INTERVAL);
        assert_eq!(u.tls, Transport::Plain);
        assert_eq!(parse("/dc=x").server, "ldap://localhost:389");
        let s = LdapUri::parse("ldap.example.org/dc=x", true).unwrap();
        assert_eq!((s.server.as_str(), s.tls), ("ldaps://ldap.example.org:636", Transport::Ldaps));
        assert_eq!(s.id, "ldaps://ldap.example.org/dc=x");
    }

    #[test]
    fn every_field_and_extension() {
        let u = parse(
            "h:1/ou=a%20b,dc=x?cn,description?SUB?(objectClass=applicationProcess)?\
             x-config=description,bindname=cn=reader%2Cdc=x,x-password-file=/run/pw,x-name=uid,\
             x-uid=u,x-gid=g,x-socket=s,x-interval=0.5,x-starttls,future-ext",
        );
        assert_eq!(u.base, "ou=a b,dc=x");
        assert_eq!(u.attrs, ["cn", "description"]);
        assert_eq!(u.scope, Scope::Subtree);
        assert_eq!(u.filter, "(objectClass=applicationProcess)");
        assert_eq!(u.config_attr.as_deref(), Some("description"));
        assert_eq!(u.bind_dn.as_deref(), Some("cn=reader,dc=x"));
        assert_eq!(u.password_file, Some(PathBuf::from("/run/pw")));
        assert_eq!((u.name_attr.as_str(), u.uid_attr.as_str(), u.gid_attr.as_str()), ("uid", "u", "g"));
        assert_eq!(u.socket_attr.as_deref(), Some("s"));
        assert_eq!(u.interval, Duration::from_millis(500));
        assert_eq!(u.tls, Transport::StartTls);
        assert_eq!(u.requested(), ["cn", "description", "uid", "u", "g", "s"]);
        assert_eq!(parse("h/dc=x??base?objectClass=*").filter, "(objectClass=*)");
        assert_eq!(parse("h/dc=x??base").scope, Scope::Base);
    }

    #[test]
    fn refused() {
        let err = |rest: &str| LdapUri::parse(rest, false).unwrap_err();
        assert!(err("h/dc=x?sub?(cn=*)").contains("scope is the third field"));
        assert!(err("h/dc=x??around").contains("bad scope"));
        assert!(err("h/dc=x????!x-unknown").contains("critical"));
        assert!(err("h:port/dc=x").contains("bad port"));
        assert!(err("h/dc=x????x-interval=0").contains("x-interval"));
        assert!(err("h/dc=x????x-config").contains("needs a value"));
        assert!(err("h/dc=x?a?one?c?d?e").contains("too many"));
        assert!(LdapUri::parse("h/dc=x????x-starttls", true).is_err());
    }

    #[test]
    fn passwords_are_refused_without_being_repeated() {
        for rest in ["h/dc=x????x-bindpw=hunter2", "h/dc=x????credentials=hunter2", "u:hunter2@h/dc=x"] {
            let err = LdapUri::parse(rest, false).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn search_key_follows_every_field_that_controls_content() {
        let key = |rest: &str| parse(rest).search_key();
        let base = key("h/dc=x?cn?one?(cn=*)");
        assert_eq!(base, key("h/dc=x?cn?one?(cn=*)?x-interval=9"));
        for other in ["h/dc=y?cn?one?(cn=*)", "h/dc=x?sn?one?(cn=*)", "h/dc=x?cn?sub?(cn=*)", "h/dc=x?cn?one?(sn=*)"] {
            assert_ne!(base, key(other), "{other}");
        }
        assert_ne!(base, key("h/dc=x?cn?one?(cn=*)?bindname=cn=r"));
        assert_ne!(base, key("h:390/dc=x?cn?one?(cn=*)"));
    }
}
