//! Checks and converts the value of each native key, whatever syntax it came from.

use crate::source::util::seconds;
use std::time::Duration;

use super::node::Node;
use super::{parse_signal, ConfigError, ReloadMode};

/// Where a value came from, to build precise errors.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a> {
    pub(super) key: &'a str,
    pub(super) line: Option<usize>,
}

impl Ctx<'_> {
    fn bad(self, message: impl Into<String>) -> ConfigError {
        ConfigError::BadValue { key: self.key.to_string(), line: self.line, message: message.into() }
    }
}

/// Rejects NUL bytes, which cannot be passed to `execve`.
fn no_nul(ctx: Ctx, text: String) -> Result<String, ConfigError> {
    if text.contains('\0') {
        return Err(ctx.bad("contains a NUL byte, which a process argument cannot hold"));
    }
    Ok(text)
}

/// `exec`: a string split with shell rules, or a list of strings.
pub(super) fn exec_value(ctx: Ctx, value: Node) -> Result<Vec<String>, ConfigError> {
    let argv = match value {
        Node::Str(s) => {
            shell_words::split(&s).map_err(|e| ctx.bad(format!("cannot split `{s}` into arguments: {e}")))?
        }
        Node::List(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                item.scalar_text()
                    .ok_or_else(|| ctx.bad(format!("item {} is {}, expected a string", i + 1, item.kind())))
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(ctx.bad(format!("expected a command line string or a list of strings, found {}", other.kind())))
        }
    };
    match argv.first() {
        None => Err(ctx.bad("is empty: it must name at least the program to run")),
        Some(program) if program.is_empty() => Err(ctx.bad("the program name (first argument) is empty")),
        Some(_) => argv.into_iter().map(|arg| no_nul(ctx, arg)).collect(),
    }
}

/// `chdir`: a non-empty string.
pub(super) fn text_value(ctx: Ctx, value: Node) -> Result<String, ConfigError> {
    match value {
        Node::Str(s) if s.trim().is_empty() => Err(ctx.bad("is empty")),
        Node::Str(s) => no_nul(ctx, s),
        other => Err(ctx.bad(format!("expected a string, found {}", other.kind()))),
    }
}

/// `socket`: one non-empty string, or a list of them (TOML and JSON cannot
/// repeat a key).
pub(super) fn texts_value(ctx: Ctx, value: Node) -> Result<Vec<String>, ConfigError> {
    match value {
        Node::List(items) => items.into_iter().map(|item| text_value(ctx, item)).collect(),
        other => Ok(vec![text_value(ctx, other)?]),
    }
}

/// `uid`/`gid`: a name, or a non-negative integer kept as its decimal text.
pub(super) fn id_value(ctx: Ctx, value: Node) -> Result<String, ConfigError> {
    match value {
        Node::Int(n) if n >= 0 => Ok(n.to_string()),
        Node::Int(n) => Err(ctx.bad(format!("`{n}` is negative; expected a name or a non-negative id"))),
        Node::Str(s) => text_value(ctx, Node::Str(s.trim().to_string())),
        other => Err(ctx.bad(format!("expected a name or an integer id, found {}", other.kind()))),
    }
}

