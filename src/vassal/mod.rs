//! Vassal config files: turns the text of a config into a uniform [`VassalConfig`].
//!
//! A config either holds a *native* section (`[vassal]` in INI/TOML, a
//! `<vassal>` root in XML, a top-level `vassal` key in YAML/JSON) describing a
//! program the emperor runs directly, or it is a uWSGI config that the emperor
//! hands to the uWSGI binary with the matching `--ini`/`--xml`/... flag.

mod emperor_section;
mod ini;
mod json;
mod native;
mod node;
mod signal;
#[cfg(test)]
mod testing;
mod toml;
mod value;
mod xml;
mod yaml;

pub use signal::parse_signal;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Config syntax, chosen by the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `.ini`: uWSGI's INI dialect, or a `[vassal]` section.
    Ini,
    /// `.xml`: a `<uwsgi>` (or other) root, or a `<vassal>` root.
    Xml,
    /// `.yml`/`.yaml`: a top-level `vassal:` mapping, or a uWSGI config.
    Yaml,
    /// `.json`/`.js`: a top-level `"vassal"` object, or a uWSGI config.
    Json,
    /// `.toml`: must hold a `[vassal]` table (uWSGI cannot read TOML).
    Toml,
}

impl Format {
    /// Maps a file extension to its syntax, so the emperor knows how to read a config.
    ///
    /// ".ini" -> Ini, ".xml" -> Xml, ".yml"/".yaml" -> Yaml, ".json"/".js" -> Json,
    /// ".toml" -> Toml; anything else -> None. The leading dot is optional, so
    /// the output of [`std::path::Path::extension`] works too.
    pub fn from_extension(ext: &str) -> Option<Format> {
        match ext.strip_prefix('.').unwrap_or(ext) {
            "ini" => Some(Format::Ini),
            "xml" => Some(Format::Xml),
            "yml" | "yaml" => Some(Format::Yaml),
            "json" | "js" => Some(Format::Json),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }

    /// The uWSGI command-line flag that loads this syntax ("--ini", "--xml",
    /// "--yaml", "--json"); None for Toml, because uWSGI has no TOML loader.
    pub fn uwsgi_flag(self) -> Option<&'static str> {
        match self {
            Format::Ini => Some("--ini"),
            Format::Xml => Some("--xml"),
            Format::Yaml => Some("--yaml"),
            Format::Json => Some("--json"),
            Format::Toml => None,
        }
    }
}

impl fmt::Display for Format {
    /// The syntax's usual upper-case name, as used in error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Ini => "INI",
            Format::Xml => "XML",
            Format::Yaml => "YAML",
            Format::Json => "JSON",
            Format::Toml => "TOML",
        })
    }
}

/// How a vassal runs: what [`parse`] makes of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VassalConfig {
    /// No native section: run the vassal binary (uWSGI) on the config, with this flag ("--ini", ...).
    Uwsgi {
        /// The uWSGI flag that loads the config's syntax.
        flag: &'static str,
    },
    /// A native section: run a program directly.
    Native(NativeSpec),
}

/// A program the emperor runs directly, as described by a native section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeSpec {
    /// The argv, never empty; argv[0] is a bare program name (looked up in PATH later) or a path.
    pub exec: Vec<String>,
    /// Working directory to change into before exec, if any.
    pub chdir: Option<PathBuf>,
    /// Extra environment variables, in file order.
    pub env: Vec<(String, String)>,
    /// User to run as: a name or a number, as written.
    pub uid: Option<String>,
    /// Group to run as: a name or a number, as written.
    pub gid: Option<String>,
    /// Signal (libc number) asking the program to stop; default `SIGTERM`.
    pub stop_signal: i32,
    /// How long to wait after `stop_signal` before killing; None = the emperor's default.
    pub stop_timeout: Option<Duration>,
    /// What a reload does; default [`ReloadMode::Restart`].
    pub reload: ReloadMode,
    /// Addresses of the sockets the emperor binds and holds for the program
    /// (passed as fds 3… with `LISTEN_FDS`), kept open across its restarts.
    pub sockets: Vec<String>,
    /// What the program tells the emperor through `NOTIFY_SOCKET`: whether
    /// it is started only once it says `READY=1`, and its watchdog.
    pub readiness: Readiness,
    /// `singleton = true`: it runs on one emperor of the fleet at a time,
    /// under a lease held in its source.
    pub singleton: bool,
}

/// The systemd-style notifications a native vassal opts into (the `notify`
/// and `watchdog` keys).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    /// `notify = true`: the vassal is `starting` until it sends `READY=1`
    /// (otherwise it is ready as soon as it is spawned).
    pub notify: bool,
    /// `watchdog = SECS`: the vassal must send `WATCHDOG=1` at least this
    /// often, or it is killed and respawned.
    pub watchdog: Option<Duration>,
}

/// What the emperor does when a native vassal must reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadMode {
    /// Stop the program and start it again.
    Restart,
    /// Send this signal (libc number) and let the program reload itself.
    Signal(i32),
}

