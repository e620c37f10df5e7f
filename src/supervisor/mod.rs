//! The supervisor: owns the vassal processes and carries out the
//! reconciler's actions on them (it is the reconciler's
//! [`Executor`](reconciler::Executor)).
//!
//! What the processes do comes back to the supervisor alone: it reaps its
//! children on SIGCHLD, watches re-adopted processes through pidfds, serves
//! the control channels and enforces stop timeouts and heartbeats. The main
//! loop hears only that a vassal's process is gone
//! ([`Supervisor::next_exit`]).

mod address;
mod adopt;
mod channel;
mod channels;
mod executor;
mod exits;
mod fd_reserve;
pub(crate) mod fdholder;
mod fence;
mod held;
mod holder_link;
mod inject;
mod launch;
mod logpipe;
mod logs;
mod news;
mod notify;
mod ondemand;
mod output;
mod own_pid;
mod proc;
mod process;
mod readiness;
mod records;
mod sockets;
mod stall;
mod status;
mod tyrant;
mod user;
mod watch;
mod watchdog;

use crate::sys::spawn;
use channel::Pair;
use executor::begin_stop;
use exits::ProcEvent;
pub use fdholder::serve as serve_fd_holder;
pub use fence::FENCE_VARIABLE;
use held::StartFailure;
use holder_link::HolderLink;
pub use inject::Injection;
pub use launch::NativePolicy;
use launch::{CommandLine, Launch};
pub use logpipe::Rotation;
pub use logs::path as log_path;
pub use own_pid::{exec_with_own_pid, SHIM_FLAG as OWN_PID_SHIM};
use proc::Proc;
use process::Handle;
use reconciler::{SourceId, StartError, VassalName, VassalSpec};
use state::Store;
pub use status::{LastExit, ProcStatus};
use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The emperor's environment variables no process it starts inherits: the
/// sources' credentials, and what the service manager meant for the
/// emperor alone (a vassal that saw `NOTIFY_SOCKET` would speak for it).
fn withheld_variables() -> impl Iterator<Item = &'static str> {
    crate::source::CREDENTIAL_VARIABLES.iter().chain(crate::control::SERVICE_MANAGER_VARIABLES).copied()
}
/// Adds `fd` to the fds of a spawn at the lowest number above every other
/// one but stdio (3 when it is the first), and returns that number: the
/// vassal finds its channel there, whatever number it has in the emperor.
fn pass_next(moved_fds: &mut Vec<(i32, i32)>, fd: i32) -> i32 {
    let target = moved_fds.iter().map(|&(_, target)| target + 1).fold(3, i32::max);
    moved_fds.push((fd, target));
    target
}
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use watch::Watched;

/// The supervisor's settings, from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Program run for uWSGI-style vassals.
    pub vassal_binary: String,
    /// Directory of per-vassal log files.
    pub log_dir: PathBuf,
    /// Grace period between a stop request and SIGKILL.
    pub stop_timeout: Duration,
    /// Longest silence allowed from a vassal that has sent a heartbeat.
    pub heartbeat_timeout: Duration,
    /// Which sources may give native configs.
    pub native: NativePolicy,
    /// The file-creation mask vassals start with.
    pub vassal_umask: u32,
    /// Size rotation of the vassals' logs (they write through a pipe the
    /// emperor reads), or `None` (they write to their log file directly).
    pub log_rotation: Option<Rotation>,
    /// Tyrant mode: every vassal runs as the owner its source gives.
    pub tyrant: bool,
    /// Options added to the command line of uWSGI-style vassals.
    pub injection: Injection,
    /// On-demand socket of a config file: the first line of `<config>EXT`.
    pub on_demand_extension: Option<String>,
    /// On-demand socket of a config file: `DIR/<name without extension>.socket`.
    pub on_demand_directory: Option<PathBuf>,
}

