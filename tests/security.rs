//! Local security, end to end, with the emperor started under umask 000:
//! a private state dir, an fd holder that only its own uid may use,
//! passwords kept out of every file, log and vassal, and `--native`.
//! The tests run as root and act as uid 65534 for the refused peer.

mod common;
#[path = "brokers/libzmq.rs"]
mod libzmq;
mod servers;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The uid (and gid) of the refused peer.
const NOBODY: u32 = 65534;

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).expect("stat").permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Every path under `dir` (recursively), `dir` excluded.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if fs::symlink_metadata(&path).expect("stat").is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// The `Umask:` of a process, from `/proc/PID/status`.
fn umask_of(pid: i32) -> u32 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let value = status.lines().find_map(|l| l.strip_prefix("Umask:")).expect("Umask line");
    u32::from_str_radix(value.trim(), 8).expect("octal umask")
}

/// Starts the emperor of `h` on its dir source with umask 000, as a
/// container might, `extra` options first.
fn start_open(h: &mut Harness, extra: &[&str]) {
    let source = h.dir_source();
    h.start_after("umask 000", &[extra, &[source.as_str()]].concat());
}

/// The pid of the fd holder of `h`'s state dir.
fn fd_holder_pid(h: &Harness) -> i32 {
    let socket = h.state.join("fd-holder.sock").display().to_string();
    wait_until(DEADLINE, "the fd holder", || {
        all_pids().into_iter().find(|pid| cmdline(*pid).iter().any(|a| a == &socket))
    })
}

#[test]
fn the_state_dir_is_private_and_vassals_keep_the_starting_umask() {
    let mut h = Harness::new();
    chmod(&h.state, 0o755);
    put(&h.vassal("app.ini"), &uwsgi_ini("# private"));
    start_open(&mut h, &["--stop-timeout", "5"]);
    let vassal = h.wait_start("app.ini").pid;
    fd_holder_pid(&h);
    wait_until(DEADLINE, "the fd holder's socket", || cond(h.state.join("fd-holder.sock").exists()));

    assert_eq!(mode(&h.state), 0o700, "state dir");
    assert!(h.log_text().contains("state dir made private"), "tightening is logged");
    let logs = h.state.join("logs");
    assert_eq!(mode(&logs), 0o750, "log dir");
    assert_eq!(mode(&logs.join("app.ini.log")), 0o640, "vassal log");
    for path in walk(&h.state) {
        assert_eq!(mode(&path) & 0o007, 0, "{} is open to others ({:o})", path.display(), mode(&path));
        if !path.starts_with(&logs) {
            assert_eq!(mode(&path) & 0o077, 0, "{} is not private ({:o})", path.display(), mode(&path));
        }
    }
    assert_eq!(umask_of(h.emperor_pid()), 0o077, "the emperor's own umask");
    assert_eq!(umask_of(vassal), 0, "a vassal gets the umask the emperor was started with");
}

#[test]
fn the_vassal_umask_can_be_set() {
    let mut h = Harness::new();
    put(&h.vassal("app.ini"), &uwsgi_ini("# umask"));
    put(&h.vassal("web.ini"), &format!("[vassal]\nexec = {STUB} native web\n"));
    start_open(&mut h, &["--vassal-umask", "027"]);
    assert_eq!(umask_of(h.wait_start("app.ini").pid), 0o027, "uWSGI vassal (posix_spawn)");
    assert_eq!(umask_of(h.wait_start("web.ini").pid), 0o027, "native vassal");
}

/// Connects to the fd holder at `socket` as `uid`, asks for its fds, and
/// says what happened: `refused` (EOF or reset), `answered`, or `no answer`.
fn try_fd_holder(socket: &Path, uid: u32) -> String {
    const CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
    s.send(b"LIST")
    data = s.recv(4096)
    print("refused" if data == b"" else "answered")
except socket.timeout:
    print("no answer")
except (BrokenPipeError, ConnectionResetError):
    print("refused")
except OSError as e:
    print("cannot connect", e)
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", CLIENT])
        .arg(socket)
        .uid(uid)
        .gid(uid)
        .output()
        .expect("run python3");
    String::from_utf8_lossy(&out.stdout).trim().to_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn another_uid_cannot_use_the_fd_holder_even_through_an_open_socket() {
    let mut h = Harness::new();
    put(&h.vassal("app.ini"), &uwsgi_ini("# held"));
    start_open(&mut h, &["--stop-timeout", "5"]);
    let vassal = h.wait_start("app.ini").pid;
    let socket = h.state.join("fd-holder.sock");
    wait_until(DEADLINE, "the fd holder's socket", || cond(socket.exists()));
    // Everything on the way open to everyone: only the peer check stands.
    for dir in [&h.root, &h.state] {
        chmod(dir, 0o711);
    }
    chmod(&socket, 0o777);

    for attempt in 1..=2 {
        assert_eq!(try_fd_holder(&socket, NOBODY), "refused", "attempt {attempt} as uid {NOBODY}");
    }
    let holder_log = h.state.join("logs/fd-holder.log");
    let refusals = || {
        let text = fs::read_to_string(&holder_log).unwrap_or_default();
        text.lines().filter(|l| l.contains("connection refused") && l.contains("uid=65534")).count()
    };
    wait_until(DEADLINE, "the refusal in the fd holder's log", || cond(refusals() >= 1));
    assert_eq!(refusals(), 1, "a refused uid is logged once");

    // The emperor's own connection is untouched: its vassal is still driven.
    put(&h.vassal("app.ini"), &uwsgi_ini("# held, reloaded"));
    h.wait_event("app.ini", "recv 1 (reload)", |e| e.is_recv(1));
    assert!(alive(vassal));
}

const PG_SECRET: &str = "PgUriSecret1";
const ENV_PG_SECRET: &str = "PgEnvSecret2";
const ENV_LDAP_SECRET: &str = "LdapEnvSecret3";
const OTHER_SECRETS: [&str; 3] = ["AmqpUriSecret4", "ZooUriSecret5", "MongoUriSecret6"];

/// Fails if any of `secrets` appears in any file under `dir`.
fn assert_no_secret_in_files(dir: &Path, secrets: &[&str]) {
    for path in walk(dir).into_iter().filter(|p| p.is_file()) {
        let bytes = fs::read(&path).unwrap_or_default();
        for secret in secrets {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{secret} found in {}", path.display());
        }
    }
}

/// Fails if any of `secrets` appears in the cmdline or environment of `pid`.
fn assert_no_secret_in_process(pid: i32, secrets: &[&str]) {
    let text = [cmdline(pid), environ(pid)].concat().join("\n");
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} found in /proc/{pid}/cmdline or environ");
    }
}

