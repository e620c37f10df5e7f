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
