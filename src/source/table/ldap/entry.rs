//! One directory entry → one table row: the vassal's name from an attribute
//! (`.ini` appended when it has no config extension), its config either
//! rendered from upstream's `uWSGI…` attributes or taken whole from one
//! attribute, and the tyrant / on-demand fields.

use super::uri::LdapUri;
use crate::source::table::rows::{Field, Row};
use ldap3::SearchEntry;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// upstream's attribute prefix (`uWSGIsocket`).
const PREFIX: &str = "uWSGI";

/// An entry as the server sent it (kept, so that a resumed sync can
/// start from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its DN.
    pub dn: String,
    /// Its text attributes and their values, in the server's order.
    pub attrs: BTreeMap<String, Vec<String>>,
    /// The names of attributes whose values are not UTF-8.
    pub binary: BTreeSet<String>,
}

impl From<SearchEntry> for Entry {
    fn from(e: SearchEntry) -> Self {
        Entry { dn: e.dn, attrs: e.attrs.into_iter().collect(), binary: e.bin_attrs.into_keys().collect() }
    }
}

/// Decodes `entry` as the URI maps it.
pub fn decode(entry: &Entry, uri: &LdapUri) -> Row {
    let config = match &uri.config_attr {
        Some(attr) => whole_config(entry, attr),
        None => rendered_config(entry),
    };
    Row {
        position: format!("entry {}", entry.dn),
        name: name(entry, &uri.name_attr),
        config,
        // The version is the config's hash: a modify of an attribute the
        // source does not use must not reload the vassal.
        ts: Field::Absent,
        uid: number(entry, &uri.uid_attr),
        gid: number(entry, &uri.gid_attr),
        socket: uri.socket_attr.as_deref().map_or(Field::Absent, |attr| single(entry, attr)),
    }
}

/// The values of `attr` (names are case-insensitive in LDAP).
fn values<'a>(entry: &'a Entry, attr: &str) -> Option<&'a Vec<String>> {
    entry.attrs.iter().find(|(name, _)| name.eq_ignore_ascii_case(attr)).map(|(_, v)| v)
}

/// Whether `attr` came back with values that are not UTF-8.
fn binary(entry: &Entry, attr: &str) -> bool {
    entry.binary.iter().any(|name| name.eq_ignore_ascii_case(attr))
}

/// A single-valued text attribute.
fn single(entry: &Entry, attr: &str) -> Field<String> {
    match values(entry, attr).map(Vec::as_slice) {
        Some([one]) => Field::Value(one.clone()),
        Some([]) | None if binary(entry, attr) => Field::Wrong(format!("binary {attr}")),
        Some([]) | None => Field::Absent,
        Some(many) => Field::Wrong(format!("{attr} with {} values", many.len())),
    }
}

/// The vassal name: the value of `attr` (for a multi-valued one, the value
/// in the entry's RDN), with `.ini` appended when it has no config
/// extension.
fn name(entry: &Entry, attr: &str) -> Field<String> {
    let value = match values(entry, attr).map(Vec::as_slice) {
        Some([one]) => one.clone(),
        Some([_, _, ..]) => match rdn_value(&entry.dn, attr) {
            Some(v) => v,
            None => return Field::Wrong(format!("multi-valued {attr}, none of them the RDN")),
        },
        _ => return single(entry, attr),
    };
    Field::Value(if reconciler::extension_of(&value).is_some() { value } else { format!("{value}.ini") })
}

/// The value of `attr` in the first RDN of `dn`, when it is plain text.
fn rdn_value(dn: &str, attr: &str) -> Option<String> {
    let rdn = dn.split(',').next()?;
    rdn.split('+').find_map(|ava| {
        let (name, value) = ava.split_once('=')?;
        (name.trim().eq_ignore_ascii_case(attr) && !value.contains('\\')).then(|| value.trim().to_owned())
    })
}

/// `x-config=ATTR`: the one value of `attr` is the whole config. Values of
/// a multi-valued attribute have no order (RFC 4511 §4.1.7), so a config
/// split over several values is refused, never reassembled.
fn whole_config(entry: &Entry, attr: &str) -> Field<String> {
    match values(entry, attr).map(Vec::as_slice) {
        Some([_, _, ..]) => Field::Wrong(format!(
            "{attr} with several values, which LDAP keeps in no order: put the whole config in one value"
        )),
        _ => single(entry, attr),
    }
}

/// A uWSGIConfig entry: `[uwsgi]` and one `option = value` line per value of
/// every `uWSGI…` attribute, options in name order. `TRUE` becomes `true`,
/// `FALSE` drops the line; `uWSGInull` (the end marker of upstream's
/// schema) is skipped. No `uWSGI…` attribute at all means no config.
fn rendered_config(entry: &Entry) -> Field<String> {
    let mut options: Vec<(String, &Vec<String>)> = entry
        .attrs
        .iter()
        .filter_map(|(attr, vals)| Some((option_name(attr)?, vals)))
        .filter(|(option, _)| option != "null")
        .collect();
    if options.is_empty() {
        return Field::Absent;
    }
    options.sort();
    let mut config = String::from("[uwsgi]\n");
    for (option, vals) in options {
        for value in vals {
            if value.contains(['\n', '\r']) {
                return Field::Wrong(format!("a {option} value with a line break"));
            }
            match value.as_str() {
                "FALSE" => {}
                "TRUE" => config.push_str(&format!("{option} = true\n")),
                v => config.push_str(&format!("{option} = {v}\n")),
            }
        }
    }
    Field::Value(config)
}

