//! INI configs: a `[vassal]` section makes a native vassal.
//!
//! Outside `[vassal]` the reader is as lenient as uWSGI: blank lines, `;`/`#`
//! comments and lines without `=` are skipped. Inside it every line must be
//! `key = value`.

use super::native::SpecBuilder;
use super::node::Node;
use super::{ConfigError, Format, NativeSpec};

/// Returns the native spec if the file has a `[vassal]` section, else None.
pub(super) fn parse(text: &str) -> Result<Option<NativeSpec>, ConfigError> {
    let mut builder: Option<SpecBuilder> = None;
    let mut in_vassal = false;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = section_name(line) {
            in_vassal = name == "vassal";
            if in_vassal {
                builder.get_or_insert_with(SpecBuilder::default);
            }
            continue;
        }
        match builder.as_mut() {
            Some(b) if in_vassal => add_line(b, line, index + 1)?,
            _ => {}
        }
    }
    builder.map(SpecBuilder::finish).transpose()
}

/// The name inside a `[name]` header line.
fn section_name(line: &str) -> Option<&str> {
    line.strip_prefix('[')?.strip_suffix(']').map(str::trim)
}

/// Adds one `key = value` line of the `[vassal]` section.
fn add_line(builder: &mut SpecBuilder, line: &str, number: usize) -> Result<(), ConfigError> {
    let syntax = |message: String| ConfigError::Syntax { format: Format::Ini, line: Some(number), message };
    let (key, value) =
        line.split_once('=').ok_or_else(|| syntax(format!("expected `key = value` in [vassal], found `{line}`")))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(syntax(format!("missing key before `=` in `{line}`")));
    }
    builder.set(key, Some(number), Node::Str(value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{bad_value_key, error, native};
    use super::super::{parse, ConfigError, Format, NativeSpec, ReloadMode, VassalConfig};
    use std::time::Duration;

    #[test]
    fn full_native_section() {
        let spec = native(
            Format::Ini,
            "; a comment\n[uwsgi]\nmaster = true\n\n[vassal]\n\
             exec = /usr/bin/python3 -m http.server 'port 8000' \"a b\"\n\
             chdir=/srv/app\n\
             env = PORT=8000\n\
             # comment inside\n\
             env = GREETING=hello = world\n\
             uid = www-data\n\
             gid = 33\n\
             stop-signal = SIGINT\n\
             stop-timeout = 2.5\n\
             reload = HUP\n\
             [other]\nexec = ignored\n",
        );
        assert_eq!(
            spec,
            NativeSpec {
                singleton: false,
                exec: vec![
                    "/usr/bin/python3".into(),
                    "-m".into(),
                    "http.server".into(),
                    "port 8000".into(),
                    "a b".into()
                ],
                chdir: Some("/srv/app".into()),
                env: vec![("PORT".into(), "8000".into()), ("GREETING".into(), "hello = world".into())],
                uid: Some("www-data".into()),
                gid: Some("33".into()),
                stop_signal: libc::SIGINT,
                stop_timeout: Some(Duration::from_millis(2500)),
                reload: ReloadMode::Signal(libc::SIGHUP),
                sockets: Vec::new(),
                readiness: Default::default(),
            }
        );
    }

    #[test]
    fn defaults() {
        let spec = native(Format::Ini, "[vassal]\nexec = sleep 10\nstop-timeout = 3\nreload = restart\n");
        assert_eq!(spec.exec, ["sleep", "10"]);
        assert_eq!(spec.stop_signal, libc::SIGTERM);
        assert_eq!(spec.stop_timeout, Some(Duration::from_secs(3)));
        assert_eq!(spec.reload, ReloadMode::Restart);
        assert!(spec.env.is_empty() && spec.chdir.is_none() && spec.uid.is_none());
    }

    #[test]
    fn uwsgi_config() {
        let text = "[uwsgi]\nhttp = :8000\nmaster\n; comment\n# also\nmodule = app:app\n";
        assert_eq!(parse(Format::Ini, text).unwrap(), VassalConfig::Uwsgi { flag: "--ini" });
        assert_eq!(parse(Format::Ini, "").unwrap(), VassalConfig::Uwsgi { flag: "--ini" });
    }

    #[test]
    fn missing_and_empty_exec() {
        assert!(matches!(error(Format::Ini, "[vassal]\nchdir = /tmp\n"), ConfigError::MissingExec));
        assert!(matches!(error(Format::Ini, "[vassal]\n"), ConfigError::MissingExec));
        let err = error(Format::Ini, "[vassal]\nexec =\n");
        assert!(err.to_string().contains("`exec` (line 2)"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = error(Format::Ini, "[vassal]\nexec = true\nstop_signal = TERM\n");
        assert!(matches!(&err, ConfigError::UnknownKey { key, line: Some(3) } if key == "stop_signal"), "{err}");
    }

    #[test]
    fn repeated_key_is_an_error() {
        let err = error(Format::Ini, "[vassal]\nexec = true\nuid = a\nuid = b\n");
        assert!(matches!(&err, ConfigError::DuplicateKey { key, line: Some(4) } if key == "uid"), "{err}");
    }

    #[test]
    fn bad_signal() {
        let err = error(Format::Ini, "[vassal]\nexec = true\nstop-signal = SIGFOO\n");
        assert!(matches!(&err, ConfigError::BadSignal { value, line: Some(3), .. } if value == "SIGFOO"), "{err}");
        let err = error(Format::Ini, "[vassal]\nexec = true\nreload = SIGBAR\n");
        assert!(err.to_string().contains("`reload` (line 3)"), "{err}");
    }

    #[test]
    fn bad_stop_timeout() {
        for value in ["-1", "soon", "1e3", "inf", "10s", "1.2.3"] {
            let text = format!("[vassal]\nexec = true\nstop-timeout = {value}\n");
            assert_eq!(bad_value_key(Format::Ini, &text), "stop-timeout", "{value}");
        }
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = error(Format::Ini, "[vassal]\nexec = true\njust words\n");
        assert!(matches!(err, ConfigError::Syntax { format: Format::Ini, line: Some(3), .. }), "{err}");
        let err = error(Format::Ini, "[vassal]\n= value\n");
        assert!(matches!(err, ConfigError::Syntax { line: Some(2), .. }), "{err}");
        let err = error(Format::Ini, "[vassal]\nexec = python3 'unclosed\n");
        assert!(err.to_string().contains("`exec` (line 2)"), "{err}");
    }

    #[test]
    fn bad_env() {
        let err = error(Format::Ini, "[vassal]\nexec = true\nenv = NOEQUALS\n");
        assert!(err.to_string().contains("KEY=VALUE"), "{err}");
        let err = error(Format::Ini, "[vassal]\nexec = true\nenv = =x\n");
        assert!(matches!(err, ConfigError::BadValue { .. }), "{err}");
    }
}
