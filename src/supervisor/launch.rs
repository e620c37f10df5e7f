//! From a [`VassalSpec`] to what to execute: reads and parses the config,
//! then builds the argv, working directory and environment of either run
//! mode.

use crate::vassal::{self, Format, NativeSpec, VassalConfig};
use reconciler::{ConfigRef, SourceId, VassalName, VassalSpec};
use std::path::{Path, PathBuf};

/// A parsed, runnable vassal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// Run the vassal binary with `flag TARGET`; `inline` is the config blob
    /// to pass over the config channel, if the config is not a file.
    Uwsgi {
        /// `--ini`, `--xml`, `--yaml`, `--json`, or `--config` for an extra extension.
        flag: &'static str,
        /// Inline config text.
        inline: Option<String>,
    },
    /// Run a program directly (boxed: a running uWSGI-style vassal's
    /// launch then costs a few words, not the size of a native spec).
    Native(Box<NativeSpec>),
}

/// Which sources may choose the program a vassal runs (`--native`).
///
/// A native config names any program; a uWSGI config runs the vassal
/// binary (which its options can still make run other code). Refusing
/// native configs from databases and messages narrows what whoever can
/// write to them can do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NativePolicy {
    /// Native configs from every source (the default).
    #[default]
    Allow,
    /// No native config at all: every vassal runs the vassal binary.
    Deny,
    /// Native configs only from local files (`dir://`, `glob://`).
    FilesOnly,
}

impl NativePolicy {
    /// Whether a native config from `source` may run.
    pub fn allows(self, source: &SourceId) -> bool {
        match self {
            NativePolicy::Allow => true,
            NativePolicy::Deny => false,
            NativePolicy::FilesOnly => {
                matches!(source.0.split_once("://").map(|(scheme, _)| scheme), Some("dir" | "glob"))
            }
        }
    }
}

impl std::fmt::Display for NativePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = clap::ValueEnum::to_possible_value(self).expect("no variant is skipped");
        f.write_str(name.get_name())
    }
}

/// Why a spec cannot be launched.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The config file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The config is not valid.
    #[error("{origin}: {source}")]
    Config {
        /// The file (or "inline config").
        origin: String,
        /// What is wrong.
        #[source]
        source: vassal::ConfigError,
    },
    /// A native config from a source `--native` does not allow.
    #[error("{vassal}: native config from {source_id} refused (--native={policy})")]
    NativeRefused {
        /// The vassal.
        vassal: VassalName,
        /// Its source.
        source_id: SourceId,
        /// The policy in force.
        policy: NativePolicy,
    },
    /// `singleton = true` from a source that cannot hold a lease.
    #[error("{vassal}: singleton = true needs a source that can hold a lease (pg://, mongodb://); {source_id} cannot, so the vassal is refused")]
    SingletonRefused {
        /// The vassal.
        vassal: VassalName,
        /// Its source.
        source_id: SourceId,
    },
    /// The name's extension is not known (an `--extra-extension` of an
    /// earlier run, no longer given).
    #[error("{vassal}: no config syntax for its extension (not given with --extra-extension)")]
    Extension {
        /// The vassal.
        vassal: VassalName,
    },
    /// Tyrant mode refuses the identity the vassal would run as.
    #[error(transparent)]
    Identity(#[from] super::tyrant::IdentityError),
}

/// Reads and parses the config of `spec`, and refuses a native one that
/// `policy` does not allow from the spec's source.
pub fn load_allowed(spec: &VassalSpec, policy: NativePolicy) -> Result<Launch, LaunchError> {
    match load(spec)? {
        Launch::Native(_) if !policy.allows(&spec.source) => {
            Err(LaunchError::NativeRefused { vassal: spec.name.clone(), source_id: spec.source.clone(), policy })
        }
        launch => Ok(launch),
    }
}

