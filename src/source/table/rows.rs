//! Row validation shared by the database sources (`pg://`, `mongodb://`):
//! turns decoded rows into [`VassalSpec`]s and skips bad rows with one
//! warning each (not one per poll).

use crate::source::util::hash::fnv1a;
use reconciler::{ConfigRef, NameError, SourceId, VassalName, VassalSpec};
use std::collections::{BTreeMap, HashSet};

/// One field of a row, as a source decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field<T> {
    /// The column or key does not exist.
    Absent,
    /// NULL.
    Null,
    /// A value of an accepted type.
    Value(T),
    /// A value of a type that is not accepted: its type, for the warning.
    Wrong(String),
}

impl<T> Field<T> {
    /// The value, if present and well-typed.
    fn value(&self) -> Option<&T> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// A row (or document) decoded by a source: `name, config, ts[, uid, gid[, socket]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Where it is, for warnings: `row 3`, `document _id=…`.
    pub position: String,
    /// The vassal name.
    pub name: Field<String>,
    /// The inline config.
    pub config: Field<String>,
    /// The modification stamp, rendered exactly (sub-second digits included).
    pub ts: Field<String>,
    /// uid to run as.
    pub uid: Field<i64>,
    /// gid to run as.
    pub gid: Field<i64>,
    /// On-demand socket.
    pub socket: Field<String>,
}

/// Why a row is skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// No usable name.
    #[error("the name is NULL or missing")]
    NoName,
    /// The name is not text.
    #[error("the name is not text (it is {0})")]
    NameType(String),
    /// The name is refused (path separator, `..`, extension, length).
    #[error(transparent)]
    BadName(#[from] NameError),
    /// No config.
    #[error("the config is NULL or missing")]
    NoConfig,
    /// An empty config.
    #[error("the config is empty")]
    EmptyConfig,
    /// The config is not text.
    #[error("the config is not text (it is {0})")]
    ConfigType(String),
    /// `ts` is neither a timestamp nor a number.
    #[error("ts is not a timestamp or a number (it is {0})")]
    TsType(String),
    /// uid or gid is not a valid id.
    #[error("{field} is not a non-negative 32-bit integer ({value})")]
    BadId {
        /// `uid` or `gid`.
        field: &'static str,
        /// What it was.
        value: String,
    },
    /// Only one of uid and gid is given.
    #[error("uid and gid must be given together")]
    HalfOwner,
    /// The socket is not text.
    #[error("the socket is not text (it is {0})")]
    SocketType(String),
    /// The name was already used by an earlier row.
    #[error("duplicate name (the first one, at {first}, is used)")]
    Duplicate {
        /// Where the row that is used is.
        first: String,
    },
}

/// Validates one row into a spec.
pub fn spec(source: &SourceId, row: &Row) -> Result<VassalSpec, RowError> {
    let name = match &row.name {
        Field::Absent | Field::Null => return Err(RowError::NoName),
        Field::Wrong(t) => return Err(RowError::NameType(t.clone())),
        Field::Value(text) => VassalName::parse(text)?,
    };
    let config = match &row.config {
        Field::Absent | Field::Null => return Err(RowError::NoConfig),
        Field::Wrong(t) => return Err(RowError::ConfigType(t.clone())),
        Field::Value(text) if text.trim().is_empty() => return Err(RowError::EmptyConfig),
        Field::Value(text) => text.clone(),
    };
    let ts = match &row.ts {
        Field::Absent | Field::Null => "-".to_owned(),
        Field::Wrong(t) => return Err(RowError::TsType(t.clone())),
        Field::Value(ts) => ts.clone(),
    };
    let owner = match (id(&row.uid, "uid")?, id(&row.gid, "gid")?) {
        (Some(uid), Some(gid)) => Some((uid, gid)),
        (None, None) => None,
        _ => return Err(RowError::HalfOwner),
    };
    let socket = match &row.socket {
        Field::Absent | Field::Null => None,
        Field::Wrong(t) => return Err(RowError::SocketType(t.clone())),
        Field::Value(s) if s.is_empty() => None,
        Field::Value(s) => Some(s.clone()),
    };
    // Owner and socket are part of the version: a change of either must reach
    // the reconciler too.
    let mut stamp = config.clone().into_bytes();
    if let Some((uid, gid)) = owner {
        stamp.extend_from_slice(format!("\0owner={uid}:{gid}").as_bytes());
    }
    if let Some(socket) = &socket {
        stamp.extend_from_slice(format!("\0socket={socket}").as_bytes());
    }
    let version = format!("{ts}#{:016x}", fnv1a(&stamp));
    Ok(VassalSpec { name, source: source.clone(), config: ConfigRef::Inline(config), version, owner, socket })
}

