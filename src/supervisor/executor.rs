//! The supervisor as the reconciler's executor: start, reload and stop, and
//! how each run mode is asked to reload or stop.

use super::held::StartFailure;
use super::launch::{self, Launch, LaunchError};
use super::{channel, ondemand, tyrant, Proc, Settings, Supervisor};
use crate::sys::spawn;
use reconciler::{Executor, ReloadOutcome, StartError, VassalName, VassalSpec};
use state::{Intent, Mode};
use std::collections::HashMap;
use std::time::Instant;

/// Room for prepared starts kept between rounds (a round of a few starts
/// allocates nothing).
const SPARE_PREPARED: usize = 64;

impl Executor for Supervisor {
    /// Parses the configs of the round's starts and records their intents,
    /// made durable with one flush before any process is forked: a crash
    /// after a fork then finds the intent and adopts the process. When the
    /// intents cannot be made durable (a full disk), a vassal the store has
    /// no record of is not started (it is retried with backoff); a respawn
    /// of a recorded vassal goes ahead (a crash meanwhile makes the next
    /// emperor replace that process once, never run it twice).
    fn intend(&mut self, starts: &[(VassalSpec, u64)]) {
        let mut failure: Option<String> = None;
        let mut known = Vec::with_capacity(starts.len());
        for (spec, generation) in starts {
            known.push(self.is_recorded(&spec.name));
            let launch = load(spec, &self.settings);
            if let Ok(launch) = &launch {
                if let Err(e) = self.record(spec, *generation, mode_of(launch), None, Intent::Run) {
                    failure.get_or_insert(e.to_string());
                }
            }
            self.prepared.insert((spec.name.clone(), *generation), launch);
        }
        match self.store.flush_if_written() {
            Ok(true) => crate::store_outage::write_succeeded(&self.store),
            Ok(false) => {}
            Err(e) => {
                crate::store_outage::write_failed(&self.store, "spawn intents", &e);
                failure.get_or_insert(e.to_string());
            }
        }
        let Some(cause) = failure else { return };
        for ((spec, generation), known) in starts.iter().zip(known) {
            if !known {
                self.unrecorded.insert((spec.name.clone(), *generation), cause.clone());
            }
        }
    }

    /// Drops what [`Executor::intend`] prepared for starts that will not be
    /// made with that generation (a start the round did not make keeps it
    /// for a later round). Their intents stay recorded until overwritten:
    /// recovery finds no process for them and starts them again if they are
    /// still wanted.
    fn withdraw(&mut self, starts: &[(VassalSpec, u64)]) {
        for (spec, generation) in starts {
            let key = (spec.name.clone(), *generation);
            self.prepared.remove(&key);
            self.unrecorded.remove(&key);
        }
        self.release_prepared();
        tracing::debug!(
            withdrawn = starts.len(),
            "prepared starts dropped: their spec changed or they are no longer wanted"
        );
    }

    fn start(&mut self, spec: &VassalSpec, generation: u64) -> Result<(), StartError> {
        let result = self.start_proc(spec, generation).map_err(|failure| self.start_failed(&spec.name, failure));
        self.note_start(&spec.name, &result);
        result
    }

    fn reload(&mut self, spec: &VassalSpec) -> ReloadOutcome {
        if let Some(outcome) = self.reload_waiting(spec) {
            return outcome;
        }
        let Some(proc) = self.procs.get_mut(&spec.name) else { return ReloadOutcome::Restarting };
        let (outcome, launch) = match load(spec, &self.settings) {
            Ok(launch) => {
                crate::failpoint::hit("reload-before-signal");
                let outcome = if identity_changed(proc, spec, &launch, &self.settings) {
                    tracing::info!(vassal = %spec.name, pid = proc.pid(), "vassal runs as another user now; restarting it");
                    restart(proc, &self.settings)
                } else if ondemand::sockets_change((&proc.spec, &proc.launch), (spec, &launch), &self.settings) {
                    restart(proc, &self.settings)
                } else {
                    reload_proc(proc, spec, &launch, &self.settings)
                };
                (outcome, Some(launch))
            }
            // It may not run as whom it would run now: it stops, and its
            // start is refused (held) until its owner changes again.
            Err(LaunchError::Identity(e)) => {
                tracing::info!(vassal = %spec.name, source = %spec.source, error = %e, "the identity it would run as is refused; stopping it");
                (restart(proc, &self.settings), None)
            }
            Err(e) => {
                tracing::error!(vassal = %spec.name, error = %e, "new config is unusable; the running vassal keeps its previous config");
                return ReloadOutcome::Kept(e.to_string());
            }
        };
        if let Some(launch) = launch.filter(|_| !matches!(outcome, ReloadOutcome::Kept(_))) {
            proc.spec = spec.clone();
            proc.launch = launch;
        }
        let (generation, process, mode) = (proc.generation, proc.identity(), mode_of(&proc.launch));
        if outcome == ReloadOutcome::Restarting {
            self.timed.insert(spec.name.clone());
            self.not_idle(&spec.name);
        }
        tracing::info!(vassal = %spec.name, pid = process.0, outcome = ?outcome, "vassal reload");
        let _ = self.record(spec, generation, mode, Some(process), Intent::Run);
        outcome
    }

