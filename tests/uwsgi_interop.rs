//! The real uWSGI (Debian's uwsgi-core + uwsgi-plugin-python3) as a vassal:
//! it serves HTTP, a touch is a graceful reload (same master pid, new
//! workers), and deleting its config stops it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const UWSGI: &str = "/usr/bin/uwsgi";
const PLUGIN: &str = "/usr/lib/uwsgi/plugins/python3_plugin.so";

/// The emperor under test and the vassal it runs; both are killed when the
/// test ends, whatever its outcome.
struct Emperor(Child, String, PathBuf);

impl Drop for Emperor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            for log in [self.2.join("emperor.log"), self.2.join(format!("state/logs/{}.log", self.1))] {
                eprintln!("--- {}:\n{}", log.display(), std::fs::read_to_string(&log).unwrap_or_default());
            }
        }
        for pid in master_pids(&self.1) {
            // SAFETY: plain syscall; the group is the vassal's own session.
            unsafe { libc::killpg(pid, libc::SIGKILL) };
        }
    }
}

fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
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
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
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

#[test]
fn real_uwsgi_serves_reloads_gracefully_and_stops() {
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
    let log = std::fs::File::create(tmp.path().join("emperor.log")).unwrap();
    let _emperor = Emperor(
        Command::new(env!("CARGO_BIN_EXE_emperor"))
            .args(["--vassal-binary", UWSGI, "--stop-timeout", "10", "--state-dir"])
            .arg(tmp.path().join("state"))
            .arg(&vassals)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
        name.clone(),
        tmp.path().to_owned(),
    );

    let first = wait_until("uWSGI to answer HTTP", Duration::from_secs(20), || http_get(port));
    assert!(first.starts_with("worker "), "unexpected body {first:?}");
    let masters = master_pids(&name);
    assert_eq!(masters.len(), 1, "one uWSGI master expected, found {masters:?}");
    let master = masters[0];

    // touch → byte 1 → graceful reload: the master re-executes itself (same
    // pid) and starts new workers.
    let f = std::fs::File::options().write(true).open(&config).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(1)).unwrap();
    let second = wait_until("a new worker after the reload", Duration::from_secs(30), || {
        http_get(port).filter(|body| body.starts_with("worker ") && *body != first)
    });
    assert_ne!(first, second);
    assert_eq!(master_pids(&name), vec![master], "the master pid must survive a graceful reload");

    // delete → byte 0 → the master and its workers exit and are reaped.
    std::fs::remove_file(&config).unwrap();
    wait_until("the uWSGI master to be gone", Duration::from_secs(20), || {
        (!Path::new(&format!("/proc/{master}")).exists()).then_some(())
    });
    wait_until("the HTTP port to close", Duration::from_secs(10), || http_get(port).is_none().then_some(()));
    let log = std::fs::read_to_string(tmp.path().join(format!("state/logs/{name}.log"))).unwrap();
    assert!(log.contains("uWSGI"), "the vassal's output goes to its log file:\n{log}");
}
