//! The [`Harness`]: a private temp dir, the emperor runs in it ([`Run`]),
//! what the stub recorded there, and the cleanup of every process of ours.

use super::proc::{all_pids, environ, kill, reaped};
use super::stub::{escape, parse_events, Event};
use super::{cond, wait_until, DEADLINE};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

/// The emperor under test.
pub const EMPEROR: &str = env!("CARGO_BIN_EXE_emperor");
/// The recording vassal.
pub const STUB: &str = env!("CARGO_BIN_EXE_emperor-stub-vassal");

/// Sets a file's mtime to now, like `touch`.
pub fn touch(path: &Path) {
    let file = fs::File::options().write(true).open(path).expect("open for touch");
    file.set_modified(SystemTime::now()).expect("set mtime");
}

/// Writes `content` to `path` atomically (temp file in the same directory,
/// then rename), the way deploy tools and most editors replace a config.
pub fn put(path: &Path, content: &str) {
    let name = path.file_name().expect("file name").to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    fs::write(&tmp, content).expect("write temp config");
    fs::rename(&tmp, path).expect("rename config into place");
}

/// One emperor process; SIGKILLed (and reaped) if still running when
/// dropped.
pub struct Run(Child);

impl Run {
    /// The emperor's pid.
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// `kill -9` of the emperor, waiting until it is gone.
    pub fn kill9(mut self) {
        kill(self.pid(), libc::SIGKILL);
        let _ = self.0.wait();
    }

    /// Whether the emperor is still running.
    pub fn running(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }

    /// Waits up to `timeout` for the emperor to exit on its own.
    pub fn wait_exit_within(&mut self, timeout: Duration) -> ExitStatus {
        wait_until(timeout, "the emperor to exit", || self.0.try_wait().expect("try_wait"))
    }

    /// Waits for the emperor to exit on its own.
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.wait_exit_within(DEADLINE)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temp dir, an emperor running in it, and the stub's records.
pub struct Harness {
    _tmp: tempfile::TempDir,
    /// The (canonical) temp dir.
    pub root: PathBuf,
    /// `root/vassals`, the default dir source (created).
    pub vassals: PathBuf,
    /// `root/record`, the stub's `STUB_RECORD`.
    pub record: PathBuf,
    /// `root/state`, passed as `--state-dir`.
    pub state: PathBuf,
    /// `root/emperor.log`, the emperor's stdout and stderr.
    pub log: PathBuf,
    emperor: Option<Run>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// A fresh temp dir with `vassals/`, `record/` and `state/` in it.
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new().prefix("emperor-test-").tempdir().expect("tempdir");
        let root = tmp.path().canonicalize().expect("canonical tempdir");
        let vassals = root.join("vassals");
        let record = root.join("record");
        let state = root.join("state");
        for dir in [&vassals, &record, &state] {
            fs::create_dir_all(dir).expect("create test dir");
        }
        let log = root.join("emperor.log");
        Harness { _tmp: tmp, root, vassals, record, state, log, emperor: None }
    }

    /// `dir://<vassals>`.
    pub fn dir_source(&self) -> String {
        format!("dir://{}", self.vassals.display())
    }

    /// Path of a config in the default vassals dir.
    pub fn vassal(&self, name: &str) -> PathBuf {
        self.vassals.join(name)
    }

    /// The emperor command line used by [`Harness::start`], without running it.
    pub fn command(&self, args: &[&str]) -> Command {
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log");
        let mut cmd = Command::new(EMPEROR);
        cmd.arg("--vassal-binary")
            .arg(STUB)
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .env("STUB_RECORD", &self.record)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        cmd
    }

