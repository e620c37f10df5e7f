//! Re-adoption after an emperor restart: recorded vassals that still run are
//! watched again instead of being started twice; processes of ours that no
//! record explains are stopped.
//!
//! A process is ours only if it is alive, leads its own session, has the
//! recorded start time, and carries our `EMPEROR_ID` and its
//! `EMPEROR_VASSAL=<name>:<generation>` in `/proc/PID/environ`. A pid that
//! now belongs to another process is never signalled.

use super::channel;
use super::fdholder;
use super::launch::{self, Launch};
use super::process::{self, Adopted, Handle};
use super::sockets;
use super::watch::Watched;
use super::Supervisor;
use crate::sys::proc;
use crate::vassal::{Format, NativeSpec, ReloadMode};
use reconciler::{ActualVassal, Backoff, ConfigRef, Phase, VassalName, VassalSpec};
use state::{Intent, Mode, VassalRecord};
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

/// A live process that carries our emperor id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its pid.
    pub pid: i32,
    /// Its start time (clock ticks since boot).
    pub start_time: u64,
    /// The vassal name from `EMPEROR_VASSAL`.
    pub name: String,
    /// The generation from `EMPEROR_VASSAL`.
    pub generation: u64,
}

/// Every session leader whose environment holds `EMPEROR_ID=<emperor_id>`.
/// Each file is read into one buffer, in one read where it fits: with
/// 10 000 vassals, this scan is most of a re-adoption.
pub fn scan(emperor_id: &str) -> Vec<Found> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut buf = Vec::new();
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| identify(pid, emperor_id, &mut buf))
        .collect()
}

/// Reads who `pid` is, if it is one of our vassals' session leaders.
fn identify(pid: i32, emperor_id: &str, buf: &mut Vec<u8>) -> Option<Found> {
    let stat = proc::parse_bytes(proc::read_into(pid, "stat", buf)?)?;
    if stat.is_zombie() || !stat.leads_session(pid) {
        return None;
    }
    let start_time = stat.start_time;
    let environ = proc::read_into(pid, "environ", buf)?;
    let var = |key: &str| environ.split(|b| *b == 0).find_map(|kv| kv.strip_prefix(key.as_bytes())?.strip_prefix(b"="));
    if var("EMPEROR_ID")? != emperor_id.as_bytes() {
        return None;
    }
    let vassal = std::str::from_utf8(var("EMPEROR_VASSAL")?).ok()?;
    let (name, generation) = vassal.rsplit_once(':')?;
    Some(Found { pid, start_time, name: name.to_owned(), generation: generation.parse().ok()? })
}

/// Whether the record describes exactly the found process.
fn matches(record: &VassalRecord, found: &Found) -> bool {
    let same_process = match (record.pid, record.start_time) {
        (Some(pid), Some(start)) => pid == found.pid && start == found.start_time,
        (Some(pid), None) => pid == found.pid,
        // Spawned, but the emperor died before recording the pid.
        (None, _) => true,
    };
    same_process && record.name.as_str() == found.name && record.generation == found.generation
}

