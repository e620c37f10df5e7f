//! The real uWSGI (Debian's uwsgi-core + uwsgi-plugin-python3) as a vassal:
//! it serves HTTP, a touch is a graceful reload (same master pid, new
//! workers), and deleting its config stops it.
#![allow(unsafe_code)] // raw calls of its own (the package denies them elsewhere)

mod common;

use common::wait_until;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const UWSGI: &str = "/usr/bin/uwsgi";
const PLUGIN: &str = "/usr/lib/uwsgi/plugins/python3_plugin.so";

/// A temp dir with the app, its config and a state dir; everything the
/// test started (emperors, the fd holder, the uWSGI master and workers) is
/// killed when it is dropped, and logs are printed if the test failed.
struct Setup {
    tmp: tempfile::TempDir,
    port: u16,
    config: PathBuf,
    name: String,
    emperor: Option<Child>,
    /// Options the emperor gets on top of the usual ones.
    extra: Vec<&'static str>,
}

impl Setup {
    fn new() -> Self {
        for (path, pkg) in [(UWSGI, "uwsgi-core"), (PLUGIN, "uwsgi-plugin-python3")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: install the Debian package {pkg} (deploy/install-test-deps.sh does)"
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let vassals = tmp.path().join("vassals");
        std::fs::create_dir(&vassals).unwrap();
        let port = free_port();
        let config = write_app(&vassals, port);
        let name = config.file_name().unwrap().to_str().unwrap().to_owned();
        Self { tmp, port, config, name, emperor: None, extra: Vec::new() }
    }

    fn start_emperor(&mut self) {
        let log = std::fs::File::options().create(true).append(true).open(self.tmp.path().join("emperor.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_emperor"))
            .args(["--vassal-binary", UWSGI, "--stop-timeout", "10", "--state-dir"])
            .arg(self.tmp.path().join("state"))
            .args(&self.extra)
            .arg(self.config.parent().unwrap())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.emperor = Some(child);
    }

    fn kill9_emperor(&mut self) {
        let mut child = self.emperor.take().expect("emperor running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn emperor_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("emperor.log")).unwrap_or_default()
    }

    fn vassal_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("state/logs/{}.log", self.name))).unwrap_or_default()
    }

    /// The vassal's logs, rotated ones included, oldest first.
    fn vassal_logs(&self) -> String {
        let log = self.tmp.path().join(format!("state/logs/{}.log", self.name));
        let rotated = (1..=50).rev().map(|n| std::path::PathBuf::from(format!("{}.{n}", log.display())));
        rotated.chain([log.clone()]).map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect()
    }

    fn get(&self) -> Option<String> {
        http_get(self.port)
    }

    fn touch(&self) {
        let f = std::fs::File::options().write(true).open(&self.config).unwrap();
        f.set_modified(std::time::SystemTime::now() + Duration::from_secs(1)).unwrap();
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(mut child) = self.emperor.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- emperor log:\n{}\n--- vassal log:\n{}", self.emperor_log(), self.vassal_log());
        }
        for pid in master_pids(&self.name) {
            // SAFETY: plain syscall; the group is the vassal's own session.
            unsafe { libc::killpg(pid, libc::SIGKILL) };
        }
        let holder = format!("{}", self.tmp.path().join("state/fd-holder.sock").display());
        for pid in pids() {
            if std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .any(|a| a == holder.as_bytes())
            {
                // SAFETY: plain syscall on a process this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn pids() -> Vec<i32> {
    std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET / on the port; the body, if the server answered.
fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split("\r\n\r\n").nth(1).map(str::to_owned)
}

/// Session leaders whose environment names this vassal: the uWSGI master.
fn master_pids(vassal: &str) -> Vec<i32> {
    let needle = format!("EMPEROR_VASSAL={vassal}:");
    pids()
        .into_iter()
        .filter(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let leads = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s[s.rfind(')')? + 2..].split_whitespace().nth(3)?.parse::<i32>().ok())
                == Some(*pid);
            leads && env.split(|b| *b == 0).any(|v| v.starts_with(needle.as_bytes()))
        })
        .collect()
}

fn write_app(dir: &Path, port: u16) -> PathBuf {
    std::fs::write(
        dir.join("app.py"),
        "import os\n\ndef application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [('worker %d' % os.getpid()).encode()]\n",
    )
    .unwrap();
    let config = dir.join(format!("app{port}.ini"));
    std::fs::write(
        &config,
        format!("[uwsgi]\nplugins = python3\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = app.py\nmaster = true\nprocesses = 1\n"),
    )
    .unwrap();
    config
}

