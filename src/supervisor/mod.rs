//! The supervisor: owns the vassal processes and carries out the
//! reconciler's actions on them (it is the reconciler's [`Executor`]).

mod adopt;
mod channel;
mod executor;
mod fdholder;
mod launch;
mod logs;
mod process;
mod user;
mod watch;

use crate::sys::{self, spawn};
use channel::{Pair, VassalMessage};
use executor::begin_stop;
pub use fdholder::serve as serve_fd_holder;
use fdholder::FdHolder;
use launch::{CommandLine, Launch};
use process::Handle;
use reconciler::{StartError, VassalName, VassalSpec};
use state::{Intent, Mode, Store, VassalRecord};
use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
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
}

/// Something a vassal process did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEvent {
    /// The vassal.
    pub name: VassalName,
    /// Its generation.
    pub generation: u64,
    /// What happened.
    pub kind: ProcEventKind,
}

/// The kinds of [`ProcEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEventKind {
    /// The process exited (not reaped yet).
    Exited,
    /// A byte arrived on the control channel.
    Message(u8),
    /// The control channel closed.
    Eof,
}

/// One running vassal process.
struct Proc {
    generation: u64,
    /// Our child (reaped by us) or an adopted process (reaped by init).
    handle: Handle,
    spec: VassalSpec,
    launch: Launch,
    control: Option<Arc<tokio::net::UnixStream>>,
    config: Option<(UnixStream, Vec<u8>)>,
    stop_deadline: Option<Instant>,
    last_heartbeat: Option<Instant>,
    stopping: bool,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proc {
    fn pid(&self) -> i32 {
        self.handle.pid()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Owns every vassal process; see the module docs.
pub struct Supervisor {
    settings: Settings,
    store: Store,
    procs: HashMap<VassalName, Proc>,
    events: UnboundedSender<ProcEvent>,
    base_env: Vec<(String, String)>,
    holder: Option<FdHolder>,
    /// Vassals with a stop deadline or a heartbeat to check: what
    /// [`Supervisor::tick`] looks at, so idle vassals cost nothing.
    timed: std::collections::HashSet<VassalName>,
    /// Our children, by pid: SIGCHLD names pids.
    children: HashMap<i32, VassalName>,
    /// Configs parsed by [`Executor::intend`] for the starts of this round.
    prepared: HashMap<(VassalName, u64), Result<Launch, launch::LaunchError>>,
}

impl Supervisor {
    /// A supervisor with no process yet, writing its vassal records through
    /// its own handle on the state store; `state_dir` is where its fd
    /// holder listens.
    pub fn new(settings: Settings, store: Store, events: UnboundedSender<ProcEvent>, state_dir: &Path) -> Self {
        let mut base_env = launch::vassal_env_mapping(std::env::vars());
        base_env.push(("EMPEROR_ID".into(), store.emperor_id().to_owned()));
        let holder = logs::open_named(&settings.log_dir, "fd-holder.log")
            .and_then(|log| FdHolder::connect_or_spawn(state_dir, log))
            .inspect_err(
                |e| tracing::warn!(error = %e, "no fd holder: uWSGI vassals will not survive an emperor crash"),
            )
            .ok();
        Self {
            settings,
            store,
            procs: HashMap::new(),
            events,
            base_env,
            holder,
            timed: Default::default(),
            children: HashMap::new(),
            prepared: HashMap::new(),
        }
    }

    /// Ends the fd holder; call once every vassal has stopped.
    pub fn retire_holder(&mut self) {
        if let Some(holder) = self.holder.take() {
            holder.quit();
        }
    }

    /// Sends `signal` to a live vassal's whole process group.
    fn signal_group(proc: &Proc, signal: i32) {
        if let Err(e) = proc.handle.signal_group(signal) {
            tracing::debug!(pid = proc.pid(), signal, error = %e, "cannot signal process group");
        }
    }

    /// Gives the fd holder copies of a new vassal's channel ends.
    fn hold(&self, name: &VassalName, generation: u64, control: Option<&UnixStream>, config: Option<&UnixStream>) {
        let Some(holder) = &self.holder else { return };
        for (kind, stream) in [("control", control), ("config", config)] {
            if let Some(stream) = stream {
                let key = fdholder::key(kind, generation, name.as_str());
                if let Err(e) = holder.put(&key, std::os::fd::AsFd::as_fd(stream)) {
                    tracing::warn!(vassal = %name, error = %e, "cannot hand the channel to the fd holder");
                }
            }
        }
    }

    /// Makes the fd holder close its copies of a vassal's channel ends.
    fn release(&self, name: &str, generation: u64) {
        if let Some(holder) = &self.holder {
            holder.release(name, generation);
        }
    }

    /// Whether no process is left.
    pub fn is_idle(&self) -> bool {
        self.procs.is_empty()
    }

    /// Reaps every child that has exited; returns the vassals among them.
    pub fn reap_children(&mut self) -> Vec<(VassalName, u64)> {
        let mut exited = Vec::new();
        while let Some(pid) = sys::wait::next_exited_child() {
            match self.children.get(&pid).cloned() {
                Some(name) => {
                    let generation = self.procs.get(&name).map_or(0, |p| p.generation);
                    if self.reap(&name, generation) {
                        exited.push((name, generation));
                    }
                }
                None => {
                    // Not a vassal (an fd holder we started, say): just reap it.
                    let status = sys::wait::reap(pid);
                    tracing::debug!(pid, ?status, "reaped a child that is not a vassal");
                }
            }
        }
        exited
    }

    /// Reaps an exited process; `false` if it was not ours (a stale generation).
    pub fn reap(&mut self, name: &VassalName, generation: u64) -> bool {
        if self.procs.get(name).is_none_or(|p| p.generation != generation) {
            return false;
        }
        let proc = self.procs.remove(name).expect("checked above");
        self.timed.remove(name);
        self.release(name.as_str(), generation);
        let pid = proc.pid();
        let exit = match proc.handle {
            Handle::Child(pid) => {
                self.children.remove(&pid);
                // The leader is an unreaped zombie, so its group id cannot have been reused.
                let _ = sys::signal::kill_group(pid, libc::SIGKILL);
                sys::wait::reap(pid)
            }
            Handle::Adopted(..) => Ok(None),
        };
        let status = match &exit {
            Ok(Some(exit)) => exit.to_string(),
            Ok(None) if matches!(proc.handle, Handle::Adopted(..)) => {
                "exit status unknown (adopted process)".to_owned()
            }
            Ok(None) => "still running?".to_owned(),
            Err(e) => format!("unknown status ({e})"),
        };
        if proc.stopping {
            tracing::info!(vassal = %name, pid, generation, %status, "vassal stopped");
        } else {
            let log = logs::path(&self.settings.log_dir, name);
            tracing::warn!(vassal = %name, pid, generation, %status, log = %log.display(), "vassal died");
        }
        true
    }

    /// Handles a byte from a vassal's control channel.
    pub fn on_message(&mut self, name: &VassalName, generation: u64, byte: u8) {
        let Some(proc) = self.procs.get_mut(name).filter(|p| p.generation == generation) else { return };
        match VassalMessage::from(byte) {
            VassalMessage::ConfigRequest => {
                if let Some((stream, framed)) = &proc.config {
                    if let Err(e) = channel::send_all(stream, framed) {
                        tracing::warn!(vassal = %name, error = %e, "cannot resend the config");
                    }
                }
            }
            VassalMessage::Heartbeat => {
                if proc.last_heartbeat.is_none() && !proc.stopping {
                    let timeout = self.settings.heartbeat_timeout.as_secs_f64();
                    tracing::info!(vassal = %name, timeout, "vassal sends heartbeats; a silence this long gets it killed and respawned");
                }
                proc.last_heartbeat = Some(Instant::now());
                self.timed.insert(name.clone());
            }
            VassalMessage::WantsStop => {
                tracing::info!(vassal = %name, "vassal asked to stop; it will be respawned");
                begin_stop(proc, &self.settings);
                self.timed.insert(name.clone());
            }
            VassalMessage::Reinforcements => {
                tracing::debug!(vassal = %name, "reinforcements requested; not supported")
            }
            other => tracing::debug!(vassal = %name, message = ?other, "vassal message"),
        }
    }

    /// Enforces stop timeouts and heartbeats; call after every wake-up.
    pub fn tick(&mut self, now: Instant) {
        let timeout = self.settings.heartbeat_timeout;
        self.timed.retain(|name| {
            let Some(proc) = self.procs.get_mut(name) else { return false };
            if proc.stop_deadline.is_some_and(|d| d <= now) {
                tracing::warn!(vassal = %name, pid = proc.pid(), "vassal did not stop in time; sending SIGKILL to its process group");
                Self::signal_group(proc, libc::SIGKILL);
                proc.stop_deadline = None;
            }
            if proc.last_heartbeat.is_some_and(|h| h + timeout <= now) {
                tracing::warn!(vassal = %name, pid = proc.pid(), "vassal missed its heartbeat; killing it for a respawn");
                Self::signal_group(proc, libc::SIGKILL);
                proc.last_heartbeat = None;
            }
            proc.stop_deadline.is_some() || proc.last_heartbeat.is_some()
        });
    }

    /// The next time [`Supervisor::tick`] has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        let hb = self.settings.heartbeat_timeout;
        self.timed
            .iter()
            .filter_map(|name| self.procs.get(name))
            .flat_map(|p| [p.stop_deadline, p.last_heartbeat.map(|h| h + hb)])
            .flatten()
            .min()
    }

    /// Asks every vassal to stop (emperor shutdown).
    pub fn stop_all(&mut self) {
        for (name, proc) in self.procs.iter_mut().filter(|(_, p)| !p.stopping) {
            begin_stop(proc, &self.settings);
            self.timed.insert(name.clone());
        }
    }

    fn spawn_proc(&mut self, spec: &VassalSpec, launch: &Launch, generation: u64) -> Result<Proc, StartError> {
        let CommandLine { program, args, cwd, env } = launch::command_line(spec, launch, &self.settings.vassal_binary);
        let failed = |what: &str, e: &dyn std::fmt::Display| StartError::Failed(format!("{what}: {e}"));
        let log = logs::open(&self.settings.log_dir, &spec.name).map_err(|e| failed("cannot open the log file", &e))?;
        let mut vars = self.base_env.clone();
        vars.extend(env);
        vars.push(("EMPEROR_VASSAL".into(), format!("{}:{generation}", spec.name)));
        let mut remove = Vec::new();
        let (mut control, mut config, mut keep_fds) = (None, None, Vec::new());
        let mut user = None;
        match launch {
            Launch::Uwsgi { inline, .. } => {
                let pair = Pair::new().map_err(|e| failed("socketpair", &e))?;
                vars.push(("UWSGI_EMPEROR_FD".into(), pair.their_fd().to_string()));
                keep_fds.push(pair.their_fd());
                if let Some(text) = inline {
                    let framed =
                        channel::frame_config(text.as_bytes()).map_err(|e| StartError::Invalid(e.to_string()))?;
                    let cfg = Pair::new().map_err(|e| failed("socketpair", &e))?;
                    vars.push(("UWSGI_EMPEROR_FD_CONFIG".into(), cfg.their_fd().to_string()));
                    keep_fds.push(cfg.their_fd());
                    config = Some((cfg, framed));
                }
                control = Some(pair);
                remove.extend(["NOTIFY_SOCKET".to_owned(), "UWSGI_RELOADS".to_owned()]);
            }
            Launch::Native(native) => {
                user = user::resolve(native.uid.as_deref(), native.gid.as_deref())
                    .map_err(|e| StartError::Invalid(e.to_string()))?;
            }
        }
        // The fd holder gets its copies before the fork: from the moment the
        // vassal exists, an emperor crash cannot close its channel.
        self.hold(&spec.name, generation, control.as_ref().map(|p| &p.ours), config.as_ref().map(|(p, _)| &p.ours));
        let request = spawn::SpawnRequest { program, args, cwd, env: vars, env_remove: remove, keep_fds, log, user };
        let pid = spawn::spawn(request).map_err(|e| {
            self.release(spec.name.as_str(), generation);
            match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    StartError::Invalid(format!("cannot execute: {e}"))
                }
                _ => failed("spawn", &e),
            }
        })?;
        let config = config.map(|(pair, framed)| (pair.ours, framed));
        if let Some((stream, framed)) = &config {
            if let Err(e) = channel::send_all(stream, framed) {
                tracing::warn!(vassal = %spec.name, error = %e, "cannot send the inline config");
            }
        }
        let control = control.map(|pair| pair.ours);
        let handle = Handle::Child(pid);
        Ok(self.watch_proc(Watched { generation, handle, spec: spec.clone(), launch: launch.clone(), control, config }))
    }

    fn record(&self, spec: &VassalSpec, generation: u64, mode: Mode, pid: Option<i32>, intent: Intent) {
        let record = VassalRecord {
            name: spec.name.clone(),
            source: spec.source.clone(),
            version: spec.version.clone(),
            generation,
            mode,
            pid,
            start_time: pid.and_then(sys::proc::start_time),
            intent,
        };
        if let Err(e) = self.store.put_vassal(&record) {
            tracing::error!(vassal = %spec.name, error = %e, "cannot record the vassal in the state store");
        }
    }
}
