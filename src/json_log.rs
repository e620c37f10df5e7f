//! The emperor's own log as JSON lines (`--log-format json`), for log
//! shippers: one object per event with `timestamp` (RFC 3339, UTC),
//! `level`, `target`, `message` and every other field of the event under
//! its own name (`vassal`, `pid`, `error` …), plus `spans` (their names)
//! when the event happened inside any.

use serde_json::{Map, Value};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats each event as one JSON object on one line.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFormat;

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let message = fields.0.remove("message").unwrap_or_default();
        // The fixed keys first, in this order, for a reader's eye; then the
        // event's own fields (one named like a fixed key is left out).
        let mut entries: Vec<(&str, Value)> = vec![
            ("timestamp", timestamp.into()),
            ("level", meta.level().as_str().into()),
            ("target", meta.target().into()),
            ("message", message),
        ];
        let own = fields.0.iter().filter(|(key, _)| !FIXED_KEYS.contains(&key.as_str()));
        entries.extend(own.map(|(key, value)| (key.as_str(), value.clone())));
        if let Some(scope) = ctx.event_scope() {
            entries.push(("spans", Value::from_iter(scope.from_root().map(|span| span.name()))));
        }
        for (i, (key, value)) in entries.iter().enumerate() {
            let separator = if i == 0 { '{' } else { ',' };
            write!(writer, "{separator}{}:{value}", Value::from(*key))?;
        }
        writeln!(writer, "}}")
    }
}

/// Keys the formatter sets itself.
const FIXED_KEYS: [&str; 5] = ["timestamp", "level", "target", "message", "spans"];

/// An event's fields as JSON values: numbers and booleans as such, the
/// rest as text.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, field: &Field, value: impl Into<Value>) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_become_json_objects_with_every_field() {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt().event_format(JsonFormat).with_writer(move || sink.clone()).finish();
        tracing::subscriber::with_default(subscriber, || {
            let name = "app.ini";
            tracing::warn!(vassal = %name, pid = 42, ok = false, "vassal died");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["message"], "vassal died");
        assert_eq!(line["vassal"], "app.ini");
        assert_eq!(line["pid"], 42);
        assert_eq!(line["ok"], false);
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], "emperor::json_log::tests");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
        assert!(text.starts_with(r#"{"timestamp":"#), "{text}");
        let ordered = r#","level":"WARN","target":"emperor::json_log::tests","message":"vassal died","ok":false,"pid":42,"vassal":"app.ini"}"#;
        assert!(text.trim_end().ends_with(ordered), "{text}");
    }
}
