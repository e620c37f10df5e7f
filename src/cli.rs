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
  emperor --log-max-size 10M --log-keep 5 --log-format json /etc/emperor/vassals
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

    /// This emperor's name in everything it writes to a fleet's sources (default: the machine's hostname).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,

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

    /// Serve status and Prometheus metrics over HTTP on ADDR (`HOST:PORT`,
    /// read-only: `/metrics`, `/healthz`, `/v1/vassals`, `/v1/sources`).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<String>,

    /// Which vassals get per-vassal series in `/metrics`: on (every one),
    /// off (none), unhealthy (only vassals not running).
    #[arg(long, value_name = "WHICH", value_enum, default_value = "on")]
    pub metrics_per_vassal: crate::control::PerVassal,

    /// Serve uWSGI's Emperor stats on ADDR (`HOST:PORT` or a Unix socket
    /// path): one JSON object per connection, upstream's field names.
    #[arg(long, value_name = "ADDR")]
    pub stats: Option<String>,

    /// Tyrant mode (upstream's --emperor-tyrant): every vassal runs as the
    /// owner of its config file (dir://, glob://) or as the uid and gid its
    /// row, document, message, znode or entry gives. A vassal without an
    /// owner, or owned by uid 0 or gid 0, is refused. Needs root.
    #[arg(long)]
    pub tyrant: bool,

    /// In tyrant mode, a symlinked config runs as the owner of the link
    /// itself rather than of its target (upstream's --emperor-tyrant-nofollow).
    #[arg(long, requires = "tyrant")]
    pub tyrant_nofollow: bool,

    /// Append `--inherit FILE` to the command line of every uWSGI-style
    /// vassal, after its own config (repeatable).
    #[arg(long, value_name = "FILE")]
    pub vassals_inherit: Vec<String>,

    /// Append `--include FILE` to every uWSGI-style vassal, after its own
    /// config and the inherits (repeatable).
    #[arg(long, value_name = "FILE")]
    pub vassals_include: Vec<String>,

    /// `--inherit FILE` before the vassal's own config: a default it may override (repeatable).
    #[arg(long, value_name = "FILE")]
    pub vassals_inherit_before: Vec<String>,

    /// `--include FILE` before the vassal's own config (repeatable).
    #[arg(long, value_name = "FILE")]
    pub vassals_include_before: Vec<String>,

    /// `--set KEY=VALUE` for every uWSGI-style vassal, before its own
    /// config (repeatable; alias --vassal-set).
    #[arg(long, value_name = "KEY=VALUE", alias = "vassal-set", value_parser = key_value)]
    pub vassals_set: Vec<String>,

    /// Also accept config files ending in EXT (repeatable); such vassals
    /// run the vassal binary with `--config FILE`.
    #[arg(long, value_name = "EXT")]
    pub extra_extension: Vec<String>,

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

    /// Format of the emperor's own log (on stderr): text, or json (one
    /// object per line: timestamp, level, target, message and every field).
    #[arg(long, value_name = "FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Rotate each vassal's log once it would pass this size (bytes, or
    /// with a K, M or G suffix): vassals then write through a pipe the
    /// emperor reads, and no line is lost. Default: no rotation (each
    /// vassal writes to its log file itself).
    #[arg(long, value_name = "BYTES", value_parser = byte_size)]
    pub log_max_size: Option<u64>,

    /// Rotated logs kept per vassal (<name>.log.1 … .N) with --log-max-size.
    #[arg(long, value_name = "N", default_value = "5")]
    pub log_keep: u32,

    /// Seconds a singleton's lease lasts after its last renewal (the other
    /// lease timeouts default to fractions of it: renew 1/5, deadline 2/3,
    /// margin 2/15, delay 1/15).
    #[arg(long, value_name = "SECS", default_value = "15", value_parser = seconds)]
    pub lease: Duration,

    /// Seconds between renewals of a singleton's lease (± 20 %); at most a quarter of --lease.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub lease_renew: Option<Duration>,

    /// Seconds after the last confirmed renewal at which a holder that
    /// cannot renew stops its singleton (SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub lease_deadline: Option<Duration>,

    /// Seconds before the lease can expire by which the singleton is dead (SIGKILL).
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub lease_margin: Option<Duration>,

    /// Seconds a new holder waits after acquiring a lease before it starts the singleton.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub lease_delay: Option<Duration>,
}

