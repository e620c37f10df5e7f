//! On-demand vassals and held sockets against the real binary: no process
//! until the first connection (TCP and unix), the first request answered by
//! the vassal, idle (byte 22) and exit 0 back to waiting, a connection made
//! while the emperor is down, and `socket =` keys that keep every
//! connection across a vassal restart. The address comes from a source
//! (a `zmq://` message's 6th part) or from the config files' flags.

mod common;
#[path = "brokers/libzmq.rs"]
mod libzmq;

use common::*;
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// A TCP port free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `emperor ctl ARGS` against the control socket of `state`.
fn ctl(state: &Path, args: &[&str]) -> Output {
    let socket = state.join("control.sock");
    Command::new(EMPEROR).arg("ctl").arg("--control-socket").arg(socket).args(args).output().expect("run emperor ctl")
}

/// `emperor ctl list -o json` against `state`'s socket, once it answers.
fn list(state: &Path) -> Vec<Value> {
    wait_until(DEADLINE, "ctl list to answer", || {
        let out = ctl(state, &["list", "-o", "json"]);
        out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("JSON array"))
    })
}

/// Starts `h`'s emperor with `name` (a config) on demand on a unix socket
/// in `<root>/sockets`, and waits until it waits; returns the socket path.
fn start_on_unix_socket(h: &mut Harness, name: &str, config: &str) -> std::path::PathBuf {
    let sockets = h.root.join("sockets");
    std::fs::create_dir_all(&sockets).unwrap();
    put(&h.vassal(name), config);
    h.start_dir(&["--on-demand-directory", sockets.to_str().unwrap()]);
    wait_state(h, name, "waiting");
    sockets.join(format!("{}.socket", name.rsplit_once('.').unwrap().0))
}

/// Waits until `name` shows in `state` in ctl list; returns its view.
fn wait_state(h: &Harness, name: &str, state: &str) -> Value {
    wait_until(DEADLINE, format!("{name} to be {state}"), || {
        list(&h.state).into_iter().find(|v| v["name"] == name && v["state"] == state)
    })
}

/// Reads the whole answer of a connection (the stub closes it after one line).
fn answer(mut stream: impl Read) -> String {
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read the answer");
    text
}

/// Connects to `127.0.0.1:port` and reads the answer, with a deadline.
fn ask_tcp(port: u16) -> String {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    answer(stream)
}

/// The pid in a `hello pid=<pid> gen=<gen>` answer.
fn pid_of(answer: &str) -> i32 {
    let pid = answer.strip_prefix("hello pid=").and_then(|r| r.split(' ').next());
    pid.and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("not a stub answer: {answer:?}"))
}

fn native_serving(args: &str) -> String {
    format!("[vassal]\nexec = {STUB} native --serve {args}\n")
}

#[test]
fn a_tcp_vassal_starts_at_its_first_connection_and_waits_again_after_exit_0() {
    let mut h = Harness::new();
    let port = free_port();
    put(&h.vassal("app.ini"), &native_serving("--serve-then-exit 1"));
    put(&h.vassal("app.ini.socket"), &format!("127.0.0.1:{port}\n"));
    h.start_dir(&["--on-demand-extension", ".socket"]);
    let waiting = wait_state(&h, "app.ini", "waiting");
    assert_eq!(waiting["pid"], Value::Null);
    assert!(waiting["reason"].as_str().unwrap().contains(&format!("127.0.0.1:{port}")), "{waiting}");
    assert!(h.starts("app.ini").is_empty(), "no process before a connection");

    let first = pid_of(&ask_tcp(port));
    let start = h.wait_start("app.ini");
    assert_eq!(start.pid, first, "the vassal answered the connection that started it");
    let listen = h.wait_event("app.ini", "listen record", |e| e.kind == "listen");
    assert_eq!(listen.details, "fds=1 pid=ok names=app", "LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES");

    h.wait_reaped(first, "the vassal that exited 0");
    wait_state(&h, "app.ini", "waiting");
    let second = pid_of(&ask_tcp(port));
    assert_ne!(second, first, "a new process for the next connection");
}

#[test]
fn a_uwsgi_vassal_on_a_unix_socket_gets_fd_0_and_idles_on_byte_22() {
    let mut h = Harness::new();
    let path = start_on_unix_socket(&mut h, "web.ini", &uwsgi_ini("stub-serve = 1\nstub-idle-after = 1"));
    assert!(h.starts("web.ini").is_empty(), "no process before a connection");

    let ask = || {
        let stream = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        pid_of(&answer(stream))
    };
    let first = ask();
    assert_eq!(h.wait_start("web.ini").pid, first);
    assert_eq!(h.wait_event("web.ini", "listen record", |e| e.kind == "listen").details, "fds=1");
    h.wait_event("web.ini", "the stop byte after idle", |e| e.pid == first && e.is_recv(0));
    h.wait_reaped(first, "the idle vassal");
    let view = wait_state(&h, "web.ini", "waiting");
    assert_eq!(view["pid"], Value::Null);

    let second = ask();
    assert_ne!(second, first);
    assert_eq!(h.wait_starts("web.ini", 2)[1].pid, second);
}