    /// Starts an emperor with `args` (options, then sources) and `env` added
    /// to its environment, owned by the caller (for tests that restart it).
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        Run(cmd.spawn().expect("spawn emperor"))
    }

    /// [`Harness::start`] through `sh -c '<shell>; exec emperor …'`: the
    /// emperor starts in what `shell` sets up (a umask, say).
    pub fn start_after(&mut self, shell: &str, args: &[&str]) {
        assert!(self.emperor.is_none(), "emperor already started");
        let emperor = self.command(args);
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log");
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c")
            .arg(format!("{shell}; exec \"$0\" \"$@\""))
            .arg(EMPEROR)
            .args(emperor.get_args())
            .envs(emperor.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        self.emperor = Some(Run(sh.spawn().expect("spawn emperor through sh")));
    }

    /// [`Harness::spawn`] on the default dir source, `extra` options first.
    pub fn spawn_dir(&self, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let source = self.dir_source();
        let mut args = extra.to_vec();
        args.push(&source);
        self.spawn(&args, env)
    }

    /// Starts the emperor of this harness with `args` (options, then sources).
    pub fn start(&mut self, args: &[&str]) {
        assert!(self.emperor.is_none(), "emperor already started");
        self.emperor = Some(self.spawn(args, &[]));
    }

    /// Starts the emperor on the default dir source, `extra` options first.
    pub fn start_dir(&mut self, extra: &[&str]) {
        assert!(self.emperor.is_none(), "emperor already started");
        self.emperor = Some(self.spawn_dir(extra, &[]));
    }

    fn run(&mut self) -> &mut Run {
        self.emperor.as_mut().expect("emperor started")
    }

    /// The emperor's pid.
    pub fn emperor_pid(&self) -> i32 {
        self.emperor.as_ref().expect("emperor started").pid()
    }

    /// Sends `sig` to the emperor.
    pub fn signal_emperor(&self, sig: i32) {
        kill(self.emperor_pid(), sig);
    }

    /// `kill -9` of the emperor of this harness, waiting until it is gone;
    /// another one may be started afterwards.
    pub fn kill9_emperor(&mut self) {
        self.emperor.take().expect("emperor started").kill9();
    }

    /// Whether the emperor is still running.
    pub fn emperor_running(&mut self) -> bool {
        self.run().running()
    }

    /// Waits for the emperor to exit and returns its status.
    pub fn wait_emperor_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.run().wait_exit_within(timeout)
    }

    /// The emperor's log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines that name `needle` and look like a complaint.
    pub fn complaints_about(&self, needle: &str) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .filter(|l| {
                let lower = l.to_lowercase();
                ["error", "warn", "fail", "invalid", "cannot", "can't", "unable", "not found", "no such"]
                    .iter()
                    .any(|w| lower.contains(w))
            })
            .map(str::to_owned)
            .collect()
    }

    /// Waits for a complaint log line naming `needle`.
    pub fn wait_complaint(&self, needle: &str) -> String {
        wait_until(DEADLINE, format!("an error/warning log line naming {needle:?}"), || {
            self.complaints_about(needle).into_iter().next()
        })
    }

    /// The events file of vassal `name`.
    pub fn events_path(&self, name: &str) -> PathBuf {
        self.record.join(format!("{}.events", escape(name)))
    }

    /// Everything vassal `name` recorded so far.
    pub fn events(&self, name: &str) -> Vec<Event> {
        parse_events(&fs::read_to_string(self.events_path(name)).unwrap_or_default())
    }

    /// Events of `name` of one kind.
    pub fn events_of(&self, name: &str, kind: &str) -> Vec<Event> {
        self.events(name).into_iter().filter(|e| e.kind == kind).collect()
    }

    /// `start` records of `name`.
    pub fn starts(&self, name: &str) -> Vec<Event> {
        self.events_of(name, "start")
    }

    /// Waits until `name` has an event matching `pred`, and returns it.
    pub fn wait_event(&self, name: &str, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        wait_until(DEADLINE, format!("{name}: {what}"), || self.events(name).into_iter().find(&pred))
    }

    /// Waits until `name` has at least `n` starts and returns them all.
    pub fn wait_starts(&self, name: &str, n: usize) -> Vec<Event> {
        wait_until(DEADLINE, format!("{name}: {n} start record(s)"), || {
            let starts = self.starts(name);
            (starts.len() >= n).then_some(starts)
        })
    }

    /// Waits for the first start of `name` and returns it.
    pub fn wait_start(&self, name: &str) -> Event {
        self.wait_starts(name, 1).remove(0)
    }

    /// Waits until process `pid` has exited and been reaped.
    pub fn wait_reaped(&self, pid: i32, what: &str) {
        wait_until(DEADLINE, format!("pid {pid} ({what}) to exit and be reaped"), || cond(reaped(pid)));
    }

    /// Waits until process `pid` is dead (reaped or zombie).
    pub fn wait_dead(&self, pid: i32, what: &str) {
        wait_until(DEADLINE, format!("pid {pid} ({what}) to die"), || cond(super::proc::dead(pid)));
    }

    /// Names (escaped) of every vassal that recorded anything.
    pub fn recorded_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.record)
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str()?.strip_suffix(".events").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The environment entry every process of this harness inherits.
    fn marker(&self) -> String {
        format!("STUB_RECORD={}", self.record.display())
    }

    /// Pids of live processes that inherited this harness's `STUB_RECORD`.
    fn our_processes(&self) -> Vec<i32> {
        let marker = self.marker();
        all_pids().into_iter().filter(|&pid| environ(pid).contains(&marker)).collect()
    }

    /// Every pid the stub recorded (vassals and their children).
    fn recorded_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for name in self.recorded_names() {
            let text = fs::read_to_string(self.record.join(format!("{name}.events"))).unwrap_or_default();
            for event in parse_events(&text) {
                pids.push(event.pid);
                pids.extend(event.child_pid().filter(|_| event.kind == "child"));
            }
        }
        pids
    }

    fn dump(&self) {
        eprintln!("===== emperor log ({}) =====\n{}", self.log.display(), self.log_text());
        for name in self.recorded_names() {
            let path = self.record.join(format!("{name}.events"));
            let text = fs::read_to_string(&path).unwrap_or_default();
            eprintln!("===== {} =====\n{text}", path.display());
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.emperor.take());
        if std::thread::panicking() || std::env::var_os("EMPEROR_TEST_DUMP").is_some() {
            self.dump();
        }
        // Every recorded pid plus anything else still carrying our
        // STUB_RECORD; only processes that carry it are killed, so a
        // recycled pid is never hit.
        let marker = self.marker();
        let mut pids = self.our_processes();
        pids.extend(self.recorded_pids());
        pids.sort_unstable();
        pids.dedup();
        for pid in pids {
            if environ(pid).contains(&marker) {
                kill(pid, libc::SIGKILL);
            }
        }
    }
}
