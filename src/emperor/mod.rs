//! The emperor's main loop: wires sources, reconciler and supervisor, and
//! handles the emperor's own signals.
//!
//! Events flow one way: source events go through the journal (written
//! first) to the controller, which drives the supervisor; the supervisor
//! hands back only the vassals whose process is gone. Every wake-up (a
//! source event, an exit, a respawn timer, a signal) drains what is pending,
//! then reconciles what it made dirty and flushes the state store once, if
//! anything was written.

mod commands;
mod dirs;
mod event_loop;
mod journal;
mod observed;
mod pace;
mod processes;
mod singletons;
mod status_servers;
#[cfg(test)]
mod tests;

use crate::cli::Cli;
use crate::supervisor::{Settings, Supervisor};
use crate::{control, fleet, source};
use anyhow::Context;
use event_loop::Emperor;
use journal::Journal;
use reconciler::{BackoffPolicy, Controller, SourceId, VassalName, VassalSpec};
use std::collections::{HashMap, HashSet};
use tokio::time::Instant;

/// Runs the emperor until a stop signal or until `shutdown` completes.
pub async fn run(cli: Cli, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    check_tyrant(&cli)?;
    let timing = cli.lease_timing().context("the lease options")?;
    let host = crate::fleet::host::host_name(cli.host.as_deref());
    for ext in &cli.extra_extension {
        reconciler::add_extension(ext).with_context(|| format!("--extra-extension {ext}"))?;
    }
    let sources = cli.sources.iter().map(|s| source::parse(s)).collect::<Result<Vec<_>, _>>()?;
    let state_dir = std::path::absolute(cli.state_dir()).context("resolving the state dir")?;
    let log_dir = cli.log_dir.clone().unwrap_or_else(|| state_dir.join("logs"));
    dirs::prepare_state_dir(&state_dir, &log_dir)?;
    dirs::prepare_log_dir(&log_dir)?;
    let store = open_store(&state_dir, cli.reset_state)?;
    let monitors = status_servers::bind(&cli).await?;
    let control_path = std::path::absolute(cli.control_socket()).context("resolving the control socket")?;
    // Without its control socket the emperor still runs its vassals; only
    // a socket another emperor answers on stops it.
    let listener = match control::bind(&control_path) {
        Ok(listener) => Some(listener),
        Err(e @ control::BindError::InUse(_)) => return Err(e.into()),
        Err(e) => {
            tracing::error!(error = %e, "no control socket: emperor ctl cannot reach this emperor");
            None
        }
    };
    let policy = BackoffPolicy {
        min_ms: cli.backoff_min.as_millis() as u64,
        max_ms: cli.backoff_max.as_millis() as u64,
        reset_after_ms: cli.backoff_reset.as_millis() as u64,
    };
    let next_generation = store.next_generation()?;
    let store_stopped = store.stopped()?;
    let ids: Vec<SourceId> = sources.iter().map(|s| s.id()).collect();
    let mut restored = Vec::new();
    for id in &ids {
        if let Some(snapshot) = store.snapshot(id)? {
            restored.push((id.clone(), snapshot));
        }
    }
    let on_demand_directory = cli
        .on_demand_directory
        .as_deref()
        .map(std::path::absolute)
        .transpose()
        .context("resolving --on-demand-directory")?;
    let settings = Settings {
        vassal_binary: cli.vassal_binary.clone(),
        log_dir: log_dir.clone(),
        stop_timeout: cli.stop_timeout,
        heartbeat_timeout: cli.heartbeat_timeout,
        native: cli.native,
        vassal_umask: cli.vassal_umask.unwrap_or_else(crate::sys::umask::started_with),
        log_rotation: cli.log_rotation(),
        tyrant: cli.tyrant,
        injection: cli.injection(),
        on_demand_extension: cli.on_demand_extension.clone(),
        on_demand_directory,
    };
    let journal = Journal::new(store.clone(), next_generation);
    let lease_tokens = store.clone();
    let events = store.events();
    let emperor_id = store.emperor_id().to_owned();
    let cursors = store.cursors();
    let mut supervisor = Supervisor::new(settings, store, &state_dir).context("watching SIGCHLD")?;
    let known: HashMap<&VassalName, &VassalSpec> =
        restored.iter().flat_map(|(_, snap)| snap.specs.iter().map(|s| (&s.name, s))).collect();
    let actual = supervisor.recover(|name| known.get(name).map(|s| (*s).clone()));
    let notify = control::Notifier::from_env(ids.clone(), actual.len());
    let counters = control::Counters::for_sources(&ids);
    let tracked: Vec<VassalName> = actual.iter().map(|(name, _)| name.clone()).collect();
    let mut controller = Controller::with_actual(policy, actual.into_iter().collect(), next_generation);
    for id in &ids {
        controller.add_source(id.clone());
    }
    let running = |name: &VassalName| {
        controller.actual().get(name).is_some_and(|a| matches!(a.phase, reconciler::Phase::Running { .. }))
    };
    // The holder of a lease is this emperor, not only its host: two
    // emperors given the same --host never both hold one lease.
    let holder = format!("{host}/{}", &emperor_id[..emperor_id.len().min(8)]);
    let leases = singletons::lease_stores(&sources, &holder, timing).await?;
    let mut singletons = singletons::Singletons::start(leases, timing, lease_tokens, running);
    for (id, snapshot) in restored {
        singletons.on_specs(&id, &snapshot.specs, &mut controller);
        let specs = snapshot.specs.into_iter().map(|s| (s.name.clone(), s)).collect();
        controller.set_snapshot(&id, specs, snapshot.complete);
    }
    for name in store_stopped {
        controller.set_stopped(&name, true);
    }
    let (mut hook, handle) = control::Hook::new(ids, Some(events));
    // Before the sources start: another live emperor with this host name stops this one here.
    let status_writers = start_status_writers(&host, &sources, &emperor_id, &hook).await?;
    let settings = source::supervise::Settings {
        resync: cli.resync,
        emperor_id,
        capacity: source::supervise::CAPACITY,
        cursors: Some(cursors),
        counts: Some(hook.counts()),
        file_owners: cli.file_owners(),
        host: host.clone(),
    };
    // Owns the running sources; dropped when this function returns, which stops them.
    let (src_rx, sources) = source::supervise::start(sources, settings).await?;
    hook.watch_sources(sources.board());
    let owner = rustix::process::geteuid().as_raw();
    let context = control::Context { handle, owner, log_dir, sources: sources.board() };
    let monitors = monitors.spawn(&cli, &context, &counters);
    let server = listener.map(|listener| tokio::spawn(control::serve(listener, context)));
    tracing::info!(state_dir = %state_dir.display(), control = %control_path.display(), sources = cli.sources.len(), "emperor started");
    let emperor = Emperor {
        controller,
        supervisor,
        journal,
        clock: Instant::now(),
        conflicts: HashSet::new(),
        control: hook,
        notify,
        metrics: control::LoopMetrics::new(counters, tracked),
        singletons,
        trimmed_at: next_generation,
        pace: pace::Pace::default(),
    };
    let result = emperor.serve(src_rx, shutdown).await;
    monitors.iter().for_each(|task| task.abort());
    fleet::status::finish(status_writers, matches!(result, Ok(event_loop::Ending::Stopped))).await;
    if let Some(server) = server {
        server.abort();
        let _ = std::fs::remove_file(&control_path);
    }
    result.map(drop)
}