#[test]
fn a_connection_made_while_the_emperor_is_down_is_served() {
    let h = Harness::new();
    let port = free_port();
    put(&h.vassal("app.ini"), &native_serving(""));
    put(&h.vassal("app.ini.socket"), &format!("127.0.0.1:{port}\n"));
    let args = ["--on-demand-extension", ".socket"];
    let first = h.spawn_dir(&args, &[]);
    wait_state(&h, "app.ini", "waiting");
    first.kill9();

    // The fd holder keeps the socket listening: the connection waits in its backlog.
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect while the emperor is down");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    assert!(h.starts("app.ini").is_empty());
    let _second = h.spawn_dir(&args, &[]);
    let pid = pid_of(&answer(stream));
    assert_eq!(h.wait_start("app.ini").pid, pid);
}

#[test]
fn held_sockets_drop_no_connection_across_a_vassal_restart() {
    let mut h = Harness::new();
    let port = free_port();
    put(&h.vassal("app.ini"), &format!("{}socket = 127.0.0.1:{port}\n", native_serving("")));
    h.start_dir(&[]);
    let first = h.wait_start("app.ini").pid;
    assert_eq!(h.wait_event("app.ini", "listen record", |e| e.kind == "listen").details, "fds=1 pid=ok names=app");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                answers.push(ask_tcp(port));
            }
            answers
        })
    };
    let out = ctl(&h.state, &["restart", "app.ini"]);
    assert!(out.status.success(), "ctl restart: {}", String::from_utf8_lossy(&out.stderr));
    let second = h.wait_starts("app.ini", 2)[1].pid;
    // Keep asking until the new process has answered some.
    wait_until(DEADLINE, "the new process to answer", || {
        let text = std::fs::read_to_string(h.events_path("app.ini")).unwrap_or_default();
        cond(text.lines().any(|l| l.starts_with(&format!("served pid={second} "))))
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answers = client.join().expect("every connection answered");
    let pids: Vec<i32> = answers.iter().map(|a| pid_of(a)).collect();
    assert!(pids.contains(&first) && pids.contains(&second), "answered by both processes: {pids:?}");
    assert!(pids.iter().all(|p| [first, second].contains(p)));
}

#[test]
fn a_bad_address_holds_the_vassal_with_a_reason_naming_it() {
    let mut h = Harness::new();
    put(&h.vassal("app.ini"), &native_serving(""));
    put(&h.vassal("app.ini.socket"), "not-an-address\n");
    h.start_dir(&["--on-demand-extension", ".socket"]);
    let held = wait_state(&h, "app.ini", "held");
    assert!(held["reason"].as_str().unwrap().contains("not-an-address"), "{held}");
}

#[test]
fn a_new_address_restarts_the_vassal_on_it_and_closes_the_old_one() {
    let mut h = Harness::new();
    let (old, new) = (free_port(), free_port());
    put(&h.vassal("app.ini"), &native_serving(""));
    put(&h.vassal("app.ini.socket"), &format!("127.0.0.1:{old}\n"));
    h.start_dir(&["--on-demand-extension", ".socket"]);
    wait_state(&h, "app.ini", "waiting");
    let first = pid_of(&ask_tcp(old));
    // The address file is read at each start and reload: a change of the config reloads.
    put(&h.vassal("app.ini.socket"), &format!("127.0.0.1:{new}\n"));
    put(&h.vassal("app.ini"), &format!("{}# moved\n", native_serving("")));
    wait_until(DEADLINE, "the old socket to close", || std::net::TcpStream::connect(("127.0.0.1", old)).err());
    h.wait_reaped(first, "the vassal on the old address");
    wait_state(&h, "app.ini", "waiting");
    let second = pid_of(&ask_tcp(new));
    assert_ne!(second, first);
}

#[test]
fn ctl_counts_waiting_vassals_in_the_footer() {
    let mut h = Harness::new();
    let path = start_on_unix_socket(&mut h, "a.ini", &native_serving(""));
    let out = ctl(&h.state, &["list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("a.ini") && l.contains("waiting")), "{text}");
    assert!(text.lines().last().unwrap().ends_with(", 1 waiting"), "{text}");
    let stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    assert!(answer(stream).starts_with("hello pid="));
    wait_state(&h, "a.ini", "running");
}

/// GET / on `port`: the body, once the server answered.
fn http_get(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    std::io::Write::write_all(&mut stream, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let text = answer(stream);
    text.split("\r\n\r\n").nth(1).unwrap_or_else(|| panic!("not an HTTP answer: {text:?}")).to_owned()
}

#[test]
fn the_real_uwsgi_serves_http_on_fd_0_and_goes_idle() {
    const UWSGI: &str = "/usr/bin/uwsgi";
    assert!(Path::new(UWSGI).exists(), "{UWSGI} is missing: deploy/install-test-deps.sh installs uwsgi-core");
    let h = Harness::new();
    let port = free_port();
    let app = "import os\n\ndef application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [('worker %d' % os.getpid()).encode()]\n";
    put(&h.vassal("app.py"), app);
    // No socket option: uWSGI serves the inherited fd 0, in the protocol named here.
    let config = "[uwsgi]\nplugins = python3\nprotocol = http\nwsgi-file = app.py\nmaster = true\nprocesses = 1\nidle = 2\ndie-on-idle = true\n";
    put(&h.vassal("app.ini"), config);
    put(&h.vassal("app.ini.socket"), &format!("127.0.0.1:{port}\n"));
    let log = std::fs::File::options().create(true).append(true).open(&h.log).unwrap();
    let mut emperor = Command::new(EMPEROR)
        .args(["--vassal-binary", UWSGI, "--stop-timeout", "10", "--on-demand-extension", ".socket", "--state-dir"])
        .arg(&h.state)
        .arg(h.dir_source())
        .env("STUB_RECORD", &h.record)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_state(&h, "app.ini", "waiting");
    let body = http_get(port);
    assert!(body.starts_with("worker "), "{body:?}");
    let running = wait_state(&h, "app.ini", "running");
    // Idle for a second, uWSGI sends byte 22: stopped, it waits again.
    let waiting = wait_until(Duration::from_secs(30), "uWSGI to go idle", || {
        list(&h.state).into_iter().find(|v| v["name"] == "app.ini" && v["state"] == "waiting")
    });
    assert_eq!(waiting["pid"], Value::Null);
    h.wait_reaped(running["pid"].as_i64().unwrap() as i32, "the idle uWSGI master");
    let again = http_get(port);
    assert!(again.starts_with("worker ") && again != body, "a new worker: {again:?} after {body:?}");
    let _ = emperor.kill();
    let _ = emperor.wait();
}

#[test]
fn a_vassal_run_as_another_user_gets_its_sockets_too() {
    let mut h = Harness::new();
    let port = free_port();
    let config = format!("{}uid = 65534\ngid = 65534\nchdir = /\nsocket = 127.0.0.1:{port}\n", native_serving(""));
    put(&h.vassal("app.ini"), &config);
    h.start_dir(&[]);
    let running = wait_state(&h, "app.ini", "running");
    let pid = running["pid"].as_i64().unwrap() as i32;
    // It cannot write the stub's records as nobody; its answer says it served fd 3.
    assert_eq!(pid_of(&ask_tcp(port)), pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid.split_whitespace().skip(1).all(|id| id == "65534"), "{uid}");
    assert_eq!(env_of(pid, "LISTEN_PID"), Some(pid.to_string()));
    assert_eq!(env_of(pid, "LISTEN_FDS").as_deref(), Some("1"));
}

#[test]
fn the_socket_part_of_a_zmq_message_makes_the_vassal_on_demand() {
    let mut h = Harness::new();
    let (endpoint, port) = (libzmq::tcp_endpoint(), free_port());
    h.start(&[&format!("zmq://{endpoint}")]);
    wait_until(DEADLINE, "the zmq socket to be bound", || cond(h.log_text().contains("zmq PULL socket bound")));
    let config = uwsgi_ini("stub-serve = 1");
    let address = format!("127.0.0.1:{port}");
    let message: Vec<&[u8]> = vec![b"touch", b"app.ini", config.as_bytes(), b"", b"", address.as_bytes()];
    libzmq::send(&h.root, &endpoint, &[message], DEADLINE * 2);
    let waiting = wait_state(&h, "app.ini", "waiting");
    assert!(waiting["reason"].as_str().unwrap().contains(&address), "{waiting}");
    assert!(h.starts("app.ini").is_empty());
    let pid = pid_of(&ask_tcp(port));
    assert_eq!(h.wait_start("app.ini").pid, pid);
}

#[test]
fn held_sockets_are_taken_back_after_an_emperor_kill9() {
    let h = Harness::new();
    let port = free_port();
    put(&h.vassal("app.ini"), &format!("{}socket = 127.0.0.1:{port}\n", native_serving("")));
    let first_emperor = h.spawn_dir(&[], &[]);
    let first = h.wait_start("app.ini").pid;
    first_emperor.kill9();
    assert_eq!(pid_of(&ask_tcp(port)), first, "the vassal serves while the emperor is down");

    let _second_emperor = h.spawn_dir(&[], &[]);
    let adopted = wait_state(&h, "app.ini", "running");
    assert_eq!(adopted["pid"], first, "re-adopted");
    // A restart reuses the socket the fd holder kept (binding it again would fail: it listens).
    let out = ctl(&h.state, &["restart", "app.ini"]);
    assert!(out.status.success(), "ctl restart: {}", String::from_utf8_lossy(&out.stderr));
    let second = h.wait_starts("app.ini", 2)[1].pid;
    assert_eq!(pid_of(&ask_tcp(port)), second);
    assert!(h.complaints_about("app.ini").is_empty(), "{:?}", h.complaints_about("app.ini"));
}