/// Owns every vassal process; see the module docs.
pub struct Supervisor {
    settings: Settings,
    store: Store,
    /// The live processes; boxed, so that the map's spare slots (it grows
    /// by doubling) cost a pointer each rather than a whole entry.
    procs: HashMap<VassalName, Box<Proc>>,
    /// The control channels of the uWSGI-style vassals.
    channels: channels::Channels,
    /// Where the watch tasks report (the sending side they clone).
    event_tx: UnboundedSender<ProcEvent>,
    event_rx: UnboundedReceiver<ProcEvent>,
    /// SIGCHLD, watched from before the first child is spawned.
    sigchld: Signal,
    /// Processes gone and reaped, not yet handed to the main loop.
    exits: VecDeque<(VassalName, u64)>,
    base_env: Vec<(String, String)>,
    /// The fd holder, and the registry of what it keeps.
    holder: HolderLink,
    /// The reader of the vassals' output pipes.
    log_pipes: logpipe::LogPipes,
    /// Vassals with a stop deadline or a heartbeat to check, so idle
    /// vassals cost nothing.
    timed: HashSet<VassalName>,
    /// Our children, by pid (SIGCHLD names pids), so every exited child is
    /// reaped, a vassal or not.
    children: HashMap<i32, (VassalName, u64)>,
    /// The supervisor's own wake-ups, to tell a stalled emperor from silent vassals.
    stall: stall::StallClock,
    /// Configs parsed by [`Executor::intend`] for the starts of this round.
    prepared: HashMap<(VassalName, u64), Result<Launch, launch::LaunchError>>,
    /// Starts of this round whose intent could not be made durable, with
    /// why: they are not started (see [`Executor::intend`]).
    unrecorded: HashMap<(VassalName, u64), String>,
    /// Vassals whose start is held (no durable intent, no fds or processes
    /// to spare), already reported: said once until they start.
    held_starts: HashSet<VassalName>,
    /// Vassals whose record could not be written: written again once the
    /// store takes writes (see `records`).
    stale_records: HashSet<VassalName>,
    /// When to try them again.
    stale_retry_at: Option<std::time::Instant>,
    /// Fds kept free for the emperor itself.
    fd_reserve: fd_reserve::FdReserve,
    /// How each vassal's last process ended, for operators.
    last_exits: HashMap<VassalName, LastExit>,
    /// Why each vassal's last start failed, for operators.
    start_errors: HashMap<VassalName, String>,
    /// SIGKILLs sent so far (stop timeouts, missed heartbeats), for the metrics.
    kills: u64,
    /// Sources already told that the owners they give are not used.
    unused_owners: HashSet<SourceId>,
    /// On-demand vassals and the sockets held for vassals.
    ondemand: ondemand::OnDemand,
    /// The native vassals' `NOTIFY_SOCKET`, when it could be bound.
    notify: Option<notify::NotifySocket>,
    /// Native vassals by the pid of their main process: who may notify.
    native_pids: HashMap<i32, VassalName>,
    /// What changed for operators since the main loop last heard from the
    /// supervisor.
    news: news::News,
    /// The singletons' tokens and SIGKILL deadlines.
    fences: fence::Fences,
}

