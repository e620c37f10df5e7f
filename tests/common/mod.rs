//! Shared harness for the black-box tests: runs the real `emperor` binary
//! against `emperor-stub-vassal` in a private temp dir and reads back what the
//! stub recorded.
//!
//! Every wait is a condition polled against a deadline ([`wait_until`]); the
//! [`Harness`] drop guard SIGKILLs the emperor and every process that carries
//! this harness's `STUB_RECORD`, and prints the emperor's log and the stub
//! records when the test is failing (or always, with `EMPEROR_TEST_DUMP=1`).
#![allow(dead_code, unsafe_code)]

use std::fmt::Display;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The emperor under test.
pub const EMPEROR: &str = env!("CARGO_BIN_EXE_emperor");
/// The recording vassal.
pub const STUB: &str = env!("CARGO_BIN_EXE_emperor-stub-vassal");
/// How long any single condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How often conditions are re-checked.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `check` every `every` until it returns `Some`, panicking with `what`
/// once `timeout` has passed.
pub fn wait_every<T>(
    timeout: Duration,
    every: Duration,
    what: impl Display,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(every);
    }
}

/// [`wait_every`] with the default poll interval.
pub fn wait_until<T>(timeout: Duration, what: impl Display, check: impl FnMut() -> Option<T>) -> T {
    wait_every(timeout, POLL, what, check)
}

/// Turns a bool condition into the `Option` form [`wait_until`] takes.
pub fn cond(ok: bool) -> Option<()> {
    ok.then_some(())
}

/// Escapes a vassal name for use as a file name (`%` → `%25`, `/` → `%2F`).
pub fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

/// One line the stub recorded: `<kind> pid=<pid> gen=<gen> <details>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: String,
    pub pid: i32,
    pub gen: Option<u64>,
    pub details: String,
}

impl Event {
    fn parse(line: &str) -> Option<Event> {
        let (kind, rest) = line.split_once(' ')?;
        let rest = rest.strip_prefix("pid=")?;
        let (pid, rest) = rest.split_once(' ')?;
        let rest = rest.strip_prefix("gen=")?;
        let (gen, details) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(Event {
            kind: kind.to_owned(),
            pid: pid.parse().ok()?,
            gen: gen.parse().ok(),
            details: details.to_owned(),
        })
    }

    /// The pid of a `child` record (its details are `pid=<child pid>`).
    pub fn child_pid(&self) -> Option<i32> {
        self.details.strip_prefix("pid=")?.parse().ok()
    }

    /// The `argv=` part of a `start` record.
    pub fn argv(&self) -> &str {
        let rest = self.details.strip_prefix("argv=").unwrap_or("");
        rest.split(" cwd=").next().unwrap_or("")
    }

    /// The `cwd=` part of a `start` record.
    pub fn cwd(&self) -> &str {
        let rest = self.details.split(" cwd=").nth(1).unwrap_or("");
        rest.split(" env_fd=").next().unwrap_or("")
    }

    /// Whether this is a `recv` of `byte`.
    pub fn is_recv(&self, byte: u8) -> bool {
        self.kind == "recv" && self.details == byte.to_string()
    }
}