    fn stop(&mut self, name: &VassalName) -> bool {
        if self.stop_waiting(name) {
            tracing::info!(vassal = %name, "on-demand vassal no longer waits for a connection");
            return false;
        }
        let Some(proc) = self.procs.get_mut(name) else { return false };
        if !proc.state.is_stopping() {
            begin_stop(proc, &self.settings);
            crate::failpoint::hit("stop-after-signal");
        }
        let (spec, generation, process, mode) =
            (proc.spec.clone(), proc.generation, proc.identity(), mode_of(&proc.launch));
        self.timed.insert(name.clone());
        tracing::info!(vassal = %name, pid = process.0, "stopping vassal");
        let _ = self.record(&spec, generation, mode, Some(process), Intent::Stop);
        true
    }

    fn forget(&mut self, name: &VassalName) {
        self.ondemand.sockets.release(name);
        self.held_starts.remove(name);
        if let Err(e) = self.store.remove_vassal(name) {
            tracing::error!(vassal = %name, error = %e, "cannot update the state store");
        }
    }
}

/// Reads and parses the config of `spec`, refusing what the settings do not
/// allow: a native config from a source `--native` excludes, or an identity
/// tyrant mode refuses.
fn load(spec: &VassalSpec, settings: &Settings) -> Result<Launch, LaunchError> {
    let launch = launch::load_allowed(spec, settings.native)?;
    tyrant::identity(spec, &launch, settings.tyrant)?;
    Ok(launch)
}

/// Whether `spec` run as `launch` gets another uid or gid than the process
/// running now: a new identity takes a new process, never a reload.
fn identity_changed(proc: &Proc, spec: &VassalSpec, launch: &Launch, settings: &Settings) -> bool {
    let now = tyrant::identity(&proc.spec, &proc.launch, settings.tyrant).ok();
    let next = tyrant::identity(spec, launch, settings.tyrant).ok();
    now != next
}

pub(super) fn mode_of(launch: &Launch) -> Mode {
    match launch {
        Launch::Uwsgi { .. } => Mode::Uwsgi,
        Launch::Native(_) => Mode::Native,
    }
}

/// Applies a new launch to a running process.
/// A new command line (another config path, program or directory) cannot be
/// applied in place: only a restart does.
fn reload_proc(proc: &mut Proc, spec: &VassalSpec, launch: &Launch, settings: &Settings) -> ReloadOutcome {
    let binary = &settings.vassal_binary;
    if launch::command_line(&proc.spec, &proc.launch, binary) != launch::command_line(spec, launch, binary) {
        if let Launch::Native(new) = launch {
            if !spawn::resolvable(&new.exec[0]) {
                return ReloadOutcome::Kept(format!("program {:?} not found", new.exec[0]));
            }
        }
        return restart(proc, settings);
    }
    match (&proc.launch, launch) {
        (Launch::Uwsgi { .. }, Launch::Uwsgi { inline, .. }) => {
            if let Some(text) = inline {
                match channel::frame_config(text.as_bytes()) {
                    Ok(framed) => {
                        if let Some((_, old)) = &mut proc.config {
                            *old = framed;
                        }
                    }
                    Err(e) => return ReloadOutcome::Kept(e.to_string()),
                }
            }
            match proc.control.as_ref().map(|c| write_byte(c, channel::RELOAD)) {
                Some(Ok(())) => ReloadOutcome::Reloaded,
                _ => restart(proc, settings),
            }
        }
        (Launch::Native(old), Launch::Native(new)) => {
            if !spawn::resolvable(&new.exec[0]) {
                return ReloadOutcome::Kept(format!("program {:?} not found", new.exec[0]));
            }
            match new.reload {
                crate::vassal::ReloadMode::Signal(sig) if old == new => match proc.handle.signal(sig) {
                    Ok(()) => ReloadOutcome::Reloaded,
                    Err(_) => restart(proc, settings),
                },
                _ => restart(proc, settings),
            }
        }
        _ => restart(proc, settings),
    }
}