impl Supervisor {
    /// A supervisor with no process yet, writing its vassal records through
    /// its own handle on the state store; `state_dir` is where its fd
    /// holder listens. Fails only if SIGCHLD or the control channels cannot
    /// be watched.
    pub fn new(settings: Settings, store: Store, state_dir: &Path) -> std::io::Result<Self> {
        let sigchld = signal(SignalKind::child())?;
        let (event_tx, event_rx) = unbounded_channel();
        let mut base_env = launch::vassal_env_mapping(std::env::vars());
        base_env.push(("EMPEROR_ID".into(), store.emperor_id().to_owned()));
        let holder = HolderLink::new(state_dir.to_owned(), settings.log_dir.clone());
        let log_pipes = logpipe::LogPipes::new(settings.log_dir.clone(), settings.log_rotation);
        let notify = notify::NotifySocket::bind(state_dir)
            .inspect_err(|e| {
                tracing::warn!(error = %e, "no notify socket: native vassals count as ready once spawned, without watchdog")
            })
            .ok();
        let mut supervisor = Self {
            settings,
            store,
            procs: HashMap::new(),
            channels: channels::Channels::new()?,
            event_tx,
            event_rx,
            sigchld,
            exits: VecDeque::new(),
            base_env,
            holder,
            log_pipes,
            timed: HashSet::new(),
            children: HashMap::new(),
            stall: stall::StallClock::default(),
            prepared: HashMap::new(),
            unrecorded: HashMap::new(),
            held_starts: HashSet::new(),
            stale_records: HashSet::new(),
            stale_retry_at: None,
            fd_reserve: fd_reserve::FdReserve::new(),
            last_exits: HashMap::new(),
            start_errors: HashMap::new(),
            kills: 0,
            unused_owners: HashSet::new(),
            ondemand: ondemand::OnDemand::default(),
            notify,
            native_pids: HashMap::new(),
            news: news::News::default(),
            fences: fence::Fences::default(),
        };
        // Whatever exited before SIGCHLD was watched.
        supervisor.reap_children();
        Ok(supervisor)
    }

    /// Writes out the vassals' last output and ends the fd holder; call
    /// once every vassal has stopped.
    pub fn retire_holder(&mut self) {
        self.log_pipes.finish();
        self.holder.quit();
    }

    /// Sends `signal` to a live vassal's whole process group.
    fn signal_group(proc: &Proc, signal: i32) {
        if let Err(e) = proc.handle.signal_group(signal) {
            tracing::debug!(pid = proc.pid(), signal, error = %e, "cannot signal process group");
        }
    }