/// Parses a whole events file; a trailing line without its newline is skipped.
pub fn parse_events(text: &str) -> Vec<Event> {
    text.split_inclusive('\n').filter(|l| l.ends_with('\n')).filter_map(|l| Event::parse(l.trim_end())).collect()
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`, ...), or `None` when
/// the pid does not exist (it exited and was reaped).
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Running (exists and is not a zombie).
pub fn alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// Exited and reaped: no `/proc` entry at all.
pub fn reaped(pid: i32) -> bool {
    proc_state(pid).is_none()
}

/// Dead: reaped, or a zombie (for grandchildren re-parented to an init that
/// may not reap).
pub fn dead(pid: i32) -> bool {
    !alive(pid)
}

/// `/proc/<pid>/cmdline` split into arguments.
pub fn cmdline(pid: i32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// `/proc/<pid>/environ` as `K=V` strings.
pub fn environ(pid: i32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// The value of `key` in `/proc/<pid>/environ`.
pub fn env_of(pid: i32, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    environ(pid).into_iter().find_map(|kv| kv.strip_prefix(&prefix).map(str::to_owned))
}

/// `/proc/<pid>/cwd`.
pub fn cwd_of(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Sends `sig` to `pid`.
pub fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}

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

/// An uWSGI-style config with the given extra lines (stub knobs).
pub fn uwsgi_ini(extra: &str) -> String {
    format!("[uwsgi]\nmaster = true\n{extra}\n")
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
    emperor: Option<Child>,
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

    /// Starts the emperor with `args` (options, then sources).
    pub fn start(&mut self, args: &[&str]) {
        assert!(self.emperor.is_none(), "emperor already started");
        self.emperor = Some(self.command(args).spawn().expect("spawn emperor"));
    }

    /// Starts the emperor on the default dir source, `extra` options first.
    pub fn start_dir(&mut self, extra: &[&str]) {
        let source = self.dir_source();
        let mut args = extra.to_vec();
        args.push(&source);
        self.start(&args);
    }

    /// The emperor's pid.
    pub fn emperor_pid(&self) -> i32 {
        self.emperor.as_ref().expect("emperor started").id() as i32
    }

    /// Sends `sig` to the emperor.
    pub fn signal_emperor(&self, sig: i32) {
        kill(self.emperor_pid(), sig);
    }

    /// Whether the emperor is still running.
    pub fn emperor_running(&mut self) -> bool {
        let child = self.emperor.as_mut().expect("emperor started");
        child.try_wait().expect("try_wait").is_none()
    }

    /// Waits for the emperor to exit and returns its status.
    pub fn wait_emperor_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.emperor.as_mut().expect("emperor started");
        wait_until(timeout, "the emperor to exit", || child.try_wait().expect("try_wait"))
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
        wait_until(DEADLINE, format!("pid {pid} ({what}) to die"), || cond(dead(pid)));
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

    /// Pids of live processes that inherited this harness's `STUB_RECORD`.
    fn our_processes(&self) -> Vec<i32> {
        let marker = format!("STUB_RECORD={}", self.record.display());
        let Ok(proc_dir) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        proc_dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| environ(pid).contains(&marker))
            .collect()
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
        if let Some(mut child) = self.emperor.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() || std::env::var_os("EMPEROR_TEST_DUMP").is_some() {
            self.dump();
        }
        // Every recorded pid (vassals and their children) plus anything else
        // still carrying our STUB_RECORD; only processes that carry it are
        // killed, so a recycled pid is never hit.
        let marker = format!("STUB_RECORD={}", self.record.display());
        let mut pids = self.our_processes();
        for name in self.recorded_names() {
            let text = fs::read_to_string(self.record.join(format!("{name}.events"))).unwrap_or_default();
            for event in parse_events(&text) {
                pids.push(event.pid);
                pids.extend(event.child_pid().filter(|_| event.kind == "child"));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        for pid in pids {
            if environ(pid).contains(&marker) {
                kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Live session leaders carrying this harness's emperor id (from
/// `state/emperor-id`), by vassal name: the vassal processes the emperor of
/// this state dir manages, however it got them.
pub fn our_vassals(h: &Harness) -> std::collections::BTreeMap<String, Vec<i32>> {
    let mut out: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
    let Ok(id) = fs::read_to_string(h.state.join("emperor-id")) else { return out };
    let marker = format!("EMPEROR_ID={}", id.trim());
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else { continue };
        let leads = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s[s.rfind(')')? + 2..].split_whitespace().nth(3)?.parse::<i32>().ok())
            == Some(pid);
        let env = environ(pid);
        if !leads || proc_state(pid) == Some('Z') || !env.contains(&marker) {
            continue;
        }
        if let Some(v) = env.iter().find_map(|v| v.strip_prefix("EMPEROR_VASSAL=")) {
            out.entry(v.rsplit_once(':').map_or(v, |(n, _)| n).to_owned()).or_default().push(pid);
        }
    }
    out
}

/// One emperor process of a test that restarts the emperor; SIGKILLed (and
/// reaped) if still running when dropped.
pub struct Run(pub Child);

impl Run {
    /// Starts an emperor on the harness's dir source with `args` first and
    /// `env` added to its environment.
    pub fn start(h: &Harness, args: &[&str], env: &[(&str, &str)]) -> Self {
        let source = h.dir_source();
        let mut all: Vec<&str> = args.to_vec();
        all.push(&source);
        let mut cmd = h.command(&all);
        cmd.envs(env.iter().copied());
        Run(cmd.spawn().expect("spawn emperor"))
    }

    /// The emperor's pid.
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// `kill -9` of the emperor, waiting until it is gone.
    pub fn kill9(mut self) {
        kill(self.pid(), libc::SIGKILL);
        let _ = self.0.wait();
    }

    /// Waits for the emperor to exit on its own.
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_until(DEADLINE, "the emperor to exit", || self.0.try_wait().expect("try_wait"))
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the stub last received as `name`'s inline config.
pub fn received_config(h: &Harness, name: &str) -> Option<String> {
    fs::read_to_string(h.record.join(format!("{}.config", escape(name)))).ok()
}

/// Waits until the stub received `expected` as `name`'s inline config.
pub fn wait_config(h: &Harness, name: &str, expected: &str) {
    wait_until(DEADLINE, format!("{name} to receive config {expected:?}"), || {
        cond(received_config(h, name).as_deref() == Some(expected))
    });
}

/// How many times `name` received the control byte `byte`.
pub fn recvs(h: &Harness, name: &str, byte: u8) -> usize {
    h.events(name).iter().filter(|e| e.is_recv(byte)).count()
}

/// Waits until `name` received the control byte `byte` at least `n` times.
pub fn wait_recvs(h: &Harness, name: &str, byte: u8, n: usize) {
    wait_until(DEADLINE, format!("{name}: {n} × recv {byte}"), || cond(recvs(h, name, byte) >= n));
}

/// Waits until `name` has received `n` inline configs, the last one `text`.
pub fn wait_nth_config(h: &Harness, name: &str, n: usize, text: &str) {
    wait_until(DEADLINE, format!("{name}: config #{n} = {text:?}"), || {
        cond(h.events_of(name, "config").len() >= n && received_config(h, name).as_deref() == Some(text))
    });
}

/// After a database outage of the standard outage scenario: `new.ini`
/// (inserted meanwhile) starts, `gone.ini` (deleted meanwhile, pid `gone`)
/// stops, `keep.ini` (pid `keep`, updated meanwhile) gets `keep_config`
/// without a restart, and the outage and the recovery are logged once each.
pub fn assert_outage_recovered(h: &Harness, keep: i32, gone: i32, keep_config: &str, within: Duration) {
    wait_until(within, "new.ini to start after the outage", || h.starts("new.ini").first().cloned());
    wait_until(within, "gone.ini to stop", || cond(reaped(gone)));
    wait_config(h, "keep.ini", keep_config);
    assert!(alive(keep));
    assert_eq!(h.starts("keep.ini").len(), 1);
    let log = h.log_text();
    assert_eq!(log.matches("failed; running vassals are kept").count(), 1, "one warning per outage:\n{log}");
    assert_eq!(log.matches("source recovered").count(), 1, "one recovery line:\n{log}");
}
