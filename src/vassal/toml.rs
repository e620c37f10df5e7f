//! TOML configs: a `[vassal]` table makes a native vassal (it is mandatory,
//! since uWSGI cannot read TOML; [`super::parse`] reports its absence).
//!
//! The document is read with `toml`'s spanned parser so that table entries can
//! be put back in file order and keys can be reported with their line.

use std::borrow::Cow;
use std::ops::Range;

use ::toml::de::{DeTable, DeValue};
use ::toml::Spanned;

use super::native;
use super::node::Node;
use super::{line_at, ConfigError, Format, NativeSpec};

/// Returns the native spec if the document has a `vassal` table, else None.
pub(super) fn parse(text: &str) -> Result<Option<NativeSpec>, ConfigError> {
    let doc = DeTable::parse(text).map_err(|e| ConfigError::Syntax {
        format: Format::Toml,
        line: e.span().map(|span| line_at(text, span.start)),
        message: e.message().trim().to_string(),
    })?;
    let Some((key, section)) = doc.get_ref().get_key_value("vassal") else {
        return Ok(None);
    };
    let DeValue::Table(table) = section.get_ref() else {
        return Err(ConfigError::BadValue {
            key: "vassal".into(),
            line: Some(line_at(text, key.span().start)),
            message: "must be a table ([vassal]) of native keys".into(),
        });
    };
    let entries = ordered(table).into_iter().map(|(key, span, value)| (key, Some(line_at(text, span.start)), value));
    native::build(entries).map(Some)
}

/// A table's entries in file order, with each key's span.
fn ordered(table: &DeTable) -> Vec<(String, Range<usize>, Node)> {
    let mut entries: Vec<_> = table.iter().map(|(k, v)| (k.get_ref().to_string(), k.span(), to_node(v))).collect();
    entries.sort_by_key(|(_, span, _)| span.start);
    entries
}

/// Converts a TOML value to the syntax-neutral tree.
fn to_node(value: &Spanned<DeValue>) -> Node {
    match value.get_ref() {
        DeValue::String(s) => Node::Str(Cow::to_string(s)),
        DeValue::Integer(n) => {
            i64::from_str_radix(n.as_str(), n.radix()).map_or(Node::Other("an out-of-range integer"), Node::Int)
        }
        DeValue::Float(f) => f.as_str().parse().map_or(Node::Other("a malformed float"), Node::Float),
        DeValue::Boolean(b) => Node::Bool(*b),
        DeValue::Datetime(_) => Node::Other("a date-time"),
        DeValue::Array(items) => Node::List(items.iter().map(to_node).collect()),
        DeValue::Table(table) => Node::Map(ordered(table).into_iter().map(|(k, _, v)| (k, v)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{bad_value_key, error, native};
    use super::super::{ConfigError, Format, NativeSpec, ReloadMode};
    use std::time::Duration;

    #[test]
    fn full_native_section() {
        let spec = native(
            Format::Toml,
            "[other]\nx = 1\n\n[vassal]\nexec = [\"gunicorn\", \"-b\", \":8000\", \"app:app\"]\n\
             chdir = \"/srv/app\"\nuid = 33\ngid = \"www-data\"\nstop-signal = \"TERM\"\n\
             stop-timeout = 30\nreload = \"SIGHUP\"\n\n[vassal.env]\nZ = \"1\"\nA = 2\n",
        );
        assert_eq!(
            spec,
            NativeSpec {
                singleton: false,
                exec: vec!["gunicorn".into(), "-b".into(), ":8000".into(), "app:app".into()],
                chdir: Some("/srv/app".into()),
                env: vec![("Z".into(), "1".into()), ("A".into(), "2".into())],
                uid: Some("33".into()),
                gid: Some("www-data".into()),
                stop_signal: libc::SIGTERM,
                stop_timeout: Some(Duration::from_secs(30)),
                reload: ReloadMode::Signal(libc::SIGHUP),
                sockets: Vec::new(),
                readiness: Default::default(),
            }
        );
    }

    #[test]
    fn string_exec_and_inline_table() {
        let spec = native(
            Format::Toml,
            "vassal = { exec = \"redis-server --port 7000\", env = [\"A=b\"], stop-timeout = 0.5 }\n",
        );
        assert_eq!(spec.exec, ["redis-server", "--port", "7000"]);
        assert_eq!(spec.env, [("A".into(), "b".into())]);
        assert_eq!(spec.stop_timeout, Some(Duration::from_millis(500)));
    }

    #[test]
    fn errors() {
        assert!(matches!(error(Format::Toml, "[vassal]\nchdir = \"/\"\n"), ConfigError::MissingExec));
        assert!(matches!(error(Format::Toml, "title = \"x\"\n"), ConfigError::NoUwsgiForToml));
        assert!(matches!(error(Format::Toml, ""), ConfigError::NoUwsgiForToml));
        let err = error(Format::Toml, "[vassal]\nexec = \"x\"\n\nstopsignal = \"TERM\"\n");
        assert!(matches!(&err, ConfigError::UnknownKey { key, line: Some(4) } if key == "stopsignal"), "{err}");
        let err = error(Format::Toml, "[vassal]\nexec = \"x\"\nstop-signal = \"SIGNOPE\"\n");
        assert!(matches!(&err, ConfigError::BadSignal { line: Some(3), .. }), "{err}");
        assert_eq!(bad_value_key(Format::Toml, "[vassal]\nexec = \"x\"\nstop-timeout = -0.5\n"), "stop-timeout");
        assert_eq!(bad_value_key(Format::Toml, "[vassal]\nexec = \"x\"\nstop-timeout = inf\n"), "stop-timeout");
        let err = error(Format::Toml, "[vassal]\nexec = \"x\"\nchdir = 1979-05-27\n");
        assert!(err.to_string().contains("a date-time"), "{err}");
        let err = error(Format::Toml, "vassal = 3\n");
        assert!(matches!(&err, ConfigError::BadValue { key, line: Some(1), .. } if key == "vassal"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = error(Format::Toml, "[vassal]\nexec = \"x\"\nuid = \n");
        assert!(matches!(err, ConfigError::Syntax { format: Format::Toml, line: Some(3), .. }), "{err}");
        let err = error(Format::Toml, "[vassal]\nexec = \"x\"\nexec = \"y\"\n");
        assert!(matches!(err, ConfigError::Syntax { line: Some(3), .. }), "{err}");
    }
}
