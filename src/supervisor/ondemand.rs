//! On-demand vassals (socket activation) and the sockets passed to vassals.
//!
//! A vassal with an on-demand socket (the 6th field of a table or message
//! source, `--on-demand-extension`, `--on-demand-directory`) has no process
//! until its first connection: the emperor binds the socket and watches it
//! for readability, accepting nothing, so the connection waits in the
//! backlog for the vassal. A uWSGI-style vassal gets the listening socket as
//! fd 0 (as upstream); a native one gets its sockets as fds 3… with
//! `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` (see [`super::own_pid`]).
//! Byte 22 from such a vassal (idle), or a native one exiting with status 0
//! on its own, returns it to waiting. To the reconciler a waiting vassal is
//! running: the wait is the supervisor's business alone.

use super::exits::{ProcEvent, ProcEventKind};
use super::held::StartFailure;
use super::launch::{self, Launch};
use super::proc::Proc;
use super::sockets::HeldSockets;
use super::{executor::mode_of, Settings, Supervisor};
use reconciler::{ConfigRef, ReloadOutcome, StartError, VassalName, VassalSpec};
use state::Intent;
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use tokio::sync::mpsc::UnboundedSender;

/// The supervisor's on-demand state and held sockets.
#[derive(Default)]
pub(super) struct OnDemand {
    /// Every socket held for a vassal.
    pub(super) sockets: HeldSockets,
    /// Vassals without a process, waiting for a connection.
    waiting: HashMap<VassalName, Waiting>,
    /// Processes that said they are idle (byte 22): their exit returns the
    /// vassal to waiting instead of ending it.
    idle: HashSet<(VassalName, u64)>,
    /// Whether a vassal started or went back to waiting since the last
    /// [`OnDemand::take_changed`].
    changed: bool,
}

/// A vassal waiting for its first connection.
struct Waiting {
    generation: u64,
    spec: VassalSpec,
    launch: Launch,
    /// The task watching the listening socket.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The sockets a vassal asks for: its on-demand one, then its `socket =` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    on_demand: Option<String>,
    addresses: Vec<String>,
}

/// The sockets `spec` run as `launch` asks for.
fn wanted(spec: &VassalSpec, launch: &Launch, settings: &Settings) -> Wanted {
    let on_demand = spec.socket.clone().or_else(|| from_files(spec, settings));
    let mut addresses: Vec<String> = on_demand.iter().cloned().collect();
    if let Launch::Native(native) = launch {
        addresses.extend(native.sockets.iter().cloned());
    }
    Wanted { on_demand, addresses }
}

/// The on-demand address of a config file: the first line of
/// `<config><--on-demand-extension>`, else `<--on-demand-directory>/<name
/// without extension>.socket`, as upstream.
fn from_files(spec: &VassalSpec, settings: &Settings) -> Option<String> {
    let ConfigRef::File(path) = &spec.config else { return None };
    if let Some(extension) = &settings.on_demand_extension {
        let mut file = path.clone().into_os_string();
        file.push(extension);
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Some(line) = text.lines().next().map(str::trim).filter(|l| !l.is_empty()) {
                return Some(line.to_owned());
            }
        }
    }
    let directory = settings.on_demand_directory.as_ref()?;
    Some(directory.join(format!("{}.socket", stem(&spec.name))).display().to_string())
}

/// The vassal's name without its extension.
fn stem(name: &VassalName) -> &str {
    name.as_str().rsplit_once('.').map_or(name.as_str(), |(stem, _)| stem)
}

/// Whether `spec` run as `launch` is an on-demand vassal.
pub(super) fn is_on_demand(spec: &VassalSpec, launch: &Launch, settings: &Settings) -> bool {
    wanted(spec, launch, settings).on_demand.is_some()
}

/// Whether going from one spec to another moves a socket (which only a
/// restart applies).
pub(super) fn sockets_change(old: (&VassalSpec, &Launch), new: (&VassalSpec, &Launch), settings: &Settings) -> bool {
    wanted(old.0, old.1, settings) != wanted(new.0, new.1, settings)
}