fn restart(proc: &mut Proc, settings: &Settings) -> ReloadOutcome {
    begin_stop(proc, settings);
    ReloadOutcome::Restarting
}

/// Sends the stop request of the vassal's mode and arms the SIGKILL deadline.
pub(super) fn begin_stop(proc: &mut Proc, settings: &Settings) {
    match &proc.launch {
        Launch::Uwsgi { .. } => {
            let sent = proc.control.as_ref().is_some_and(|c| write_byte(c, channel::STOP).is_ok());
            if !sent {
                Supervisor::signal_group(proc, libc::SIGTERM);
            }
        }
        Launch::Native(native) => Supervisor::signal_group(proc, native.stop_signal),
    }
    proc.state.stop(Instant::now() + stop_timeout(&proc.launch, settings));
}

/// How long a vassal run as `launch` may take to stop before its SIGKILL.
pub(super) fn stop_timeout(launch: &Launch, settings: &Settings) -> std::time::Duration {
    match launch {
        Launch::Uwsgi { .. } => settings.stop_timeout,
        Launch::Native(native) => native.stop_timeout.unwrap_or(settings.stop_timeout),
    }
}

fn write_byte(stream: &std::os::unix::net::UnixStream, byte: u8) -> std::io::Result<()> {
    // Straight to the socket: tokio's try_write would refuse until the
    // reactor has seen the socket writable.
    crate::sys::scm::send_byte(stream, byte)
}

impl Supervisor {
    /// Gives back the room of the round's prepared starts once they are all
    /// made: a map keeps the capacity of its largest round (a large start
    /// prepares thousands of launches of a few hundred bytes each), which
    /// would stay allocated for the rest of the emperor's life.
    fn release_prepared(&mut self) {
        if self.prepared.is_empty() && self.prepared.capacity() > SPARE_PREPARED {
            self.prepared = HashMap::new();
        }
        if self.unrecorded.is_empty() && self.unrecorded.capacity() > SPARE_PREPARED {
            self.unrecorded = HashMap::new();
        }
    }

    /// Starts `spec` as `generation`: the body of [`Executor::start`].
    fn start_proc(&mut self, spec: &VassalSpec, generation: u64) -> Result<(), StartFailure> {
        let key = (spec.name.clone(), generation);
        if !self.prepared.contains_key(&key) {
            // A start the round did not announce: its intent is made durable all the same.
            self.intend(&[(spec.clone(), generation)]);
        }
        let launch = self.prepared.remove(&key).expect("prepared above");
        let unrecorded = self.unrecorded.remove(&key);
        self.release_prepared();
        if let Some(cause) = unrecorded {
            return Err(StartFailure::Held(format!("its spawn intent cannot be recorded in the state store: {cause}")));
        }
        let launch = launch.map_err(|e| {
            match e {
                LaunchError::NativeRefused { .. } | LaunchError::Identity(_) => {
                    tracing::warn!(vassal = %spec.name, source = %spec.source, error = %e, "vassal refused");
                }
                _ => tracing::error!(vassal = %spec.name, error = %e, "cannot start vassal: bad config"),
            }
            StartError::Invalid(e.to_string())
        })?;
        self.fd_reserve.check().map_err(StartFailure::Held)?;
        let mode = mode_of(&launch);
        if self.prepare_sockets(spec, &launch)? {
            self.wait_for_connection(spec.clone(), launch, generation);
            return Ok(());
        }
        crate::failpoint::hit("spawn-after-intent");
        match self.spawn_proc(spec, &launch, generation) {
            Ok(proc) => {
                crate::failpoint::hit("spawn-before-pid");
                tracing::info!(vassal = %spec.name, pid = proc.pid(), generation, "vassal spawned");
                let _ = self.record(spec, generation, mode, Some(proc.identity()), Intent::Run);
                self.procs.insert(spec.name.clone(), Box::new(proc));
                self.watch_fence(&spec.name);
                Ok(())
            }
            Err(StartFailure::Error(e)) => {
                tracing::error!(vassal = %spec.name, error = %e, "cannot start vassal");
                Err(e.into())
            }
            Err(held) => Err(held),
        }
    }
}
