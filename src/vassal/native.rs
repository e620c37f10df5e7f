//! The format-independent half of native-section parsing.
//!
//! Every syntax reduces its native section to `(key, line, Node)` entries;
//! [`SpecBuilder`] checks the keys and value shapes once, so all syntaxes
//! accept the same keys and report mistakes the same way.

use std::path::PathBuf;
use std::time::Duration;

use super::node::Node;
use super::value::{
    bool_value, env_value, exec_value, id_value, reload_value, signal_value, text_value, texts_value, timeout_value,
    watchdog_value, Ctx,
};
use super::{ConfigError, NativeSpec, Readiness, ReloadMode};

/// A key of the native section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    Exec,
    Chdir,
    Env,
    Uid,
    Gid,
    StopSignal,
    StopTimeout,
    Reload,
    Socket,
    Notify,
    Watchdog,
    Singleton,
}

impl Key {
    /// Every key, in the order we list them to operators.
    const ALL: [Key; 12] = [
        Key::Exec,
        Key::Chdir,
        Key::Env,
        Key::Uid,
        Key::Gid,
        Key::StopSignal,
        Key::StopTimeout,
        Key::Reload,
        Key::Socket,
        Key::Notify,
        Key::Watchdog,
        Key::Singleton,
    ];

    /// The key as written in a config.
    pub(super) fn name(self) -> &'static str {
        match self {
            Key::Exec => "exec",
            Key::Chdir => "chdir",
            Key::Env => "env",
            Key::Uid => "uid",
            Key::Gid => "gid",
            Key::StopSignal => "stop-signal",
            Key::StopTimeout => "stop-timeout",
            Key::Reload => "reload",
            Key::Socket => "socket",
            Key::Notify => "notify",
            Key::Watchdog => "watchdog",
            Key::Singleton => "singleton",
        }
    }

    /// The key written as `name`, if the native section knows it.
    fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|key| key.name() == name)
    }

    /// The known keys, comma-separated, for error messages.
    pub(super) fn list() -> String {
        Key::ALL.map(Key::name).join(", ")
    }
}

/// Collects native-section entries one by one, then yields a [`NativeSpec`].
#[derive(Debug, Default)]
pub(super) struct SpecBuilder {
    seen: Vec<Key>,
    exec: Option<Vec<String>>,
    chdir: Option<PathBuf>,
    env: Vec<(String, String)>,
    uid: Option<String>,
    gid: Option<String>,
    stop_signal: Option<i32>,
    stop_timeout: Option<Duration>,
    reload: Option<ReloadMode>,
    sockets: Vec<String>,
    readiness: Readiness,
    singleton: bool,
}

impl SpecBuilder {
    /// Whether an `exec` entry has been accepted already.
    pub(super) fn has_exec(&self) -> bool {
        self.exec.is_some()
    }

    /// Checks and records one entry written as `name`; `line` is where the key is, when known.
    pub(super) fn set(&mut self, name: &str, line: Option<usize>, value: Node) -> Result<(), ConfigError> {
        let key = Key::from_name(name).ok_or_else(|| ConfigError::UnknownKey { key: name.to_string(), line })?;
        self.set_key(key, line, value)
    }

    /// Checks and records one entry; only `env` and `socket` may be given more than once.
    pub(super) fn set_key(&mut self, key: Key, line: Option<usize>, value: Node) -> Result<(), ConfigError> {
        if !matches!(key, Key::Env | Key::Socket) && self.seen.contains(&key) {
            return Err(ConfigError::DuplicateKey { key: key.name().to_string(), line });
        }
        self.seen.push(key);
        let ctx = Ctx { key: key.name(), line };
        match key {
            Key::Exec => self.exec = Some(exec_value(ctx, value)?),
            Key::Chdir => self.chdir = Some(PathBuf::from(text_value(ctx, value)?)),
            Key::Env => self.env.extend(env_value(ctx, value)?),
            Key::Uid => self.uid = Some(id_value(ctx, value)?),
            Key::Gid => self.gid = Some(id_value(ctx, value)?),
            Key::StopSignal => self.stop_signal = Some(signal_value(ctx, value)?),
            Key::StopTimeout => self.stop_timeout = Some(timeout_value(ctx, value)?),
            Key::Reload => self.reload = Some(reload_value(ctx, value)?),
            Key::Socket => self.sockets.extend(texts_value(ctx, value)?),
            Key::Notify => self.readiness.notify = bool_value(ctx, value)?,
            Key::Watchdog => self.readiness.watchdog = Some(watchdog_value(ctx, value)?),
            Key::Singleton => self.singleton = bool_value(ctx, value)?,
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
            sockets: self.sockets,
            readiness: self.readiness,
            singleton: self.singleton,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_found_by_its_name() {
        for key in Key::ALL {
            assert_eq!(Key::from_name(key.name()), Some(key));
        }
        assert_eq!(Key::from_name("stop_signal"), None);
        assert_eq!(
            Key::list(),
            "exec, chdir, env, uid, gid, stop-signal, stop-timeout, reload, socket, notify, watchdog, singleton"
        );
    }
}