impl Supervisor {
    /// Re-adopts every recorded vassal that still runs and stops processes
    /// of ours that no record explains. `spec_of` gives the last known spec
    /// of a vassal. Returns the actual state the reconciler starts from.
    pub fn recover(&mut self, spec_of: impl Fn(&VassalName) -> Option<VassalSpec>) -> Vec<(VassalName, ActualVassal)> {
        let records = match self.store.vassals() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read vassal records; starting without them");
                Vec::new()
            }
        };
        let began = std::time::Instant::now();
        let mut found: HashMap<(String, u64), Found> =
            scan(self.store.emperor_id()).into_iter().map(|f| ((f.name.clone(), f.generation), f)).collect();
        let scan_ms = began.elapsed().as_millis() as u64;
        let (mut held, sockets) = self.take_held_fds();
        let recorded: HashSet<String> = records.iter().map(|r| r.name.to_string()).collect();
        self.take_back_sockets(sockets, |name| recorded.contains(name));
        let (mut adopted, mut gone) = (0usize, 0usize);
        let mut actual = Vec::with_capacity(records.len());
        for record in records {
            let key = (record.name.as_str().to_owned(), record.generation);
            let candidate = found.remove(&key).filter(|f| matches(&record, f));
            let mut fds = held.remove(&key).unwrap_or_default();
            // Read on, whatever became of the vassal: its last output may wait there.
            if let Some(pipe) = fds.log.take() {
                self.read_output(record.name.as_str(), pipe);
            }
            let spec = spec_of(&record.name).filter(|s| s.version == record.version);
            let phase = match candidate.and_then(|f| self.adopt(&record, &f, spec, fds)) {
                Some(pid) => {
                    tracing::info!(vassal = %record.name, pid, generation = record.generation, "vassal re-adopted");
                    adopted += 1;
                    Phase::Running { since: 0 }
                }
                None => {
                    tracing::info!(vassal = %record.name, "recorded vassal is no longer running");
                    self.release(record.name.as_str(), record.generation);
                    gone += 1;
                    Phase::Crashed { restart_at: 0 }
                }
            };
            let vassal = ActualVassal {
                source: record.source.clone(),
                version: record.version.clone(),
                phase,
                generation: record.generation,
                backoff: Backoff::default(),
            };
            actual.push((record.name, vassal));
        }
        self.stop_strays(found.into_values());
        for ((name, generation), mut fds) in held {
            if let Some(pipe) = fds.log.take() {
                self.read_output(&name, pipe);
            }
            self.release(&name, generation);
        }
        let total_ms = began.elapsed().as_millis() as u64;
        tracing::info!(adopted, gone, scan_ms, total_ms, "re-adoption done");
        // The scan, the listing and the records are freed: give that back.
        crate::sys::heap::trim();
        actual
    }

    /// Watches `found` as the vassal of `record`; its pid on success. A
    /// vassal with a control channel keeps no pidfd open (its exit shows
    /// as the channel's hang-up first); one without gets one.
    fn adopt(&mut self, record: &VassalRecord, found: &Found, spec: Option<VassalSpec>, fds: HeldFds) -> Option<i32> {
        // The pidfd pins the process while its start time is checked.
        let pidfd = process::open_checked(found.pid, found.start_time).ok()?;
        let pidfd = match fds.control {
            Some(_) => None,
            None => Some(Arc::new(pidfd.into_async().ok()?)),
        };
        let spec = spec.unwrap_or_else(|| placeholder_spec(record));
        let launch = launch::load(&spec).unwrap_or_else(|_| fallback_launch(record));
        let control = fds.control.map(UnixStream::from);
        let config = match (&launch, fds.config) {
            (Launch::Uwsgi { inline: Some(text), .. }, Some(fd)) => {
                channel::frame_config(text.as_bytes()).ok().map(|framed| (UnixStream::from(fd), framed))
            }
            _ => None,
        };
        let (generation, pid, start_time) = (record.generation, found.pid, found.start_time);
        let handle = Handle::Adopted(Adopted { pid, start_time, pidfd });
        let proc = self.watch_proc(Watched { generation, handle, spec, launch, control, config });
        self.record_adopted(record, found);
        self.procs.insert(record.name.clone(), Box::new(proc));
        Some(found.pid)
    }

    /// Records the adopted process as running, unless its record says so
    /// already (the usual case: no store write per vassal).
    fn record_adopted(&mut self, record: &VassalRecord, found: &Found) {
        let current = record.pid == Some(found.pid)
            && record.start_time == Some(found.start_time)
            && record.intent == Intent::Run;
        if current {
            return;
        }
        let mut updated = record.clone();
        updated.pid = Some(found.pid);
        updated.start_time = Some(found.start_time);
        updated.intent = Intent::Run;
        if let Err(e) = self.store.put_vassal(&updated) {
            tracing::error!(vassal = %record.name, error = %e, "cannot update the state store");
        }
    }

    /// Kills processes of ours that no record explains (a crash between
    /// their spawn and its record, or a stale generation).
    fn stop_strays(&self, strays: impl Iterator<Item = Found>) {
        for stray in strays {
            let Ok(pidfd) = process::open_checked(stray.pid, stray.start_time) else { continue };
            tracing::warn!(vassal = %stray.name, pid = stray.pid, generation = stray.generation, "stopping an unrecorded vassal process");
            let _ = pidfd.signal_group(stray.pid, libc::SIGKILL, false);
        }
    }

    /// Takes back, in one listing, the channel ends the fd holder kept, by
    /// (name, generation), and the listening sockets it kept (by key). Each
    /// channel end is noted in the holder's registry (a later holder gets
    /// it again; those of vassals not adopted are released by the caller).
    fn take_held_fds(&mut self) -> (HashMap<(String, u64), HeldFds>, HeldSockets) {
        let mut out: HashMap<(String, u64), HeldFds> = HashMap::new();
        let mut sockets = Vec::new();
        let listed = self.holder.list().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the fd holder");
            Vec::new()
        });
        for (key, fd) in listed {
            if sockets::parse_key(&key).is_some() {
                sockets.push((key, fd));
                continue;
            }
            let Some((kind, generation, name)) = fdholder::parse_key(&key) else { continue };
            if let Err(e) = self.holder.keep(&key, fd.as_fd()) {
                tracing::warn!(vassal = name, key, error = %e, "cannot keep a copy of a held channel");
            }
            let entry = out.entry((name.to_owned(), generation)).or_default();
            match kind {
                "control" => entry.control = Some(fd),
                "config" => entry.config = Some(fd),
                "log" => entry.log = Some(fd),
                _ => {}
            }
        }
        (out, sockets)
    }
}

