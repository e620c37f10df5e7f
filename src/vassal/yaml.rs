//! YAML configs: a top-level `vassal:` mapping makes a native vassal.

use yaml_rust2::{Yaml, YamlLoader};

use super::native;
use super::node::Node;
use super::{ConfigError, Format, NativeSpec};

/// Returns the native spec if the first document has a top-level `vassal` key, else None.
pub(super) fn parse(text: &str) -> Result<Option<NativeSpec>, ConfigError> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| ConfigError::Syntax {
        format: Format::Yaml,
        line: Some(e.marker().line()),
        message: e.info().to_string(),
    })?;
    let Some(Yaml::Hash(top)) = docs.first() else {
        return Ok(None);
    };
    let Some(section) = top.get(&Yaml::String("vassal".into())) else {
        return Ok(None);
    };
    let entries = match to_node(section) {
        Node::Map(entries) => entries,
        other => {
            return Err(ConfigError::BadValue {
                key: "vassal".into(),
                line: None,
                message: format!("must be a mapping of native keys (exec, env, ...), found {}", other.kind()),
            })
        }
    };
    native::build(entries.into_iter().map(|(k, v)| (k, None, v))).map(Some)
}

/// A mapping key as text; non-string scalars are written out, others described.
fn key_text(key: &Yaml) -> String {
    match key {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(n) => n.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => "~".into(),
        other => format!("{other:?}"),
    }
}

/// Converts a YAML value to the syntax-neutral tree.
fn to_node(value: &Yaml) -> Node {
    match value {
        Yaml::String(s) => Node::Str(s.clone()),
        Yaml::Integer(n) => Node::Int(*n),
        Yaml::Real(_) => value.as_f64().map_or(Node::Other("a malformed number"), Node::Float),
        Yaml::Boolean(b) => Node::Bool(*b),
        Yaml::Null => Node::Null,
        Yaml::Array(items) => Node::List(items.iter().map(to_node).collect()),
        Yaml::Hash(map) => Node::Map(map.iter().map(|(k, v)| (key_text(k), to_node(v))).collect()),
        Yaml::Alias(_) => Node::Other("an alias"),
        Yaml::BadValue => Node::Other("an invalid value"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{bad_value_key, error, native};
    use super::super::{parse, ConfigError, Format, NativeSpec, ReloadMode, VassalConfig};
    use std::time::Duration;

    #[test]
    fn full_native_section() {
        let spec = native(
            Format::Yaml,
            "vassal:\n  exec: [python3, -m, http.server, 8000]\n  chdir: /srv/app\n\
             \x20 env:\n    PORT: 8000\n    DEBUG: true\n    NAME: app\n\
             \x20 uid: 1000\n  gid: www-data\n  stop-signal: QUIT\n  stop-timeout: 1.5\n  reload: SIGUSR1\n",
        );
        assert_eq!(
            spec,
            NativeSpec {
                singleton: false,
                exec: vec!["python3".into(), "-m".into(), "http.server".into(), "8000".into()],
                chdir: Some("/srv/app".into()),
                env: vec![
                    ("PORT".into(), "8000".into()),
                    ("DEBUG".into(), "true".into()),
                    ("NAME".into(), "app".into())
                ],
                uid: Some("1000".into()),
                gid: Some("www-data".into()),
                stop_signal: libc::SIGQUIT,
                stop_timeout: Some(Duration::from_millis(1500)),
                reload: ReloadMode::Signal(libc::SIGUSR1),
                sockets: Vec::new(),
                readiness: Default::default(),
            }
        );
    }

    #[test]
    fn string_exec_and_env_list() {
        let spec = native(
            Format::Yaml,
            "vassal:\n  exec: \"sleep 'a b'\"\n  env: [A=1, B=x=y]\n  stop-signal: 2\n  stop-timeout: 4\n",
        );
        assert_eq!(spec.exec, ["sleep", "a b"]);
        assert_eq!(spec.env, [("A".into(), "1".into()), ("B".into(), "x=y".into())]);
        assert_eq!(spec.stop_signal, 2);
        assert_eq!(spec.stop_timeout, Some(Duration::from_secs(4)));
    }

    #[test]
    fn uwsgi_config() {
        let flag = VassalConfig::Uwsgi { flag: "--yaml" };
        assert_eq!(parse(Format::Yaml, "uwsgi:\n  http: :8000\n  master: true\n").unwrap(), flag);
        assert_eq!(parse(Format::Yaml, "").unwrap(), flag);
        assert_eq!(parse(Format::Yaml, "- a list\n").unwrap(), flag);
    }

    #[test]
    fn errors() {
        assert!(matches!(error(Format::Yaml, "vassal:\n  chdir: /tmp\n"), ConfigError::MissingExec));
        assert_eq!(bad_value_key(Format::Yaml, "vassal:\n  exec: []\n"), "exec");
        let err = error(Format::Yaml, "vassal:\n  exec: x\n  user: root\n");
        assert!(matches!(&err, ConfigError::UnknownKey { key, .. } if key == "user"), "{err}");
        let err = error(Format::Yaml, "vassal:\n  exec: x\n  stop-signal: NOPE\n");
        assert!(matches!(&err, ConfigError::BadSignal { value, .. } if value == "NOPE"), "{err}");
        let err = error(Format::Yaml, "vassal:\n  exec: x\n  stop-timeout: -3\n");
        assert!(err.to_string().contains("negative"), "{err}");
        assert_eq!(bad_value_key(Format::Yaml, "vassal:\n  exec: x\n  stop-timeout: [1]\n"), "stop-timeout");
        assert_eq!(bad_value_key(Format::Yaml, "vassal: python3\n"), "vassal");
        let err = error(Format::Yaml, "vassal:\n  exec: [python3, {a: b}]\n");
        assert!(err.to_string().contains("item 2"), "{err}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = error(Format::Yaml, "vassal:\n  exec: [a, b\n  uid: 1\n");
        assert!(matches!(err, ConfigError::Syntax { format: Format::Yaml, line: Some(_), .. }), "{err}");
        let err = error(Format::Yaml, "uwsgi:\n  http: :8000\n bad: indent\n");
        assert!(matches!(err, ConfigError::Syntax { line: Some(3), .. }), "{err}");
        let err = error(Format::Yaml, "vassal:\n  exec: a\n  exec: b\n");
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }
}