/// `env`: `KEY=VALUE` text, a list of such texts, or a mapping.
pub(super) fn env_value(ctx: Ctx, value: Node) -> Result<Vec<(String, String)>, ConfigError> {
    let pairs = match value {
        Node::Str(s) => vec![split_env(ctx, &s)?],
        Node::List(items) => items
            .into_iter()
            .map(|item| match item {
                Node::Str(s) => split_env(ctx, &s),
                other => Err(ctx.bad(format!("list items must be `KEY=VALUE` strings, found {}", other.kind()))),
            })
            .collect::<Result<_, _>>()?,
        Node::Map(entries) => entries
            .into_iter()
            .map(|(name, v)| match v.scalar_text() {
                Some(text) => Ok((name, text)),
                None => Err(ctx.bad(format!("variable `{name}` has {} value, expected a string", v.kind()))),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(ctx.bad(format!("expected `KEY=VALUE`, a list or a mapping, found {}", other.kind()))),
    };
    pairs.into_iter().map(|pair| check_env(ctx, pair)).collect()
}

/// Splits `KEY=VALUE` at the first `=`.
fn split_env(ctx: Ctx, text: &str) -> Result<(String, String), ConfigError> {
    let (name, value) =
        text.split_once('=').ok_or_else(|| ctx.bad(format!("`{text}` is not of the form KEY=VALUE")))?;
    Ok((name.trim().to_string(), value.to_string()))
}

/// A variable name must be non-empty and free of `=`; neither part may hold NUL.
fn check_env(ctx: Ctx, (name, value): (String, String)) -> Result<(String, String), ConfigError> {
    if name.is_empty() || name.contains('=') {
        return Err(ctx.bad(format!("`{name}` is not a valid environment variable name")));
    }
    Ok((no_nul(ctx, name)?, no_nul(ctx, value)?))
}

/// `stop-signal`: a signal name or number.
pub(super) fn signal_value(ctx: Ctx, value: Node) -> Result<i32, ConfigError> {
    let text = match value {
        Node::Str(s) => s,
        Node::Int(n) => n.to_string(),
        other => return Err(ctx.bad(format!("expected a signal name or number, found {}", other.kind()))),
    };
    parse_signal(&text).ok_or(ConfigError::BadSignal { key: ctx.key.to_string(), value: text, line: ctx.line })
}

/// `stop-timeout`: seconds, integer or decimal, not negative.
pub(super) fn timeout_value(ctx: Ctx, value: Node) -> Result<Duration, ConfigError> {
    let parsed = match value {
        Node::Int(n) => seconds::from_f64(n as f64),
        Node::Float(f) => seconds::from_f64(f),
        Node::Str(s) => seconds::parse(s.trim()),
        other => return Err(ctx.bad(format!("expected a number of seconds, found {}", other.kind()))),
    };
    parsed.map_err(|e| ctx.bad(e.to_string()))
}

/// `notify`: a boolean (`true`/`false`, or `yes`/`no`, `on`/`off`, `1`/`0`
/// as text, for INI and XML).
pub(super) fn bool_value(ctx: Ctx, value: Node) -> Result<bool, ConfigError> {
    let text = match value {
        Node::Bool(b) => return Ok(b),
        Node::Int(n @ (0 | 1)) => return Ok(n == 1),
        Node::Str(s) => s,
        other => return Err(ctx.bad(format!("expected true or false, found {}", other.kind()))),
    };
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(ctx.bad(format!("`{text}` is not true or false"))),
    }
}

/// `watchdog`: seconds, more than zero (a zero watchdog would kill at once).
pub(super) fn watchdog_value(ctx: Ctx, value: Node) -> Result<Duration, ConfigError> {
    match timeout_value(ctx, value)? {
        Duration::ZERO => Err(ctx.bad("must be more than 0 seconds")),
        every => Ok(every),
    }
}

/// `reload`: `restart`, or the signal to send instead of restarting.
pub(super) fn reload_value(ctx: Ctx, value: Node) -> Result<ReloadMode, ConfigError> {
    let text = match value {
        Node::Str(s) => s,
        other => return Err(ctx.bad(format!("expected `restart` or a signal name, found {}", other.kind()))),
    };
    if text.trim().eq_ignore_ascii_case("restart") {
        return Ok(ReloadMode::Restart);
    }
    parse_signal(&text)
        .map(ReloadMode::Signal)
        .ok_or_else(|| ctx.bad(format!("`{text}` is neither `restart` nor a signal name or number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: Ctx = Ctx { key: "k", line: Some(7) };

    #[test]
    fn seconds_are_strict_decimals() {
        let secs = |text: &str| timeout_value(CTX, Node::Str(text.into()));
        assert_eq!(secs("10").unwrap(), Duration::from_secs(10));
        assert_eq!(secs("2.5").unwrap(), Duration::from_millis(2500));
        assert!(secs("-1").unwrap_err().to_string().contains("is negative"));
        for text in ["", ".5", "5.", "1e3", "inf", "NaN", "+1", "1_000"] {
            assert!(secs(text).is_err(), "{text}");
        }
    }

    #[test]
    fn nul_bytes_are_rejected() {
        let err = exec_value(CTX, Node::List(vec![Node::Str("a\0b".into())])).unwrap_err();
        assert_eq!(err.to_string(), "`k` (line 7): contains a NUL byte, which a process argument cannot hold");
        assert!(env_value(CTX, Node::Str("A=\0".into())).is_err());
    }

    #[test]
    fn value_shapes() {
        let map = Node::Map(vec![("B".into(), Node::Float(1.5)), ("A".into(), Node::Bool(false))]);
        let env = env_value(CTX, map).unwrap();
        assert_eq!(env, [("B".into(), "1.5".into()), ("A".into(), "false".into())]);
        assert!(env_value(CTX, Node::Map(vec![("A".into(), Node::List(vec![]))])).is_err());
        assert!(exec_value(CTX, Node::List(vec![Node::Str(String::new())])).is_err());
        assert!(exec_value(CTX, Node::Map(vec![])).is_err());
        assert_eq!(id_value(CTX, Node::Int(0)).unwrap(), "0");
        assert!(id_value(CTX, Node::Float(1.0)).is_err());
        assert!(timeout_value(CTX, Node::Float(f64::NAN)).is_err());
        assert_eq!(timeout_value(CTX, Node::Int(0)).unwrap(), Duration::ZERO);
        assert_eq!(signal_value(CTX, Node::Int(9)).unwrap(), libc::SIGKILL);
        assert!(reload_value(CTX, Node::Int(1)).is_err());
        assert_eq!(reload_value(CTX, Node::Str("Restart".into())).unwrap(), ReloadMode::Restart);
        assert!(bool_value(CTX, Node::Bool(true)).unwrap());
        assert!(!bool_value(CTX, Node::Str(" Off".into())).unwrap());
        assert!(bool_value(CTX, Node::Str("maybe".into())).is_err());
        assert_eq!(watchdog_value(CTX, Node::Str("1.5".into())).unwrap(), Duration::from_millis(1500));
        assert!(watchdog_value(CTX, Node::Int(0)).is_err());
    }
}