/// Why a config cannot be used; each message names the offending key, line or element.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid in its syntax.
    #[error("invalid {format}{}: {message}", at_line(.line))]
    Syntax {
        /// The syntax the file was read as.
        format: Format,
        /// 1-based line of the error, when the parser reports one.
        line: Option<usize>,
        /// The parser's explanation.
        message: String,
    },
    /// A TOML config without a `[vassal]` table: uWSGI cannot run it.
    #[error(
        "TOML config has no [vassal] table; uWSGI cannot read TOML, so a TOML config must describe a native vassal"
    )]
    NoUwsgiForToml,
    /// The native section does not say what to run.
    #[error("the vassal section has no `exec` key; it must name the program to run")]
    MissingExec,
    /// A key the native section does not know (likely a typo).
    #[error("unknown key `{key}`{} in the vassal section; known keys are: {}", at_line(.line), native::Key::list())]
    UnknownKey {
        /// The key as written.
        key: String,
        /// 1-based line of the key, when known.
        line: Option<usize>,
    },
    /// A key other than `env` given twice.
    #[error("key `{key}`{} appears more than once in the vassal section; only `env` may repeat", at_line(.line))]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// 1-based line of the repetition, when known.
        line: Option<usize>,
    },
    /// A value that should be a signal is not a known signal name or number.
    #[error("`{key}`{}: `{value}` is not a signal name or number (e.g. SIGTERM, HUP, 15)", at_line(.line))]
    BadSignal {
        /// The key holding the signal.
        key: String,
        /// The value as written.
        value: String,
        /// 1-based line of the key, when known.
        line: Option<usize>,
    },
    /// A value of the wrong shape or range.
    #[error("`{key}`{}: {message}", at_line(.line))]
    BadValue {
        /// The key (or element) holding the value.
        key: String,
        /// 1-based line of the key, when known.
        line: Option<usize>,
        /// What is wrong and what is expected.
        message: String,
    },
}

/// " (line N)" when the line is known, for error messages.
fn at_line(line: &Option<usize>) -> String {
    line.map(|n| format!(" (line {n})")).unwrap_or_default()
}

/// The 1-based line holding byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
}

/// Parses `text` written in `format` into how the vassal must run.
///
/// A config with a native section yields [`VassalConfig::Native`]; any other
/// syntactically valid config yields [`VassalConfig::Uwsgi`] (except TOML,
/// which uWSGI cannot read).
pub fn parse(format: Format, text: &str) -> Result<VassalConfig, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let native = match format {
        Format::Ini => ini::parse(text)?,
        Format::Xml => xml::parse(text)?,
        Format::Yaml => yaml::parse(text)?,
        Format::Json => json::parse(text)?,
        Format::Toml => self::toml::parse(text)?,
    };
    match (native, format.uwsgi_flag()) {
        (Some(spec), _) => Ok(VassalConfig::Native(spec)),
        (None, Some(flag)) => Ok(VassalConfig::Uwsgi { flag }),
        (None, None) => Err(ConfigError::NoUwsgiForToml),
    }
}

/// Whether the config asks to run on one emperor of a fleet at a time:
/// `singleton = true` in its native section, or in the `[emperor]` section
/// (`emperor:` key, `<emperor>` element) of a uWSGI-style config.
pub fn is_singleton(format: Format, text: &str) -> Result<bool, ConfigError> {
    if !text.contains("singleton") {
        return Ok(false);
    }
    match parse(format, text)? {
        VassalConfig::Native(spec) => Ok(spec.singleton),
        VassalConfig::Uwsgi { .. } => emperor_section::singleton(format, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_map_to_formats() {
        assert_eq!(Format::from_extension(".ini"), Some(Format::Ini));
        assert_eq!(Format::from_extension(".xml"), Some(Format::Xml));
        assert_eq!(Format::from_extension(".yml"), Some(Format::Yaml));
        assert_eq!(Format::from_extension(".yaml"), Some(Format::Yaml));
        assert_eq!(Format::from_extension(".json"), Some(Format::Json));
        assert_eq!(Format::from_extension(".js"), Some(Format::Json), "JSON, as upstream");
        assert_eq!(Format::from_extension("toml"), Some(Format::Toml));
        assert_eq!(Format::from_extension(".txt"), None);
        assert_eq!(Format::from_extension(""), None);
    }

    #[test]
    fn uwsgi_flags() {
        assert_eq!(Format::Ini.uwsgi_flag(), Some("--ini"));
        assert_eq!(Format::Xml.uwsgi_flag(), Some("--xml"));
        assert_eq!(Format::Yaml.uwsgi_flag(), Some("--yaml"));
        assert_eq!(Format::Json.uwsgi_flag(), Some("--json"));
        assert_eq!(Format::Toml.uwsgi_flag(), None);
    }

    #[test]
    fn toml_without_vassal_is_an_error() {
        let err = parse(Format::Toml, "[uwsgi]\nhttp = \":8000\"\n").unwrap_err();
        assert!(matches!(err, ConfigError::NoUwsgiForToml), "{err}");
        assert!(err.to_string().contains("[vassal]"));
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let cfg = parse(Format::Ini, "\u{feff}[vassal]\nexec = true\n").unwrap();
        assert!(matches!(cfg, VassalConfig::Native(_)));
    }

    #[test]
    fn error_messages_name_key_and_line() {
        let err = ConfigError::UnknownKey { key: "exce".into(), line: Some(3) };
        assert_eq!(
            err.to_string(),
            "unknown key `exce` (line 3) in the vassal section; known keys are: \
             exec, chdir, env, uid, gid, stop-signal, stop-timeout, reload, socket, notify, watchdog, singleton"
        );
        let err = ConfigError::Syntax { format: Format::Json, line: None, message: "eof".into() };
        assert_eq!(err.to_string(), "invalid JSON: eof");
    }
}