/// A uid or gid field: `None` when absent or NULL.
fn id(field: &Field<i64>, which: &'static str) -> Result<Option<u32>, RowError> {
    match field {
        Field::Absent | Field::Null => Ok(None),
        Field::Wrong(t) => Err(RowError::BadId { field: which, value: t.clone() }),
        Field::Value(v) => {
            u32::try_from(*v).map(Some).map_err(|_| RowError::BadId { field: which, value: v.to_string() })
        }
    }
}

/// Validates a whole result: bad rows and later duplicates are skipped and
/// reported (each distinct problem once, see [`Complaints`]).
pub fn collect(source: &SourceId, rows: &[Row], complaints: &mut Complaints) -> Vec<VassalSpec> {
    let mut specs: BTreeMap<VassalName, VassalSpec> = BTreeMap::new();
    let mut first_at: BTreeMap<VassalName, &str> = BTreeMap::new();
    let mut current = HashSet::new();
    for row in rows {
        let outcome = spec(source, row).and_then(|spec| match first_at.get(&spec.name) {
            Some(first) => Err(RowError::Duplicate { first: (*first).to_owned() }),
            None => Ok(spec),
        });
        match outcome {
            Ok(spec) => {
                first_at.insert(spec.name.clone(), &row.position);
                specs.insert(spec.name.clone(), spec);
            }
            Err(problem) => complaints.report(source, row, &problem, &mut current),
        }
    }
    complaints.seen.retain(|key| current.contains(key));
    specs.into_values().collect()
}

/// Validates the rows a lookup of a few names returned, like [`collect`]
/// but reporting without forgetting the other rows' complaints; `None` when
/// a name comes twice (which of the two the whole query would use depends
/// on its order: only the whole query can tell).
pub fn collect_some(
    source: &SourceId,
    rows: &[Row],
    complaints: &mut Complaints,
) -> Option<BTreeMap<VassalName, VassalSpec>> {
    let mut specs = BTreeMap::new();
    for row in rows {
        match spec(source, row) {
            Ok(spec) => {
                if specs.insert(spec.name.clone(), spec).is_some() {
                    return None;
                }
            }
            Err(problem) => complaints.report(source, row, &problem, &mut HashSet::new()),
        }
    }
    Some(specs)
}

/// Remembers which bad rows were already reported, so each is logged once
/// while it stays bad (and again if it is fixed and breaks later).
#[derive(Debug, Default)]
pub struct Complaints {
    seen: HashSet<String>,
}

