//! The command line of the `emperor` binary.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  emperor /etc/emperor/vassals                 watch a directory (same as dir://...)
  emperor 'glob:///opt/apps/*/uwsgi.ini'       one config per application directory
  emperor --vassal-binary /usr/bin/uwsgi dir:///etc/uwsgi/vassals
  emperor --state-dir /tmp/emp --stop-timeout 5 deploy/examples/vassals
  emperor 'pg://host=127.0.0.1 dbname=fleet;SELECT name,config,ts FROM vassals WHERE host=$$web1$$;listen=vassals'
  emperor 'mongodb://127.0.0.1:27017,uwsgi.emperor.vassals,{enabled:1}'
  emperor 'ldap://127.0.0.1/ou=vassals,dc=example,dc=org??one?(objectClass=applicationProcess)?x-config=description'
  emperor amqp://127.0.0.1:5672 zmq://tcp://127.0.0.1:5250
  emperor zoo://zk1:2181,zk2:2181,zk3:2181/emperor/hosts/web1

Signals: SIGTERM/SIGINT/SIGQUIT stop every vassal and exit; SIGHUP reloads every vassal;
SIGUSR2 exits leaving every vassal running, for a new emperor binary to re-adopt.

Operate a running emperor with `emperor ctl` (list, status, start, stop, restart, reload,
sources); see `emperor ctl --help`.";

/// Keeps vassals running from one or more config sources.
#[derive(Debug, Parser)]
#[command(name = "emperor", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// Config sources: dir://PATH, glob://PATTERN, pg://CONNINFO;QUERY,
    /// mongodb://HOSTS,DB.COLLECTION,{FILTER}, mongodb2://KEY=VALUE,…,
    /// ldap[s]://HOST/BASEDN?ATTRS?SCOPE?FILTER?EXTENSIONS,
    /// amqp://HOST:PORT, zmq://ENDPOINT, zoo://HOSTS/PATH, or a bare path (an existing
    /// directory is dir://, anything else glob://).
    #[arg(required_unless_present = "fd_holder", value_name = "SOURCE")]
    pub sources: Vec<String>,

    /// Program run for uWSGI-style vassals (upstream's --emperor-wrapper).
    #[arg(long, value_name = "PATH", default_value = "uwsgi")]
    pub vassal_binary: String,

    /// State directory (sled database, runtime files). Default:
    /// $EMPEROR_STATE_DIR, else /var/lib/emperor for root, else
    /// $XDG_STATE_HOME/emperor or ~/.local/state/emperor.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Control socket for `emperor ctl` (default <state-dir>/control.sock).
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,

    /// Directory of per-vassal log files (default <state-dir>/logs).
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,

    /// Seconds a vassal gets to stop before SIGKILL.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = seconds)]
    pub stop_timeout: Duration,

    /// Seconds between full rescans of every source (a safety net; changes
    /// are event-driven).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds)]
    pub resync: Duration,

    /// Seconds of silence after which a vassal that sends heartbeats is killed and respawned.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = seconds)]
    pub heartbeat_timeout: Duration,

    /// Respawn delay after the second quick crash in a row (the first respawns at once); doubles per crash.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = seconds)]
    pub backoff_min: Duration,

    /// Longest respawn delay.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds)]
    pub backoff_max: Duration,

    /// A vassal that ran this long is healthy again: its crash count is forgotten.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    pub backoff_reset: Duration,

    /// If the state store cannot be opened (corrupt, or written by an
    /// incompatible version), move it aside and start fresh; vassals still
    /// running are found through /proc and stopped, then started again from
    /// the sources, so none is duplicated.
    #[arg(long)]
    pub reset_state: bool,

    /// Which sources may give native configs (an `exec` the source chooses):
    /// allow (every source), deny (none: every vassal runs the vassal
    /// binary), files-only (dir:// and glob:// only; a native config from a
    /// database or a message is refused with a warning naming the source).
    #[arg(long, value_name = "POLICY", value_enum, default_value = "allow")]
    pub native: crate::supervisor::NativePolicy,

    /// The umask vassals start with, in octal (default: the umask the emperor
    /// was started with; the emperor itself creates its files with 077).
    #[arg(long, value_name = "OCTAL", value_parser = octal_mask)]
    pub vassal_umask: Option<u32>,

    /// On-demand vassals from config files: the first line of the file
    /// `<config>EXT` (e.g. `app.ini.socket` for `.socket`) is the address
    /// (`HOST:PORT`, `:PORT` or `/path.sock`) the emperor listens on; the
    /// vassal starts at the first connection.
    #[arg(long, value_name = "EXT")]
    pub on_demand_extension: Option<String>,

    /// On-demand vassals from config files: listen on the unix socket
    /// `DIR/<name without extension>.socket` and start the vassal at the
    /// first connection.
    #[arg(long, value_name = "DIR")]
    pub on_demand_directory: Option<PathBuf>,

    /// Run as the fd holder listening on SOCKET (started by the emperor itself).
    #[arg(long, value_name = "SOCKET", hide = true)]
    pub fd_holder: Option<PathBuf>,

    /// Log filter (tracing syntax; RUST_LOG overrides).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log_level: String,
}

impl Cli {
    /// The state directory, from the flag or the defaults described in `--help`.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(default_state_dir)
    }

    /// The control socket, from the flag or in the state directory.
    pub fn control_socket(&self) -> PathBuf {
        self.control_socket.clone().unwrap_or_else(|| self.state_dir().join("control.sock"))
    }
}

/// The state directory when none is given: $EMPEROR_STATE_DIR, else
/// /var/lib/emperor for root, else $XDG_STATE_HOME/emperor or
/// ~/.local/state/emperor.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EMPEROR_STATE_DIR") {
        return dir.into();
    }
    if crate::sys::user::is_root() {
        return "/var/lib/emperor".into();
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".local/state"));
    base.join("emperor")
}

/// Parses a non-negative number of seconds (`30`, `0.25`).
fn seconds(text: &str) -> Result<Duration, crate::source::util::seconds::SecondsError> {
    crate::source::util::seconds::parse(text)
}

/// Parses a umask in octal (`022`, `0027`).
fn octal_mask(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o777).ok_or_else(|| format!("{text:?} is not an octal umask"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fractional_seconds() {
        assert_eq!(seconds("0.25").unwrap(), Duration::from_millis(250));
        assert!(seconds("-1").is_err());
        assert!(seconds("x").is_err());
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::parse_from(["emperor", "--stop-timeout", "2", "--state-dir", "/tmp/s", "dir:///a", "/b"]);
        assert_eq!(cli.sources, ["dir:///a", "/b"]);
        assert_eq!(cli.stop_timeout, Duration::from_secs(2));
        assert_eq!(cli.state_dir(), PathBuf::from("/tmp/s"));
        assert_eq!(cli.native, crate::supervisor::NativePolicy::Allow);
        assert_eq!(cli.vassal_umask, None);
    }

    #[test]
    fn native_policy_and_umask_parse() {
        let cli = Cli::parse_from(["emperor", "--native", "files-only", "--vassal-umask", "027", "/a"]);
        assert_eq!(cli.native, crate::supervisor::NativePolicy::FilesOnly);
        assert_eq!(cli.vassal_umask, Some(0o027));
        assert!(Cli::try_parse_from(["emperor", "--vassal-umask", "9", "/a"]).is_err());
        assert!(Cli::try_parse_from(["emperor", "--native", "maybe", "/a"]).is_err());
    }
}
