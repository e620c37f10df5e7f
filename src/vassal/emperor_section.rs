//! The `[emperor]` section of a uWSGI-style config (`emperor:` in YAML and
//! JSON, `<emperor>` in XML): settings meant for the emperor that uWSGI
//! itself ignores. Only `singleton` is read.

use super::node::Node;
use super::value::{bool_value, Ctx};
use super::{ConfigError, Format};

/// Whether the emperor section of a uWSGI-style config says `singleton = true`.
pub(super) fn singleton(format: Format, text: &str) -> Result<bool, ConfigError> {
    let value = match format {
        Format::Ini => ini(text),
        Format::Yaml => yaml(text),
        Format::Json => json(text),
        Format::Xml => xml(text),
        Format::Toml => None,
    };
    let Some((value, line)) = value else { return Ok(false) };
    bool_value(Ctx { key: "singleton", line }, value)
}

/// `singleton = …` in an `[emperor]` section, with its line.
fn ini(text: &str) -> Option<(Node, Option<usize>)> {
    let mut in_emperor = false;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_emperor = name.trim() == "emperor";
            continue;
        }
        let Some((key, value)) = line.split_once('=').filter(|_| in_emperor) else { continue };
        if key.trim() == "singleton" {
            return Some((Node::Str(value.trim().to_owned()), Some(index + 1)));
        }
    }
    None
}

fn yaml(text: &str) -> Option<(Node, Option<usize>)> {
    use yaml_rust2::{Yaml, YamlLoader};
    let docs = YamlLoader::load_from_str(text).ok()?;
    let Some(Yaml::Hash(top)) = docs.first() else { return None };
    let Some(Yaml::Hash(section)) = top.get(&Yaml::String("emperor".into())) else { return None };
    let value = match section.get(&Yaml::String("singleton".into()))? {
        Yaml::Boolean(b) => Node::Bool(*b),
        Yaml::Integer(n) => Node::Int(*n),
        Yaml::String(s) | Yaml::Real(s) => Node::Str(s.clone()),
        _ => Node::Other("a structured value"),
    };
    Some((value, None))
}

fn json(text: &str) -> Option<(Node, Option<usize>)> {
    let top: serde_json::Value = serde_json::from_str(text).ok()?;
    let value = match top.get("emperor")?.get("singleton")? {
        serde_json::Value::Bool(b) => Node::Bool(*b),
        serde_json::Value::Number(n) => n.as_i64().map_or(Node::Other("a decimal number"), Node::Int),
        serde_json::Value::String(s) => Node::Str(s.clone()),
        _ => Node::Other("a structured value"),
    };
    Some((value, None))
}

/// `<emperor><singleton>…</singleton></emperor>` anywhere in the document.
fn xml(text: &str) -> Option<(Node, Option<usize>)> {
    let start = text.find("<emperor>")?;
    let section = &text[start..text[start..].find("</emperor>").map_or(text.len(), |end| start + end)];
    let open = section.find("<singleton>")? + "<singleton>".len();
    let close = section[open..].find("</singleton>")? + open;
    Some((Node::Str(section[open..close].trim().to_owned()), Some(super::line_at(text, start + open))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_syntax_has_an_emperor_section() {
        let yes = [
            (Format::Ini, "[uwsgi]\nhttp = :80\n[emperor]\nsingleton = true\n"),
            (Format::Yaml, "uwsgi:\n  http: ':80'\nemperor:\n  singleton: true\n"),
            (Format::Json, r#"{"uwsgi": {"http": ":80"}, "emperor": {"singleton": true}}"#),
            (Format::Xml, "<uwsgi><http>:80</http><emperor><singleton>true</singleton></emperor></uwsgi>"),
        ];
        for (format, text) in yes {
            assert!(singleton(format, text).unwrap(), "{format}");
        }
        assert!(!singleton(Format::Ini, "[uwsgi]\nsingleton = true\n").unwrap());
        assert!(!singleton(Format::Yaml, "uwsgi:\n  http: ':80'\n").unwrap());
        let err = singleton(Format::Ini, "[emperor]\nsingleton = maybe\n").unwrap_err();
        assert!(err.to_string().contains("singleton"), "{err}");
    }
}
