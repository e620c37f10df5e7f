//! JSON configs: a top-level `"vassal"` object makes a native vassal.
//!
//! The text is read into [`Node`] with a small serde visitor rather than
//! `serde_json::Value`, so objects keep their file order and repeated keys
//! stay visible (and can be reported).

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::native;
use super::node::Node;
use super::{ConfigError, Format, NativeSpec};

/// Returns the native spec if the top-level object has a `"vassal"` key, else None.
pub(super) fn parse(text: &str) -> Result<Option<NativeSpec>, ConfigError> {
    let JsonNode(top) = serde_json::from_str(text).map_err(syntax)?;
    let Node::Map(top) = top else {
        return Ok(None);
    };
    let Some((_, section)) = top.into_iter().find(|(k, _)| k == "vassal") else {
        return Ok(None);
    };
    match section {
        Node::Map(entries) => native::build(entries.into_iter().map(|(k, v)| (k, None, v))).map(Some),
        other => Err(ConfigError::BadValue {
            key: "vassal".into(),
            line: None,
            message: format!("must be an object of native keys (exec, env, ...), found {}", other.kind()),
        }),
    }
}

/// serde_json reports "message at line L column C"; keep the line apart.
fn syntax(e: serde_json::Error) -> ConfigError {
    let text = e.to_string();
    let message = text.split(" at line ").next().unwrap_or(&text);
    ConfigError::Syntax {
        format: Format::Json,
        line: (e.line() > 0).then_some(e.line()),
        message: format!("{message} (column {})", e.column()),
    }
}

/// A [`Node`] that serde can build from any self-describing input.
struct JsonNode(Node);

impl<'de> Deserialize<'de> for JsonNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor).map(JsonNode)
    }
}

/// Builds a [`Node`] from whatever value serde_json meets.
struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(JsonNode(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, JsonNode(value))) = map.next_entry::<String, JsonNode>()? {
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
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
            Format::Json,
            r#"{"vassal": {"exec": ["node", "server.js"], "chdir": "/srv/app",
                "env": {"ZED": "last-alpha-first", "PORT": 3000}, "uid": 1000, "gid": 1000,
                "stop-signal": "SIGINT", "stop-timeout": 0.25, "reload": "restart"}}"#,
        );
        assert_eq!(
            spec,
            NativeSpec {
                singleton: false,
                exec: vec!["node".into(), "server.js".into()],
                chdir: Some("/srv/app".into()),
                env: vec![("ZED".into(), "last-alpha-first".into()), ("PORT".into(), "3000".into())],
                uid: Some("1000".into()),
                gid: Some("1000".into()),
                stop_signal: libc::SIGINT,
                stop_timeout: Some(Duration::from_millis(250)),
                reload: ReloadMode::Restart,
                sockets: Vec::new(),
                readiness: Default::default(),
            }
        );
    }

    #[test]
    fn string_exec_and_env_list() {
        let spec = native(Format::Json, r#"{"vassal": {"exec": "sh -c 'echo hi'", "env": ["A=1"], "reload": "hup"}}"#);
        assert_eq!(spec.exec, ["sh", "-c", "echo hi"]);
        assert_eq!(spec.env, [("A".into(), "1".into())]);
        assert_eq!(spec.reload, ReloadMode::Signal(libc::SIGHUP));
    }

    #[test]
    fn uwsgi_config() {
        let flag = VassalConfig::Uwsgi { flag: "--json" };
        assert_eq!(parse(Format::Json, r#"{"uwsgi": {"http": ":8000"}}"#).unwrap(), flag);
        assert_eq!(parse(Format::Json, "[1, 2]").unwrap(), flag);
    }

    #[test]
    fn errors() {
        assert!(matches!(error(Format::Json, r#"{"vassal": {}}"#), ConfigError::MissingExec));
        let err = error(Format::Json, r#"{"vassal": {"exec": "x", "exec_": 1}}"#);
        assert!(matches!(&err, ConfigError::UnknownKey { key, line: None } if key == "exec_"), "{err}");
        let err = error(Format::Json, r#"{"vassal": {"exec": "x", "exec": "y"}}"#);
        assert!(matches!(&err, ConfigError::DuplicateKey { key, .. } if key == "exec"), "{err}");
        let err = error(Format::Json, r#"{"vassal": {"exec": "x", "stop-signal": 0}}"#);
        assert!(matches!(&err, ConfigError::BadSignal { value, .. } if value == "0"), "{err}");
        assert_eq!(bad_value_key(Format::Json, r#"{"vassal": {"exec": "x", "stop-timeout": -1}}"#), "stop-timeout");
        assert_eq!(bad_value_key(Format::Json, r#"{"vassal": {"exec": "x", "uid": -5}}"#), "uid");
        let err = error(Format::Json, r#"{"vassal": {"exec": "x", "env": {"A": null}}}"#);
        assert!(err.to_string().contains("`A`"), "{err}");
        assert_eq!(bad_value_key(Format::Json, r#"{"vassal": ["x"]}"#), "vassal");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = error(Format::Json, "{\n  \"vassal\": {\n    \"exec\": \"x\",\n  }\n}");
        assert!(matches!(err, ConfigError::Syntax { format: Format::Json, line: Some(4), .. }), "{err}");
        assert!(matches!(error(Format::Json, ""), ConfigError::Syntax { .. }));
    }
}