    /// Gives the fd holder copies of a new vassal's channel ends.
    fn hold(
        &mut self,
        name: &VassalName,
        generation: u64,
        control: Option<&UnixStream>,
        config: Option<&UnixStream>,
    ) -> std::io::Result<()> {
        for (kind, stream) in [("control", control), ("config", config)] {
            if let Some(stream) = stream {
                let key = fdholder::key(kind, generation, name.as_str());
                if let Err(e) = self.holder.put(&key, std::os::fd::AsFd::as_fd(stream)) {
                    self.holder.release(name.as_str(), generation);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Makes the fd holder close its copies of a vassal's channel ends.
    fn release(&mut self, name: &str, generation: u64) {
        self.holder.release(name, generation);
    }

    /// Whether no process is left.
    pub fn is_idle(&self) -> bool {
        self.procs.is_empty()
    }

    /// Asks every vassal to stop (emperor shutdown).
    pub fn stop_all(&mut self) {
        self.stop_all_waiting();
        for (name, proc) in self.procs.iter_mut().filter(|(_, p)| !p.state.is_stopping()) {
            begin_stop(proc, &self.settings);
            self.timed.insert(name.clone());
        }
    }

    /// The variables that must name the vassal's own pid: `LISTEN_PID` with
    /// sockets, `WATCHDOG_PID` with a watchdog (see [`own_pid`]).
    fn own_pid_variables(&self, launch: &Launch, sockets: &ondemand::Passed) -> Vec<&'static str> {
        let watchdog = matches!(launch, Launch::Native(n) if n.readiness.watchdog.is_some()) && self.notify.is_some();
        [(sockets.listen_pid, "LISTEN_PID"), (watchdog, "WATCHDOG_PID")]
            .into_iter()
            .filter_map(|(wanted, name)| wanted.then_some(name))
            .collect()
    }

    fn spawn_proc(&mut self, spec: &VassalSpec, launch: &Launch, generation: u64) -> Result<Proc, StartFailure> {
        let CommandLine { program, args, cwd, env } = launch::command_line(spec, launch, &self.settings.vassal_binary);
        self.note_unused_owner(spec);
        let user = tyrant::identity(spec, launch, self.settings.tyrant)
            .map_err(|e| StartError::Invalid(e.to_string()))?
            .map(tyrant::credentials);
        let failed = |what: &str, e: &dyn std::fmt::Display| StartError::Failed(format!("{what}: {e}"));
        let output = self.vassal_output(&spec.name).map_err(|e| failed("cannot open the log file", &e))?;
        let sockets = self.ondemand.pass(&spec.name, launch);
        let own_pid = self.own_pid_variables(launch, &sockets);
        let (program, mut args) = match own_pid.is_empty() {
            true => (program, args),
            false if !spawn::resolvable(&program) => {
                return Err(StartError::Invalid(format!("cannot execute {program:?}: not found")).into());
            }
            false => own_pid::wrap(&own_pid, program, args).map_err(|e| failed("the own-pid shim", &e))?,
        };
        let mut vars = self.base_env.clone();
        vars.extend(env);
        vars.push(("EMPEROR_VASSAL".into(), format!("{}:{generation}", spec.name)));
        vars.extend(self.fence_env(&spec.name));
        vars.extend(sockets.env.iter().cloned());
        let mut remove: Vec<String> = withheld_variables().map(str::to_owned).collect();
        let (mut control, mut config, mut moved_fds) = (None, None, sockets.moved());
        match launch {
            Launch::Uwsgi { inline, .. } => {
                let pair = Pair::new().map_err(|e| failed("socketpair", &e))?;
                let fd = pass_next(&mut moved_fds, pair.their_fd());
                vars.push(("UWSGI_EMPEROR_FD".into(), fd.to_string()));
                if let Some(text) = inline {
                    let framed =
                        channel::frame_config(text.as_bytes()).map_err(|e| StartError::Invalid(e.to_string()))?;
                    let cfg = Pair::new().map_err(|e| failed("socketpair", &e))?;
                    let fd = pass_next(&mut moved_fds, cfg.their_fd());
                    vars.push(("UWSGI_EMPEROR_FD_CONFIG".into(), fd.to_string()));
                    config = Some((cfg, framed));
                }
                control = Some(pair);
                remove.push("UWSGI_RELOADS".to_owned());
                args = self.settings.injection.around(args);
            }
            Launch::Native(_) => vars.extend(self.notify_env(launch)),
        }
        // The fd holder gets its copies before the fork: from the moment the
        // vassal exists, an emperor crash cannot close its channel.
        self.hold(&spec.name, generation, control.as_ref().map(|p| &p.ours), config.as_ref().map(|(p, _)| &p.ours))
            .map_err(|e| failed("cannot keep a copy of the channel for the fd holder", &e))?;
        self.hold_output(&spec.name, generation, &output);
        let output::Output { writer: log, pipe } = output;
        let umask = Some(self.settings.vassal_umask);
        let request =
            spawn::SpawnRequest { program, args, cwd, env: vars, env_remove: remove, moved_fds, log, user, umask };
        let user = request.user.clone();
        let window = crate::sys::proc::BootWindow::open();
        let spawned = spawn::spawn(request);
        let start_time = window.start_time();
        let pid = spawned.map_err(|e| {
            self.release(spec.name.as_str(), generation);
            match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    StartError::Invalid(format!("cannot execute: {e}")).into()
                }
                _ => held::out_of_processes(&e, user.as_ref())
                    .map_or_else(|| failed("spawn", &e).into(), StartFailure::Held),
            }
        })?;
        if let Some(pipe) = pipe {
            self.read_output(spec.name.as_str(), pipe);
        }
        let config = config.map(|(pair, framed)| (pair.ours, framed));
        if let Some((stream, framed)) = &config {
            if let Err(e) = channel::send_all(stream, framed) {
                tracing::warn!(vassal = %spec.name, error = %e, "cannot send the inline config");
            }
        }
        let control = control.map(|pair| pair.ours);
        let handle = Handle::Child(pid, start_time);
        Ok(self.watch_proc(Watched { generation, handle, spec: spec.clone(), launch: launch.clone(), control, config }))
    }
}