impl Complaints {
    fn report(&mut self, source: &SourceId, row: &Row, problem: &RowError, current: &mut HashSet<String>) {
        let config = row.config.value().map_or(0, |c| fnv1a(c.as_bytes()));
        let key = format!("{problem}\0{:?}\0{config:x}\0{:?}", row.name, row.ts);
        if self.seen.insert(key.clone()) {
            let vassal = match &row.name {
                Field::Value(name) => name.as_str(),
                _ => "(none)",
            };
            let at = &row.position;
            tracing::warn!(source = %source, vassal, %at, %problem, "skipping a bad row at {at}");
        }
        current.insert(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(position: &str, name: Option<&str>, config: Option<&str>, ts: &str) -> Row {
        let text = |v: Option<&str>| v.map_or(Field::Null, |s| Field::Value(s.to_owned()));
        Row {
            position: position.into(),
            name: text(name),
            config: text(config),
            ts: Field::Value(ts.into()),
            uid: Field::Absent,
            gid: Field::Absent,
            socket: Field::Absent,
        }
    }

    fn src() -> SourceId {
        SourceId("pg://test".into())
    }

    #[test]
    fn good_row_becomes_inline_spec() {
        let mut r = row("row 1", Some("app.ini"), Some("[uwsgi]\n"), "1700000000.123456");
        r.uid = Field::Value(1000);
        r.gid = Field::Value(100);
        r.socket = Field::Value("/run/app.sock".into());
        let s = spec(&src(), &r).unwrap();
        assert_eq!(s.name.as_str(), "app.ini");
        assert_eq!(s.config, ConfigRef::Inline("[uwsgi]\n".into()));
        assert!(s.version.starts_with("1700000000.123456#"), "{}", s.version);
        assert_eq!(s.owner, Some((1000, 100)));
        assert_eq!(s.socket.as_deref(), Some("/run/app.sock"));
    }

    #[test]
    fn version_changes_with_ts_config_owner_and_socket() {
        let base = row("row 1", Some("a.ini"), Some("x"), "1.5");
        let v = |r: &Row| spec(&src(), r).unwrap().version;
        let mut other = base.clone();
        other.ts = Field::Value("1.500001".into());
        assert_ne!(v(&base), v(&other));
        let mut other = base.clone();
        other.config = Field::Value("y".into());
        assert_ne!(v(&base), v(&other));
        let mut other = base.clone();
        (other.uid, other.gid) = (Field::Value(1), Field::Value(1));
        assert_ne!(v(&base), v(&other));
        let mut other = base.clone();
        other.socket = Field::Value(":3031".into());
        assert_ne!(v(&base), v(&other));
        assert_eq!(v(&base), v(&base.clone()));
    }

    #[test]
    fn bad_rows_are_refused() {
        let e = |r: Row| spec(&src(), &r).unwrap_err();
        assert_eq!(e(row("row 1", None, Some("x"), "1")), RowError::NoName);
        assert!(matches!(e(row("row 1", Some("../evil.ini"), Some("x"), "1")), RowError::BadName(_)));
        assert!(matches!(e(row("row 1", Some("a.sh"), Some("x"), "1")), RowError::BadName(_)));
        assert_eq!(e(row("row 1", Some("a.ini"), None, "1")), RowError::NoConfig);
        assert_eq!(e(row("row 1", Some("a.ini"), Some(" \n"), "1")), RowError::EmptyConfig);
        let mut r = row("row 1", Some("a.ini"), Some("x"), "1");
        r.ts = Field::Wrong("text".into());
        assert_eq!(e(r), RowError::TsType("text".into()));
        let mut r = row("row 1", Some("a.ini"), Some("x"), "1");
        (r.uid, r.gid) = (Field::Value(-1), Field::Value(0));
        assert!(matches!(e(r), RowError::BadId { field: "uid", .. }));
        let mut r = row("row 1", Some("a.ini"), Some("x"), "1");
        (r.uid, r.gid) = (Field::Value(1), Field::Null);
        assert_eq!(e(r), RowError::HalfOwner);
        let mut r = row("row 1", Some("a.ini"), Some("x"), "1");
        r.name = Field::Wrong("int4".into());
        assert_eq!(e(r), RowError::NameType("int4".into()));
    }

    #[test]
    fn collect_skips_bad_rows_and_later_duplicates() {
        let rows = vec![
            row("row 1", Some("a.ini"), Some("first"), "1"),
            row("row 2", None, Some("x"), "1"),
            row("row 3", Some("a.ini"), Some("second"), "1"),
            row("row 4", Some("b.ini"), Some("y"), "1"),
        ];
        let mut complaints = Complaints::default();
        let specs = collect(&src(), &rows, &mut complaints);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a.ini", "b.ini"]);
        assert_eq!(specs[0].config, ConfigRef::Inline("first".into()));
        assert_eq!(complaints.seen.len(), 2);
        // Still bad on the next poll: remembered, not reported again.
        collect(&src(), &rows, &mut complaints);
        assert_eq!(complaints.seen.len(), 2);
        // Fixed: forgotten.
        collect(&src(), &rows[..1], &mut complaints);
        assert!(complaints.seen.is_empty());
    }
}