/// A new worker (different body) after a graceful reload, with the same master.
fn reloads_gracefully(s: &Setup, master: i32) {
    let before = s.get().expect("serving before the reload");
    s.touch();
    let after = wait_until(Duration::from_secs(30), "a new worker after the reload", || {
        s.get().filter(|body| body.starts_with("worker ") && *body != before)
    });
    assert_ne!(before, after);
    assert_eq!(master_pids(&s.name), vec![master], "the master pid must survive a graceful reload");
}

#[test]
fn real_uwsgi_serves_reloads_gracefully_and_stops() {
    let mut s = Setup::new();
    s.start_emperor();
    let first = wait_until(Duration::from_secs(20), "uWSGI to answer HTTP", || s.get());
    assert!(first.starts_with("worker "), "unexpected body {first:?}");
    let masters = master_pids(&s.name);
    assert_eq!(masters.len(), 1, "one uWSGI master expected, found {masters:?}");
    let master = masters[0];

    // touch → byte 1 → graceful reload: the master re-executes itself (same
    // pid) and starts new workers.
    reloads_gracefully(&s, master);

    // delete → byte 0 → the master and its workers exit and are reaped.
    std::fs::remove_file(&s.config).unwrap();
    wait_until(Duration::from_secs(20), "the uWSGI master to be gone", || {
        (!Path::new(&format!("/proc/{master}")).exists()).then_some(())
    });
    wait_until(Duration::from_secs(10), "the HTTP port to close", || s.get().is_none().then_some(()));
    assert!(s.vassal_log().contains("uWSGI"), "the vassal's output goes to its log file");
}

#[test]
fn real_uwsgi_survives_an_emperor_kill9_and_is_readopted() {
    let mut s = Setup::new();
    s.start_emperor();
    wait_until(Duration::from_secs(20), "uWSGI to answer HTTP", || s.get());
    let master = master_pids(&s.name)[0];

    s.kill9_emperor();
    assert!(s.get().is_some(), "uWSGI keeps serving while the emperor is down");

    s.start_emperor();
    wait_until(Duration::from_secs(10), "the restarted emperor to re-adopt uWSGI", || {
        s.emperor_log().contains("vassal re-adopted").then_some(())
    });
    assert_eq!(master_pids(&s.name), vec![master], "same master after the restart");
    reloads_gracefully(&s, master);
    assert!(!s.vassal_log().contains("lost connection"), "uWSGI never lost its emperor channel");
}

#[test]
fn real_uwsgi_logs_through_a_rotated_pipe_across_an_emperor_kill9() {
    let mut s = Setup::new();
    s.extra = vec!["--log-max-size", "2K", "--log-keep", "50"];
    s.start_emperor();
    wait_until(Duration::from_secs(20), "uWSGI to answer HTTP", || s.get());
    let master = master_pids(&s.name)[0];
    // uWSGI logs one line per request, numbered: "[pid: …|app: 0|req: 7/7] … GET / …".
    let numbers = |s: &Setup| -> Vec<u32> {
        let logs = s.vassal_logs();
        logs.lines()
            .filter_map(|l| l.split_once("|req: ")?.1.split_once('/')?.1.split_once(']')?.0.parse().ok())
            .collect()
    };
    let complete = |s: &Setup, at_least: usize| {
        let seen = numbers(s);
        (seen.len() >= at_least && seen == (1..=seen.len() as u32).collect::<Vec<_>>()).then_some(())
    };
    let answered = (0..20).filter(|_| s.get().is_some()).count();
    wait_until(Duration::from_secs(10), "the requests in the log", || complete(&s, answered));

    s.kill9_emperor();
    let answered = answered + (0..20).filter(|_| s.get().is_some()).count();
    assert_eq!(answered, 40, "uWSGI serves while the emperor is down");
    s.start_emperor();
    wait_until(Duration::from_secs(10), "every request once, in order, in the logs", || complete(&s, answered));
    assert_eq!(master_pids(&s.name), vec![master], "same master after the restart");
    let log = s.tmp.path().join(format!("state/logs/{}.log", s.name));
    assert!(Path::new(&format!("{}.2", log.display())).exists(), "the log was rotated");
    assert!(s.vassal_logs().contains("uWSGI"), "the startup banner is there too");
}