/// The sockets of one spawn: the held sockets' own fds and the numbers
/// they take in the child (the spawn stages them; see `sys::spawn_fds`).
/// Valid while the sockets are held, i.e. for the spawn being made.
pub(super) struct Passed {
    fds: Vec<(RawFd, i32)>,
    /// `LISTEN_FDS` and `LISTEN_FDNAMES`, for a native vassal.
    pub(super) env: Vec<(String, String)>,
    /// Whether the program must run through the `LISTEN_PID` shim.
    pub(super) listen_pid: bool,
}

impl Passed {
    /// `(source, target)` pairs for the spawn request.
    pub(super) fn moved(&self) -> Vec<(i32, i32)> {
        self.fds.clone()
    }
}

impl OnDemand {
    /// Whether a vassal started or went back to waiting since the last call.
    pub(super) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// The sockets `name` gets when run as `launch`: the on-demand socket
    /// as fd 0 for a uWSGI-style vassal; every socket as fds 3… for a
    /// native one.
    pub(super) fn pass(&self, name: &VassalName, launch: &Launch) -> Passed {
        let held = self.sockets.of(name);
        let none = Passed { fds: Vec::new(), env: Vec::new(), listen_pid: false };
        match (launch, held.first()) {
            (_, None) => none,
            (Launch::Uwsgi { .. }, Some(first)) => Passed { fds: vec![(first.fd.as_raw_fd(), 0)], ..none },
            (Launch::Native(_), Some(_)) => {
                let count = held.len() as i32;
                let fds = (3..).zip(held).map(|(target, h)| (h.fd.as_raw_fd(), target)).collect();
                let label = stem(name).replace(':', "_");
                let names = vec![label; held.len()].join(":");
                let env = vec![("LISTEN_FDS".into(), count.to_string()), ("LISTEN_FDNAMES".into(), names)];
                Passed { fds, env, listen_pid: true }
            }
        }
    }
}

impl Supervisor {
    /// Binds (or keeps) the sockets `spec` asks for; `true` when it is an
    /// on-demand vassal, to wait for a connection instead of starting now.
    /// A bad address holds the vassal; a failed bind is retried later.
    pub(super) fn prepare_sockets(&mut self, spec: &VassalSpec, launch: &Launch) -> Result<bool, StartError> {
        let wanted = wanted(spec, launch, &self.settings);
        let acquired = self.ondemand.sockets.acquire(&spec.name, &wanted.addresses, &mut self.holder);
        if let Err(e) = acquired {
            tracing::error!(vassal = %spec.name, error = %e, "cannot start vassal: socket");
            return Err(match e {
                super::address::AddressError::Invalid { .. } => StartError::Invalid(e.to_string()),
                super::address::AddressError::Bind { .. } => StartError::Failed(e.to_string()),
            });
        }
        Ok(wanted.on_demand.is_some())
    }

    /// Leaves `spec` without a process until a connection arrives on its
    /// on-demand socket.
    pub(super) fn wait_for_connection(&mut self, spec: VassalSpec, launch: Launch, generation: u64) {
        let Some(held) = self.ondemand.sockets.of(&spec.name).first() else { return };
        let address = held.address.clone();
        let watched = held.fd.try_clone();
        let task = tokio::spawn(connection(watched, spec.name.clone(), generation, self.event_tx.clone()));
        tracing::info!(vassal = %spec.name, address, generation, "on-demand vassal waits for a connection");
        let _ = self.record(&spec, generation, mode_of(&launch), None, Intent::Run);
        self.ondemand.changed = true;
        self.ondemand.waiting.insert(spec.name.clone(), Waiting { generation, spec, launch, task });
    }

    /// A connection waits for `name`: its process starts. A spawn that
    /// fails counts as an exit (the reconciler backs off and starts again).
    pub(super) fn on_connection(&mut self, name: &VassalName, generation: u64) {
        if self.ondemand.waiting.get(name).is_none_or(|w| w.generation != generation) {
            return;
        }
        let waiting = self.ondemand.waiting.remove(name).expect("checked above");
        let result = self.spawn_proc(&waiting.spec, &waiting.launch, generation);
        match result {
            Ok(proc) => {
                tracing::info!(vassal = %name, pid = proc.pid(), generation, "connection: on-demand vassal started");
                let _ = self.record(
                    &waiting.spec,
                    generation,
                    mode_of(&waiting.launch),
                    Some(proc.identity()),
                    Intent::Run,
                );
                self.procs.insert(name.clone(), Box::new(proc));
                self.note_start(name, &Ok(()));
                self.ondemand.changed = true;
            }
            Err(failure) => {
                if let StartFailure::Error(e) = &failure {
                    tracing::error!(vassal = %name, error = %e, "cannot start on-demand vassal");
                }
                let e = self.start_failed(name, failure);
                self.note_start(name, &Err(e));
                self.exits.push_back((name.clone(), generation));
            }
        }
    }