/// Starts a status writer for every source whose URI asks for one (`status=`).
async fn start_status_writers(
    host: &str,
    sources: &[Box<dyn source::Source>],
    emperor_id: &str,
    hook: &control::Hook,
) -> anyhow::Result<Vec<fleet::status::StatusTask>> {
    let me =
        fleet::status::Me { host: host.to_owned(), emperor_id: emperor_id.to_owned(), pid: std::process::id() as i32 };
    let mut writers = Vec::new();
    for target in sources.iter().filter_map(|s| s.status()) {
        writers.push(fleet::status::start(target, me.clone(), hook.tables()).await?);
    }
    Ok(writers)
}

/// Tyrant mode switches every vassal to another user: only root can.
fn check_tyrant(cli: &Cli) -> anyhow::Result<()> {
    if cli.tyrant && !crate::sys::user::is_root() {
        let (uid, _) = crate::sys::user::ids();
        anyhow::bail!(
            "--tyrant runs every vassal as the owner of its config, which needs root; this emperor runs as uid {uid}"
        );
    }
    if cli.tyrant {
        tracing::info!(
            nofollow = cli.tyrant_nofollow,
            "tyrant mode: every vassal runs as its owner; uid 0 and gid 0 are refused"
        );
    }
    Ok(())
}

/// Opens the state store; with `reset`, a store that cannot be opened is
/// moved aside first and a fresh one started.
fn open_store(state_dir: &std::path::Path, reset: bool) -> anyhow::Result<state::Store> {
    match open_when_unlocked(state_dir) {
        Ok(store) => Ok(store),
        Err(e @ state::StateError::Locked(_)) => Err(e.into()),
        Err(e) if reset => {
            let aside = state::Store::move_aside(state_dir)?;
            tracing::warn!(error = %e, moved_to = %aside.display(), "state store unusable; moved aside, starting fresh");
            Ok(state::Store::open(state_dir)?)
        }
        Err(e) => Err(anyhow::Error::new(e)
            .context("cannot open the state store (start with --reset-state to move it aside and start fresh)")),
    }
}

/// How long a locked store is waited for before it is reported in use: the
/// lock of an emperor that has just died (a restart after a crash) can
/// outlive it by a few milliseconds, until every reference to its open file
/// is gone.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens the state store, waiting up to [`LOCK_WAIT`] for a lock to go away.
fn open_when_unlocked(state_dir: &std::path::Path) -> Result<state::Store, state::StateError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match state::Store::open(state_dir) {
            Err(state::StateError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}
