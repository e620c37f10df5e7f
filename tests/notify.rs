//! systemd integration: a datagram socket bound by the test stands in for
//! systemd's `NOTIFY_SOCKET`, and receives what the emperor reports.

mod common;

use common::*;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Instant;

/// The service manager's end: every datagram the emperor sent.
struct Manager(UnixDatagram);

impl Manager {
    /// The next datagram, or `None` once `deadline` has passed.
    fn next(&self, deadline: Instant) -> Option<String> {
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        self.0.set_read_timeout(Some(left)).expect("read timeout");
        let mut buf = [0u8; 4096];
        let n = self.0.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Reads datagrams until one satisfies `pred`, returns it.
    fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        while let Some(message) = self.next(deadline) {
            if pred(&message) {
                return message;
            }
            seen.push(message);
        }
        panic!("timed out waiting for {what}; received {seen:?}");
    }
}

/// Two vassals, one native, one run through the vassal binary.
fn two_vassals(h: &Harness) {
    put(&h.vassal("app.ini"), &format!("[vassal]\nexec = {STUB} native notify\n"));
    put(&h.vassal("web.ini"), "[uwsgi]\nsocket = :0\n");
}

const RUNNING: &str = "STATUS=2 vassals: 2 running, 0 crashed (backing off), 0 held, 0 stopped";

/// Waits for `READY=1` with the status of both vassals spawned, then for
/// the status with both ready (the uWSGI-style one is `starting` until its
/// byte 1 is read, which may be after the round that sent `READY=1`).
fn wait_ready_and_running(manager: &Manager) {
    let ready = manager.wait("READY=1", |m| m.lines().any(|l| l == "READY=1"));
    assert!(ready.lines().any(|l| l.starts_with("STATUS=2 vassals: ")), "READY=1 comes with both vassals: {ready:?}");
    if !ready.lines().any(|l| l == RUNNING) {
        manager.wait("both vassals running", |m| m.lines().any(|l| l == RUNNING));
    }
}

#[test]
fn ready_status_watchdog_and_stopping_reach_the_service_manager() {
    let mut h = Harness::new();
    two_vassals(&h);
    let path = h.root.join("notify.sock");
    let manager = Manager(UnixDatagram::bind(&path).expect("bind the notify socket"));
    // `exec` keeps the shell's pid: WATCHDOG_PID names the emperor.
    let env = format!(
        "export NOTIFY_SOCKET={} WATCHDOG_USEC=200000 WATCHDOG_PID=$$ LISTEN_FDS=1 LISTEN_PID=$$ LISTEN_FDNAMES=web",
        path.display()
    );
    h.start_after(&env, &[&h.dir_source()]);

    wait_ready_and_running(&manager);
    for n in 0..3 {
        manager.wait(&format!("WATCHDOG=1 #{n}"), |m| m == "WATCHDOG=1");
    }
    assert!(h.log_text().contains("2 vassals: 2 running"), "the summary line is logged");

    let native = h.wait_start("app.ini");
    let environ = environ(native.pid);
    let ours = format!("NOTIFY_SOCKET={}", path.display());
    let leaked: Vec<&String> =
        environ.iter().filter(|e| **e == ours || ["WATCHDOG_", "LISTEN_"].iter().any(|p| e.starts_with(p))).collect();
    assert!(leaked.is_empty(), "the native vassal inherits {leaked:?}");
    let socket = environ.iter().find_map(|e| e.strip_prefix("NOTIFY_SOCKET="));
    assert!(socket.is_some_and(|s| s.starts_with("@emperor-notify-")), "the vassal's own socket: {socket:?}");
    assert!(environ.iter().any(|e| e.starts_with("STUB_RECORD=")), "the environment was read");

    h.signal_emperor(libc::SIGTERM);
    manager.wait("STOPPING=1", |m| m == "STOPPING=1");
    assert!(h.wait_emperor_exit(DEADLINE).success());
}

#[test]
fn an_abstract_notify_socket_is_reached() {
    let mut h = Harness::new();
    two_vassals(&h);
    let name = format!("emperor-test-notify-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
    let manager = Manager(UnixDatagram::bind_addr(&addr).expect("bind the abstract socket"));
    h.start_after(&format!("export NOTIFY_SOCKET=@{name}"), &[&h.dir_source()]);
    wait_ready_and_running(&manager);
}

#[test]
fn no_watchdog_ping_for_another_process() {
    let mut h = Harness::new();
    let path = h.root.join("notify.sock");
    let manager = Manager(UnixDatagram::bind(&path).expect("bind the notify socket"));
    let env = format!("export NOTIFY_SOCKET={} WATCHDOG_USEC=20000 WATCHDOG_PID=1", path.display());
    h.start_after(&env, &[&h.dir_source()]);
    manager.wait("READY=1", |m| m.lines().any(|l| l == "READY=1"));
    h.signal_emperor(libc::SIGTERM);
    // Everything up to STOPPING=1, in order: no ping in between.
    let deadline = Instant::now() + DEADLINE;
    while let Some(message) = manager.next(deadline) {
        assert_ne!(message, "WATCHDOG=1", "WATCHDOG_PID names another process");
        if message == "STOPPING=1" {
            return;
        }
    }
    panic!("no STOPPING=1");
}