    /// Notes that an on-demand vassal's process said it is idle (byte 22):
    /// once it exits, the vassal waits for a connection again. `false` for
    /// a vassal that is not on-demand.
    pub(super) fn note_idle(&mut self, name: &VassalName, generation: u64) -> bool {
        let on_demand = self.procs.get(name).is_some_and(|p| is_on_demand(&p.spec, &p.launch, &self.settings));
        if on_demand {
            self.ondemand.idle.insert((name.clone(), generation));
        }
        on_demand
    }

    /// Forgets that `name`'s process is idle: a stop or restart the
    /// reconciler asked for ends it for good.
    pub(super) fn not_idle(&mut self, name: &VassalName) {
        self.ondemand.idle.retain(|(n, _)| n != name);
    }

    /// Whether the exit of `proc` returns its vassal to waiting (it said it
    /// was idle, or a native one exited with status 0 on its own); if so, it
    /// now waits.
    pub(super) fn returns_to_waiting(&mut self, proc: &Proc, clean_exit: bool) -> bool {
        let idle = self.ondemand.idle.remove(&(proc.spec.name.clone(), proc.generation));
        let done = matches!(proc.launch, Launch::Native(_)) && clean_exit && !proc.state.is_stopping();
        if !(idle || done) || !is_on_demand(&proc.spec, &proc.launch, &self.settings) {
            return false;
        }
        // After an emperor restart, the socket is still with the fd holder's copies.
        if !matches!(self.prepare_sockets(&proc.spec, &proc.launch), Ok(true)) {
            return false;
        }
        self.wait_for_connection(proc.spec.clone(), proc.launch.clone(), proc.generation);
        true
    }

    /// Ends the wait of `name`, if it waits; `true` if it did.
    pub(super) fn stop_waiting(&mut self, name: &VassalName) -> bool {
        self.not_idle(name);
        self.ondemand.waiting.remove(name).is_some()
    }

    /// Applies a new spec to a waiting vassal: in place if its sockets stay
    /// the same, else by a restart (a new start binds the new ones). `None`
    /// when `spec`'s vassal is not waiting.
    pub(super) fn reload_waiting(&mut self, spec: &VassalSpec) -> Option<ReloadOutcome> {
        let waiting = self.ondemand.waiting.get_mut(&spec.name)?;
        let launch = match launch::load_allowed(spec, self.settings.native) {
            Ok(launch) => launch,
            Err(e) => return Some(ReloadOutcome::Kept(e.to_string())),
        };
        if sockets_change((&waiting.spec, &waiting.launch), (spec, &launch), &self.settings) {
            let generation = waiting.generation;
            self.ondemand.waiting.remove(&spec.name);
            self.exits.push_back((spec.name.clone(), generation));
            return Some(ReloadOutcome::Restarting);
        }
        (waiting.spec, waiting.launch) = (spec.clone(), launch);
        let (generation, mode) = (waiting.generation, mode_of(&waiting.launch));
        let _ = self.record(spec, generation, mode, None, Intent::Run);
        Some(ReloadOutcome::Reloaded)
    }

    /// Ends every wait (emperor shutdown).
    pub(super) fn stop_all_waiting(&mut self) {
        self.ondemand.waiting.clear();
        self.ondemand.idle.clear();
    }

    /// The address `name` waits on, if it waits for a connection.
    pub(super) fn waiting_on(&self, name: &VassalName) -> Option<String> {
        self.ondemand.waiting.get(name)?;
        self.ondemand.sockets.of(name).first().map(|h| h.address.clone())
    }