/// upstream's attribute → option mapping: strip `uWSGI`, then every capital
/// becomes `-` and its lower case (`uWSGIharakiriVerbose` →
/// `harakiri-verbose`). `None` for other attributes.
pub fn option_name(attr: &str) -> Option<String> {
    let rest = attr.strip_prefix(PREFIX).filter(|r| !r.is_empty())?;
    let mut option = String::with_capacity(rest.len() + 4);
    for c in rest.chars() {
        if c.is_ascii_uppercase() {
            option.push('-');
            option.push(c.to_ascii_lowercase());
        } else {
            option.push(c);
        }
    }
    Some(option)
}

/// A numeric id attribute.
fn number(entry: &Entry, attr: &str) -> Field<i64> {
    match single(entry, attr) {
        Field::Value(text) => text.trim().parse().map_or(Field::Wrong(text), Field::Value),
        Field::Absent => Field::Absent,
        Field::Null => Field::Null,
        Field::Wrong(w) => Field::Wrong(w),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> Entry {
        Entry {
            dn: dn.into(),
            attrs: attrs.iter().map(|(a, v)| (a.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
            binary: BTreeSet::new(),
        }
    }

    fn uri(ext: &str) -> LdapUri {
        LdapUri::parse(&format!("h/dc=x????{ext}"), false).unwrap()
    }

    #[test]
    fn uwsgi_config_entry_renders_an_ini() {
        let e = entry(
            "cn=app,ou=v,dc=x",
            &[
                ("objectClass", &["applicationProcess", "uWSGIConfig"]),
                ("cn", &["app"]),
                ("uWSGIsocket", &["127.0.0.1:3031"]),
                ("uWSGImaster", &["TRUE"]),
                ("uWSGIharakiriVerbose", &["FALSE"]),
                ("uWSGIenv", &["A=1", "B=2"]),
                ("uWSGIpostBuffering", &["4096"]),
                ("uWSGInull", &["x"]),
                ("uidNumber", &["1000"]),
                ("gidNumber", &["100"]),
            ],
        );
        let row = decode(&e, &uri(""));
        assert_eq!(row.name, Field::Value("app.ini".into()));
        assert_eq!(row.position, "entry cn=app,ou=v,dc=x");
        let expected = "[uwsgi]\nenv = A=1\nenv = B=2\nmaster = true\npost-buffering = 4096\nsocket = 127.0.0.1:3031\n";
        assert_eq!(row.config, Field::Value(expected.into()));
        assert_eq!((row.uid, row.gid, row.socket), (Field::Value(1000), Field::Value(100), Field::Absent));
        assert_eq!(row.ts, Field::Absent);
    }

    #[test]
    fn option_names_follow_upstream() {
        assert_eq!(option_name("uWSGIharakiriVerbose").as_deref(), Some("harakiri-verbose"));
        assert_eq!(option_name("uWSGIsocket").as_deref(), Some("socket"));
        assert_eq!(option_name("uWSGIwsgiFile").as_deref(), Some("wsgi-file"));
        assert_eq!(option_name("uWSGI"), None);
        assert_eq!(option_name("cn"), None);
    }

    #[test]
    fn whole_config_entry() {
        let u = uri("x-config=description,x-socket=labeledURI");
        let e = entry(
            "cn=web,dc=x",
            &[("cn", &["web.toml"]), ("description", &["[vassal]\nexec = [\"x\"]\n"]), ("labeledURI", &[":3031"])],
        );
        let row = decode(&e, &u);
        assert_eq!(row.name, Field::Value("web.toml".into()));
        assert_eq!(row.config, Field::Value("[vassal]\nexec = [\"x\"]\n".into()));
        assert_eq!(row.socket, Field::Value(":3031".into()));
        let multi = decode(&entry("cn=m,dc=x", &[("cn", &["m"]), ("description", &["[uwsgi]", "a = 1"])]), &u);
        assert!(matches!(&multi.config, Field::Wrong(w) if w.contains("several values")), "{:?}", multi.config);
        let none = decode(&entry("cn=n,dc=x", &[("cn", &["n"])]), &u);
        assert_eq!(none.config, Field::Absent);
    }

    #[test]
    fn names_and_bad_values() {
        let u = uri("");
        let multi_cn = entry("cn=b+ou=z,dc=x", &[("cn", &["a", "b"]), ("uWSGIsocket", &[":1"])]);
        assert_eq!(decode(&multi_cn, &u).name, Field::Value("b.ini".into()));
        let odd = entry("uid=q,dc=x", &[("cn", &["a", "b"])]);
        assert!(matches!(decode(&odd, &u).name, Field::Wrong(_)));
        assert_eq!(decode(&entry("uid=q,dc=x", &[]), &u).name, Field::Absent);
        assert_eq!(decode(&entry("uid=q,dc=x", &[]), &u).config, Field::Absent);
        let named = decode(&entry("uid=q,dc=x", &[("uid", &["q.yaml"])]), &uri("x-name=uid"));
        assert_eq!(named.name, Field::Value("q.yaml".into()));
        let broken = entry("cn=c,dc=x", &[("cn", &["c"]), ("uWSGIenv", &["A=1\n[other]"]), ("uidNumber", &["x"])]);
        let row = decode(&broken, &u);
        assert!(matches!(row.config, Field::Wrong(_)));
        assert_eq!(row.uid, Field::Wrong("x".into()));
    }
}