#[test]
fn passwords_reach_no_file_log_or_vassal() {
    let pg = servers::Postgres::shared();
    let mut sql = pg.create_db("security_secrets");
    sql.exec("INSERT INTO vassals (name, config) VALUES ('app.ini', '[uwsgi]\nmaster = true\n')");
    let mut h = Harness::new();
    let pg_uri =
        format!("pg://{} password={PG_SECRET};SELECT name, config, ts FROM vassals", pg.conninfo("security_secrets"));
    let amqp = format!("amqp://guest:{}@127.0.0.1:1", OTHER_SECRETS[0]);
    let zoo = format!("zoo://digest:{}@127.0.0.1:1/emperor", OTHER_SECRETS[1]);
    let mongo = format!("mongodb://app:{}@127.0.0.1:1/?serverSelectionTimeoutMS=300#fleet.vassals", OTHER_SECRETS[2]);
    let shell = format!("umask 000; export PGPASSWORD={ENV_PG_SECRET} EMPEROR_LDAP_PASSWORD={ENV_LDAP_SECRET}");
    h.start_after(&shell, &["--stop-timeout", "5", &pg_uri, &amqp, &zoo, &mongo]);
    let vassal = h.wait_start("app.ini").pid;
    // The unreachable sources have failed (and logged it) at least once.
    for scheme in ["amqp://", "zoo://", "mongodb://"] {
        wait_until(Duration::from_secs(20), format!("a {scheme} failure in the log"), || {
            cond(h.log_text().lines().any(|l| l.contains(scheme) && (l.contains("WARN") || l.contains("ERROR"))))
        });
    }
    h.signal_emperor(libc::SIGHUP);
    h.wait_event("app.ini", "recv 1 (reload)", |e| e.is_recv(1));

    let mut secrets = vec![PG_SECRET, ENV_PG_SECRET, ENV_LDAP_SECRET];
    secrets.extend(OTHER_SECRETS);
    assert_no_secret_in_files(&h.state, &secrets);
    let log = h.log_text();
    for secret in &secrets {
        assert!(!log.contains(secret), "{secret} found in the emperor's log");
    }
    for pid in [vassal, fd_holder_pid(&h)] {
        assert_no_secret_in_process(pid, &secrets);
        assert_eq!(env_of(pid, "PGPASSWORD"), None, "PGPASSWORD reached pid {pid}");
        assert_eq!(env_of(pid, "EMPEROR_LDAP_PASSWORD"), None, "EMPEROR_LDAP_PASSWORD reached pid {pid}");
    }
    assert_eq!(env_of(vassal, "STUB_RECORD").as_deref(), Some(h.record.to_str().unwrap()), "the rest is inherited");
}

#[test]
fn files_only_refuses_native_configs_from_zmq_and_accepts_them_from_dir() {
    let mut h = Harness::new();
    let endpoint = libzmq::tcp_endpoint();
    put(&h.vassal("local.ini"), &format!("[vassal]\nexec = {STUB} native local\n"));
    let zmq = format!("zmq://{endpoint}");
    let dir = h.dir_source();
    h.start(&["--native", "files-only", &dir, &zmq]);
    assert_eq!(h.wait_start("local.ini").argv(), "native local");
    wait_until(DEADLINE, "the zmq socket to be bound", || cond(h.log_text().contains("zmq PULL socket bound")));

    let remote = format!("[vassal]\nexec = {STUB} native remote\n");
    libzmq::send(&h.root, &endpoint, &[vec![b"touch", b"remote.ini", remote.as_bytes()]], DEADLINE * 2);
    let warning = wait_until(DEADLINE, "the refusal", || {
        h.log_text().lines().find(|l| l.contains("remote.ini") && l.contains("refused")).map(str::to_owned)
    });
    assert!(warning.contains("WARN") && warning.contains(&zmq), "the warning names the source: {warning}");
    // A uWSGI config from the same source still runs, after the refused one.
    let uwsgi = uwsgi_ini("# from zmq");
    libzmq::send(&h.root, &endpoint, &[vec![b"touch", b"app.ini", uwsgi.as_bytes()]], DEADLINE * 2);
    h.wait_start("app.ini");
    assert!(h.starts("remote.ini").is_empty(), "the native config from zmq never ran");
}