/// Reads and parses the config of `spec`.
pub fn load(spec: &VassalSpec) -> Result<Launch, LaunchError> {
    let Some(format) = Format::from_extension(spec.name.extension()) else { return unparsed(spec) };
    let (text, origin, inline) = match &spec.config {
        ConfigRef::File(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| LaunchError::Read { path: path.clone(), source })?;
            (text, path.display().to_string(), false)
        }
        ConfigRef::Inline(text) => (text.clone(), format!("inline config of {}", spec.name), true),
    };
    if !crate::fleet::lease::holds_leases(&spec.source) && vassal::is_singleton(format, &text).unwrap_or(false) {
        return Err(LaunchError::SingletonRefused { vassal: spec.name.clone(), source_id: spec.source.clone() });
    }
    match vassal::parse(format, &text) {
        Ok(VassalConfig::Uwsgi { flag }) => Ok(Launch::Uwsgi { flag, inline: inline.then_some(text) }),
        Ok(VassalConfig::Native(native)) => Ok(Launch::Native(Box::new(native))),
        Err(source) => Err(LaunchError::Config { origin, source }),
    }
}

/// A vassal of an `--extra-extension`: its syntax is the vassal binary's
/// business (`--config`), so it is not read here and cannot be native.
fn unparsed(spec: &VassalSpec) -> Result<Launch, LaunchError> {
    if !reconciler::is_extra_extension(spec.name.extension()) {
        return Err(LaunchError::Extension { vassal: spec.name.clone() });
    }
    let inline = match &spec.config {
        ConfigRef::File(_) => None,
        ConfigRef::Inline(text) => Some(text.clone()),
    };
    Ok(Launch::Uwsgi { flag: "--config", inline })
}

/// The parts of a command line for `launch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its working directory.
    pub cwd: Option<PathBuf>,
    /// Variables it gets on top of the emperor's environment.
    pub env: Vec<(String, String)>,
}

/// Builds the command line of `spec` run as `launch`, with the vassal
/// binary `vassal_binary` for uWSGI-style configs.
pub fn command_line(spec: &VassalSpec, launch: &Launch, vassal_binary: &str) -> CommandLine {
    let config_dir = match &spec.config {
        ConfigRef::File(path) => path.parent().map(Path::to_owned),
        ConfigRef::Inline(_) => None,
    };
    match launch {
        Launch::Uwsgi { flag, .. } => {
            // The path as the source saw it (through a swapped symlink, say), so
            // a uWSGI master that re-executes itself on reload reads the new checkout.
            let target = match &spec.config {
                ConfigRef::File(path) => path.display().to_string(),
                ConfigRef::Inline(_) => format!("emperor://{}", spec.name),
            };
            CommandLine {
                program: vassal_binary.to_owned(),
                args: vec![(*flag).to_owned(), target],
                cwd: config_dir,
                env: Vec::new(),
            }
        }
        Launch::Native(native) => CommandLine {
            program: native.exec[0].clone(),
            args: native.exec[1..].to_vec(),
            cwd: match (&native.chdir, config_dir) {
                (Some(dir), Some(base)) => Some(base.join(dir)),
                (Some(dir), None) => Some(dir.clone()),
                (None, base) => base,
            },
            env: native.env.clone(),
        },
    }
}

