//! Entry points for the fuzz targets in `fuzz/` and for the suite's
//! "arbitrary input never panics" property tests: each takes raw bytes, as
//! a file, a database row, a message or a client would bring them, and runs
//! one parser on them. A parser may refuse its input, never panic; every
//! refusal has a message an operator can act on.
//!
//! Compiled only for tests and with the `fuzzing` feature; not an API.

use crate::source::message::amqp::{http::Url, request};
use crate::source::message::{self, zmq, Versioner};
use crate::source::table::mongodb::{decode, relaxed_json};
use crate::source::table::rows::{self, Field, Row};
use crate::vassal::{self, Format};
use reconciler::SourceId;

/// Separates the parts of a multipart input (a byte that never occurs in UTF-8).
pub const SEPARATOR: u8 = 0xFF;

/// Every config format.
pub const FORMATS: [Format; 5] = [Format::Ini, Format::Xml, Format::Yaml, Format::Json, Format::Toml];

fn parts(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == SEPARATOR).collect()
}

fn source() -> SourceId {
    SourceId("fuzz://".into())
}

/// Checks that a refusal says something.
fn named<E: std::fmt::Display>(result: Result<impl Sized, E>) {
    if let Err(e) = result {
        assert!(!e.to_string().trim().is_empty(), "an error without a message");
    }
}

/// A config file: the first byte picks the format, the rest is its text.
pub fn config(data: &[u8]) {
    let Some((first, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let format = FORMATS[usize::from(*first) % FORMATS.len()];
    named(vassal::parse(format, text));
    // The `singleton` key, in `[vassal]` or a uWSGI-style `[emperor]` section.
    let _ = vassal::is_singleton(format, text);
}

/// A source argument on the command line (every scheme, or a bare path).
pub fn source_uri(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // A bare path is looked up on disk: keep to the URI forms.
    if !text.contains("://") {
        return;
    }
    named(crate::source::parse(text));
}

/// The relaxed JSON of a `mongodb://` filter.
pub fn relaxed_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    named(relaxed_json::to_strict(text));
}

/// A zmq multipart message, its parts split at [`SEPARATOR`].
pub fn zmq_message(data: &[u8]) {
    named(zmq::parse_command(&parts(data)));
}

/// An amqp message: its routing key, [`SEPARATOR`], its body.
pub fn amqp_message(data: &[u8]) {
    let (key, body) = match data.iter().position(|b| *b == SEPARATOR) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let Ok(key) = std::str::from_utf8(key) else { return };
    match request::classify(key, body) {
        Ok(request::Request::Inline { name, config }) => {
            named(message::inline_upsert(&source(), name, config, &mut Versioner::new()));
        }
        Ok(request::Request::Fetch(url)) => named(Url::parse(url)),
        Ok(_) => {}
        Err(e) => named(Err::<(), _>(e)),
    }
}

/// A database row's text fields (`name, config, ts, uid, gid, socket`),
/// split at [`SEPARATOR`]; a missing field is absent, an empty one NULL.
pub fn table_row(data: &[u8]) {
    let fields: Vec<Option<String>> =
        parts(data).iter().map(|p| Some(String::from_utf8_lossy(p).into_owned())).collect();
    let text = |i: usize| match fields.get(i) {
        None => Field::Absent,
        Some(Some(v)) if v.is_empty() => Field::Null,
        Some(Some(v)) => Field::Value(v.clone()),
        Some(None) => Field::Null,
    };
    let int = |i: usize| match text(i) {
        Field::Value(v) => v.parse().map_or_else(|_| Field::Wrong("text".into()), Field::Value),
        Field::Absent => Field::Absent,
        _ => Field::Null,
    };
    let row = Row {
        position: "row 1".into(),
        name: text(0),
        config: text(1),
        ts: text(2),
        uid: int(3),
        gid: int(4),
        socket: text(5),
    };
    named(rows::spec(&source(), &row));
}

/// A BSON document from a `mongodb://` collection.
pub fn mongodb_document(data: &[u8]) {
    let Ok(doc) = bson::Document::from_reader(data) else { return };
    named(rows::spec(&source(), &decode(&doc)));
}

/// A key the fd holder lists back to a restarted emperor.
pub fn fd_holder_key(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some((kind, _generation, name)) = crate::supervisor::fdholder::parse_key(text) {
        assert!(!kind.contains(':') && text.starts_with(kind) && text.ends_with(name));
    }
}

/// A request head on the control socket.
pub fn control_request(data: &[u8]) {
    named(crate::control::http::parse_head(data));
}

#[cfg(test)]
mod tests;