/// Listening sockets taken back from the fd holder, by key.
type HeldSockets = Vec<(String, OwnedFd)>;

/// Channel ends of one vassal taken back from the fd holder.
#[derive(Default)]
struct HeldFds {
    control: Option<OwnedFd>,
    config: Option<OwnedFd>,
    log: Option<OwnedFd>,
}

/// A spec standing in for an adopted vassal whose config is not known any more.
fn placeholder_spec(record: &VassalRecord) -> VassalSpec {
    VassalSpec {
        name: record.name.clone(),
        source: record.source.clone(),
        config: ConfigRef::Inline(String::new()),
        version: record.version.clone(),
        owner: None,
        socket: None,
    }
}

/// How to talk to an adopted vassal whose config cannot be read: by its mode.
fn fallback_launch(record: &VassalRecord) -> Launch {
    match record.mode {
        Mode::Uwsgi => Launch::Uwsgi {
            flag: Format::from_extension(record.name.extension()).and_then(Format::uwsgi_flag).unwrap_or("--ini"),
            inline: None,
        },
        Mode::Native => Launch::Native(Box::new(NativeSpec {
            singleton: false,
            exec: vec!["(adopted)".into()],
            chdir: None,
            env: Vec::new(),
            uid: None,
            gid: None,
            stop_signal: libc::SIGTERM,
            stop_timeout: None,
            reload: ReloadMode::Restart,
            sockets: Vec::new(),
            readiness: Default::default(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconciler::SourceId;

    fn record(pid: Option<i32>, start: Option<u64>, generation: u64) -> VassalRecord {
        VassalRecord {
            name: VassalName::parse("a.ini").unwrap(),
            source: SourceId("dir:///x".into()),
            version: "v".into(),
            generation,
            mode: Mode::Native,
            pid,
            start_time: start,
            intent: Intent::Run,
        }
    }

    #[test]
    fn records_match_only_the_same_process() {
        let found = Found { pid: 10, start_time: 500, name: "a.ini".into(), generation: 3 };
        assert!(matches(&record(Some(10), Some(500), 3), &found));
        assert!(!matches(&record(Some(10), Some(499), 3), &found), "pid reused by another process");
        assert!(!matches(&record(Some(11), Some(500), 3), &found));
        assert!(!matches(&record(Some(10), Some(500), 2), &found), "other generation");
        assert!(matches(&record(None, None, 3), &found), "spawned before its pid was recorded");
    }

    #[test]
    fn scanning_finds_only_our_session_leaders() {
        use std::os::unix::process::CommandExt;
        let id = format!("test-{}", std::process::id());
        let command = || {
            let mut c = std::process::Command::new("sleep");
            c.arg("30").env("EMPEROR_ID", &id).env("EMPEROR_VASSAL", "x:y.ini:7");
            c
        };
        // A process group leader is not a session leader: not ours.
        let mut plain = command().process_group(0).spawn().unwrap();
        let found_plain = scan(&id);
        plain.kill().unwrap();
        plain.wait().unwrap();
        assert!(found_plain.is_empty());
        // A session leader, started the way vassals are.
        let request = crate::sys::spawn::SpawnRequest {
            program: "sleep".into(),
            args: vec!["30".into()],
            cwd: None,
            env: vec![("EMPEROR_ID".into(), id.clone()), ("EMPEROR_VASSAL".into(), "x:y.ini:7".into())],
            env_remove: Vec::new(),
            moved_fds: Vec::new(),
            log: std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap(),
            user: None,
            umask: None,
        };
        let leader = crate::sys::spawn::spawn(request).unwrap();
        // posix_spawn returns while the kernel may still be writing the new
        // environment: look until it shows, within a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let found = loop {
            let found = scan(&id);
            if !found.is_empty() || std::time::Instant::now() >= deadline {
                break found;
            }
            std::thread::yield_now();
        };
        crate::sys::signal::kill(leader, libc::SIGKILL).unwrap();
        crate::sys::wait::reap_soon(leader);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].name.as_str(), found[0].generation), ("x:y.ini", 7));
        assert_eq!(found[0].pid, leader);
    }
}