/// The format of the emperor's own log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Cli {
    /// The options injected into uWSGI-style vassals' command lines.
    pub fn injection(&self) -> crate::supervisor::Injection {
        crate::supervisor::Injection {
            inherit_before: self.vassals_inherit_before.clone(),
            include_before: self.vassals_include_before.clone(),
            set: self.vassals_set.clone(),
            inherit: self.vassals_inherit.clone(),
            include: self.vassals_include.clone(),
        }
    }

    /// Which owner file sources report: none without tyrant mode.
    pub fn file_owners(&self) -> crate::source::FileOwners {
        match (self.tyrant, self.tyrant_nofollow) {
            (false, _) => crate::source::FileOwners::Ignored,
            (true, false) => crate::source::FileOwners::Target,
            (true, true) => crate::source::FileOwners::Link,
        }
    }

    /// The state directory, from the flag or the defaults described in `--help`.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(default_state_dir)
    }

    /// The vassal log rotation the flags ask for, if any.
    pub fn log_rotation(&self) -> Option<crate::supervisor::Rotation> {
        let keep = self.log_keep;
        self.log_max_size.map(|max_size| crate::supervisor::Rotation { max_size, keep })
    }

    /// The singletons' lease timeouts, checked against each other.
    pub fn lease_timing(&self) -> Result<crate::fleet::lease::Timing, crate::fleet::lease::TimingError> {
        crate::fleet::lease::Timing::new(
            self.lease,
            self.lease_renew,
            self.lease_deadline,
            self.lease_margin,
            self.lease_delay,
        )
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

/// Parses a size in bytes, with an optional K, M or G suffix (powers of 1024).
fn byte_size(text: &str) -> Result<u64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit: u64 = match text[digits.len()..].to_ascii_uppercase().as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return Err(format!("{text:?}: the size suffix must be K, M or G")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a size in bytes (like 65536, 64K, 10M)"))
}

/// Checks a `KEY=VALUE` option (a non-empty key).
fn key_value(text: &str) -> Result<String, String> {
    match text.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() => Ok(text.to_owned()),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
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
    fn log_flags_parse() {
        let cli = Cli::parse_from(["emperor", "--log-max-size", "4K", "--log-format", "json", "/a"]);
        let rotation = cli.log_rotation().unwrap();
        assert_eq!((rotation.max_size, rotation.keep), (4096, 5));
        assert_eq!(cli.log_format, LogFormat::Json);
        assert_eq!(Cli::parse_from(["emperor", "/a"]).log_rotation(), None);
        assert_eq!(byte_size("10m"), Ok(10 << 20));
        assert_eq!(byte_size("1G"), Ok(1 << 30));
        assert_eq!(byte_size("123"), Ok(123));
        for bad in ["0", "4T", "K", "-1", "1.5M"] {
            assert!(byte_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tyrant_and_injection_flags_parse() {
        let cli = Cli::parse_from([
            "emperor",
            "--tyrant",
            "--tyrant-nofollow",
            "--vassals-inherit",
            "a.ini",
            "--vassals-inherit",
            "b.ini",
            "--vassals-include-before",
            "c.ini",
            "--vassal-set",
            "k=v",
            "--vassals-set",
            "x=1=2",
            "--extra-extension",
            "conf",
            "/a",
        ]);
        assert_eq!(cli.file_owners(), crate::source::FileOwners::Link);
        let injection = cli.injection();
        assert_eq!(injection.inherit, ["a.ini", "b.ini"]);
        assert_eq!(injection.include_before, ["c.ini"]);
        assert_eq!(injection.set, ["k=v", "x=1=2"]);
        assert_eq!(cli.extra_extension, ["conf"]);
        assert!(Cli::try_parse_from(["emperor", "--vassals-set", "novalue", "/a"]).is_err());
        assert!(Cli::try_parse_from(["emperor", "--tyrant-nofollow", "/a"]).is_err(), "needs --tyrant");
        assert_eq!(Cli::parse_from(["emperor", "/a"]).file_owners(), crate::source::FileOwners::Ignored);
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
