//! The format-independent half of native-section parsing.
//!
//! Every syntax reduces its native section to `(key, line, Node)` entries;
//! [`SpecBuilder`] checks the keys and value shapes once, so all syntaxes
//! accept the same keys and report mistakes the same way.

use std::path::PathBuf;
use std::time::Duration;

use super::value::{env_value, exec_value, id_value, reload_value, signal_value, text_value, timeout_value, Ctx};
use super::{ConfigError, NativeSpec, ReloadMode};

/// The keys a native section may hold, in the order we list them to operators.
pub(super) const KEYS: &[&str] = &["exec", "chdir", "env", "uid", "gid", "stop-signal", "stop-timeout", "reload"];

/// A syntax-neutral value: what YAML, JSON and TOML values (and INI/XML text) map to.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    /// Entries in file order (duplicates kept, so they can be reported).
    Map(Vec<(String, Node)>),
    /// A value no key accepts (TOML date-time, YAML alias...), described with its article.
    Other(&'static str),
}

impl Node {
    /// The value's type with its article ("a string"), for error messages.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a decimal number",
            Node::Str(_) => "a string",
            Node::List(_) => "a list",
            Node::Map(_) => "a mapping",
            Node::Other(kind) => kind,
        }
    }

    /// The text of a scalar (numbers and booleans in decimal/`true` form).
    pub(super) fn scalar_text(&self) -> Option<String> {
        match self {
            Node::Str(s) => Some(s.clone()),
            Node::Int(n) => Some(n.to_string()),
            Node::Float(f) => Some(f.to_string()),
            Node::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// Collects native-section entries one by one, then yields a [`NativeSpec`].
#[derive(Debug, Default)]
pub(super) struct SpecBuilder {
    seen: Vec<&'static str>,
    exec: Option<Vec<String>>,
    chdir: Option<PathBuf>,
    env: Vec<(String, String)>,
    uid: Option<String>,
    gid: Option<String>,
    stop_signal: Option<i32>,
    stop_timeout: Option<Duration>,
    reload: Option<ReloadMode>,
}

impl SpecBuilder {
    /// Whether an `exec` entry has been accepted already.
    pub(super) fn has_exec(&self) -> bool {
        self.exec.is_some()
    }

    /// Checks and records one entry; `line` is where the key is, when known.
    pub(super) fn set(&mut self, key: &str, line: Option<usize>, value: Node) -> Result<(), ConfigError> {
        let Some(&name) = KEYS.iter().find(|k| **k == key) else {
            return Err(ConfigError::UnknownKey { key: key.to_string(), line });
        };
        if name != "env" && self.seen.contains(&name) {
            return Err(ConfigError::DuplicateKey { key: name.to_string(), line });
        }
        self.seen.push(name);
        let ctx = Ctx { key: name, line };
        match name {
            "exec" => self.exec = Some(exec_value(ctx, value)?),
            "chdir" => self.chdir = Some(PathBuf::from(text_value(ctx, value)?)),
            "env" => self.env.extend(env_value(ctx, value)?),
            "uid" => self.uid = Some(id_value(ctx, value)?),
            "gid" => self.gid = Some(id_value(ctx, value)?),
            "stop-signal" => self.stop_signal = Some(signal_value(ctx, value)?),
            "stop-timeout" => self.stop_timeout = Some(timeout_value(ctx, value)?),
            _ => self.reload = Some(reload_value(ctx, value)?),
        }
        Ok(())
    }

    /// Applies the defaults; fails when `exec` was never given.
    pub(super) fn finish(self) -> Result<NativeSpec, ConfigError> {
        Ok(NativeSpec {
            exec: self.exec.ok_or(ConfigError::MissingExec)?,
            chdir: self.chdir,
            env: self.env,
            uid: self.uid,
            gid: self.gid,
            stop_signal: self.stop_signal.unwrap_or(libc::SIGTERM),
            stop_timeout: self.stop_timeout,
            reload: self.reload.unwrap_or(ReloadMode::Restart),
        })
    }
}

/// Builds a spec from a whole section's entries, in file order.
pub(super) fn build<I>(entries: I) -> Result<NativeSpec, ConfigError>
where
    I: IntoIterator<Item = (String, Option<usize>, Node)>,
{
    let mut builder = SpecBuilder::default();
    for (key, line, value) in entries {
        builder.set(&key, line, value)?;
    }
    builder.finish()
}
