//! Parsing shorthands shared by the tests of the five config readers.

use super::{parse, ConfigError, Format, NativeSpec, VassalConfig};

/// Parses `text` as `format` and returns its native spec, failing the test otherwise.
pub(super) fn native(format: Format, text: &str) -> NativeSpec {
    match parse(format, text).unwrap() {
        VassalConfig::Native(spec) => spec,
        other => panic!("expected native, got {other:?}"),
    }
}

/// Parses `text` as `format` and returns its error, failing the test if it parses.
pub(super) fn error(format: Format, text: &str) -> ConfigError {
    parse(format, text).unwrap_err()
}

/// Parses `text` as `format` and returns the key its `BadValue` error names,
/// failing the test on any other outcome.
pub(super) fn bad_value_key(format: Format, text: &str) -> String {
    match error(format, text) {
        ConfigError::BadValue { key, .. } => key,
        other => panic!("expected a bad value, got: {other}"),
    }
}