/// `UWSGI_VASSAL_xxx` variables of the emperor, renamed `UWSGI_xxx` for vassals.
pub fn vassal_env_mapping(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    vars.filter_map(|(k, v)| {
        k.strip_prefix("UWSGI_VASSAL_").filter(|r| !r.is_empty()).map(|r| (format!("UWSGI_{r}"), v))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, config: ConfigRef) -> VassalSpec {
        VassalSpec {
            name: VassalName::parse(name).unwrap(),
            source: SourceId("dir:///srv".into()),
            config,
            version: "1".into(),
            owner: None,
            socket: None,
        }
    }

    #[test]
    fn uwsgi_file_configs_run_in_their_directory() {
        let s = spec("app.ini", ConfigRef::File("/srv/vassals/app.ini".into()));
        let cl = command_line(&s, &Launch::Uwsgi { flag: "--ini", inline: None }, "uwsgi");
        assert_eq!(cl.program, "uwsgi");
        assert_eq!(cl.args, ["--ini", "/srv/vassals/app.ini"]);
        assert_eq!(cl.cwd, Some(PathBuf::from("/srv/vassals")));
    }

    #[test]
    fn inline_configs_use_the_emperor_target() {
        let s = spec("app.yaml", ConfigRef::Inline("uwsgi:\n".into()));
        let cl = command_line(&s, &Launch::Uwsgi { flag: "--yaml", inline: Some("uwsgi:\n".into()) }, "/usr/bin/uwsgi");
        assert_eq!(cl.args, ["--yaml", "emperor://app.yaml"]);
        assert_eq!(cl.cwd, None);
    }

    #[test]
    fn native_chdir_is_relative_to_the_config() {
        let s = spec("web.toml", ConfigRef::File("/srv/vassals/web.toml".into()));
        let native = NativeSpec {
            singleton: false,
            exec: vec!["python3".into(), "-m".into(), "http.server".into()],
            chdir: Some("www".into()),
            env: vec![("A".into(), "1".into())],
            uid: None,
            gid: None,
            stop_signal: libc::SIGTERM,
            stop_timeout: None,
            reload: vassal::ReloadMode::Restart,
            sockets: Vec::new(),
            readiness: Default::default(),
        };
        let cl = command_line(&s, &Launch::Native(Box::new(native)), "uwsgi");
        assert_eq!(cl.program, "python3");
        assert_eq!(cl.args, ["-m", "http.server"]);
        assert_eq!(cl.cwd, Some(PathBuf::from("/srv/vassals/www")));
        assert_eq!(cl.env, [("A".to_owned(), "1".to_owned())]);
    }

    #[test]
    fn files_only_refuses_native_configs_from_other_sources() {
        let native = "[vassal]\nexec = [\"true\"]\n";
        let mut s = spec("web.toml", ConfigRef::Inline(native.into()));
        assert!(load_allowed(&s, NativePolicy::FilesOnly).is_ok());
        assert!(matches!(load_allowed(&s, NativePolicy::Deny), Err(LaunchError::NativeRefused { .. })));
        s.source = SourceId("zmq://tcp://127.0.0.1:5250".into());
        let err = load_allowed(&s, NativePolicy::FilesOnly).unwrap_err().to_string();
        assert!(err.contains("zmq://tcp://127.0.0.1:5250") && err.contains("--native=files-only"), "{err}");
        assert!(load_allowed(&s, NativePolicy::Allow).is_ok());
        let uwsgi = spec("app.ini", ConfigRef::Inline("[uwsgi]\n".into()));
        assert!(load_allowed(&VassalSpec { source: s.source.clone(), ..uwsgi }, NativePolicy::Deny).is_ok());
    }

    #[test]
    fn js_is_json_and_extra_extensions_take_config() {
        let js = spec("app.js", ConfigRef::Inline("{\"uwsgi\": {}}".into()));
        assert!(matches!(load(&js), Ok(Launch::Uwsgi { flag: "--json", .. })));
        reconciler::add_extension("launchtest").unwrap();
        let extra = spec("app.launchtest", ConfigRef::File("/srv/app.launchtest".into()));
        let launch = load(&extra).unwrap();
        assert_eq!(launch, Launch::Uwsgi { flag: "--config", inline: None });
        assert_eq!(command_line(&extra, &launch, "uwsgi").args, ["--config", "/srv/app.launchtest"]);
    }

    #[test]
    fn uwsgi_vassal_variables_are_renamed() {
        let vars = [("UWSGI_VASSAL_SOCKET", ":3031"), ("UWSGI_VASSAL_", "x"), ("PATH", "/bin")];
        let mapped = vassal_env_mapping(vars.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        assert_eq!(mapped, [("UWSGI_SOCKET".to_owned(), ":3031".to_owned())]);
    }
}