    /// Takes back the sockets the fd holder kept for the vassals of the
    /// previous emperor (`listed`, its socket keys; `recorded` says which
    /// names it managed).
    pub(super) fn take_back_sockets(&mut self, listed: Vec<(String, OwnedFd)>, recorded: impl Fn(&str) -> bool) {
        self.ondemand.sockets.take_back(listed, &mut self.holder, recorded);
    }
}

/// Waits until the listening socket has a connection, then says so.
async fn connection(
    watched: std::io::Result<OwnedFd>,
    name: VassalName,
    generation: u64,
    events: UnboundedSender<ProcEvent>,
) {
    let fd = watched.and_then(crate::sys::socket::watch_readable);
    match fd {
        Ok(fd) => drop(fd.readable().await),
        Err(e) => tracing::warn!(vassal = %name, error = %e, "cannot watch the on-demand socket; starting at once"),
    }
    let _ = events.send(ProcEvent { name, generation, kind: ProcEventKind::Connection });
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconciler::SourceId;

    fn settings(extension: Option<&str>, directory: Option<&str>) -> Settings {
        Settings {
            vassal_binary: "uwsgi".into(),
            log_dir: "/tmp".into(),
            stop_timeout: std::time::Duration::from_secs(1),
            heartbeat_timeout: std::time::Duration::from_secs(1),
            native: launch::NativePolicy::Allow,
            vassal_umask: 0o022,
            on_demand_extension: extension.map(str::to_owned),
            on_demand_directory: directory.map(Into::into),
            log_rotation: None,
            tyrant: false,
            injection: Default::default(),
        }
    }

    fn spec(path: &std::path::Path, socket: Option<&str>) -> VassalSpec {
        VassalSpec {
            name: VassalName::parse(path.file_name().unwrap().to_str().unwrap()).unwrap(),
            source: SourceId("dir:///x".into()),
            config: ConfigRef::File(path.to_owned()),
            version: "1".into(),
            owner: None,
            socket: socket.map(str::to_owned),
        }
    }

    const UWSGI: Launch = Launch::Uwsgi { flag: "--ini", inline: None };

    #[test]
    fn the_address_comes_from_the_source_then_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("app.ini");
        std::fs::write(dir.path().join("app.ini.socket"), "127.0.0.1:9000\nignored\n").unwrap();
        let both = settings(Some(".socket"), Some("/run/vassals"));
        assert_eq!(wanted(&spec(&config, Some(":81")), &UWSGI, &both).on_demand.as_deref(), Some(":81"));
        assert_eq!(wanted(&spec(&config, None), &UWSGI, &both).on_demand.as_deref(), Some("127.0.0.1:9000"));
        let other = dir.path().join("web.ini");
        assert_eq!(wanted(&spec(&other, None), &UWSGI, &both).on_demand.as_deref(), Some("/run/vassals/web.socket"));
        assert_eq!(wanted(&spec(&other, None), &UWSGI, &settings(Some(".socket"), None)).on_demand, None);
    }

    #[test]
    fn native_sockets_follow_the_on_demand_one() {
        let dir = tempfile::tempdir().unwrap();
        let native = match crate::vassal::parse(
            crate::vassal::Format::Ini,
            "[vassal]\nexec = app\nsocket = :8001\nsocket = /run/app.sock\n",
        ) {
            Ok(crate::vassal::VassalConfig::Native(native)) => Launch::Native(Box::new(native)),
            other => panic!("{other:?}"),
        };
        let s = spec(&dir.path().join("app.ini"), Some(":8000"));
        let w = wanted(&s, &native, &settings(None, None));
        assert_eq!(w.addresses, [":8000", ":8001", "/run/app.sock"]);
        let toml = "[vassal]\nexec = [\"app\"]\nsocket = [\":8001\", \"/run/app.sock\"]\n";
        match crate::vassal::parse(crate::vassal::Format::Toml, toml) {
            Ok(crate::vassal::VassalConfig::Native(n)) => assert_eq!(n.sockets, [":8001", "/run/app.sock"]),
            other => panic!("{other:?}"),
        }
        let moved = spec(&dir.path().join("app.ini"), Some(":9000"));
        assert!(sockets_change((&s, &native), (&moved, &native), &settings(None, None)));
        assert!(!sockets_change((&s, &native), (&s, &native), &settings(None, None)));
    }
}
