//! `zmq://` sources fed by the real libzmq (Debian `python3-zmq` under
//! `/usr/bin/python3`), end to end: touch/destroy with inline configs and
//! config paths, the 5-part tyrant form, crash respawn, ipc endpoints and an
//! emperor restart. Hostile messages are checked at the source by the
//! conformance suite (`tests/conformance/zmq.rs`).

mod common;
#[path = "brokers/libzmq.rs"]
mod libzmq;

use common::*;
use libzmq::{spawn_sender, tcp_endpoint};
use std::path::PathBuf;

/// Sends `messages` and waits until the sender has delivered them.
fn send(h: &Harness, endpoint: &str, messages: &[Vec<&[u8]>]) {
    libzmq::send(&h.root, endpoint, messages, DEADLINE * 2);
}

/// Starts the emperor bound to `endpoint` and waits for the bind.
fn start(h: &mut Harness, endpoint: &str) {
    h.start(&["--stop-timeout", "5", &format!("zmq://{endpoint}")]);
    wait_until(DEADLINE, "the zmq socket to be bound", || cond(h.log_text().contains("zmq PULL socket bound")));
}

#[test]
fn touch_spawns_and_reloads_every_time_and_destroy_stops() {
    let mut h = Harness::new();
    let ep = tcp_endpoint();
    start(&mut h, &ep);
    let one = uwsgi_ini("# one");
    send(&h, &ep, &[vec![b"touch", b"app.ini", one.as_bytes()]]);
    let start = h.wait_start("app.ini");
    assert_eq!(start.argv(), "--ini emperor://app.ini");
    wait_nth_config(&h, "app.ini", 1, &one);

    let two = uwsgi_ini("# two");
    send(&h, &ep, &[vec![b"touch", b"app.ini", two.as_bytes()]]);
    wait_nth_config(&h, "app.ini", 2, &two);
    // The same config again, typically within the same second: it reloads
    // again (upstream ignores a second touch within one second).
    send(&h, &ep, &[vec![b"touch", b"app.ini", two.as_bytes()]]);
    wait_nth_config(&h, "app.ini", 3, &two);
    assert!(h.events("app.ini").iter().any(|e| e.is_recv(1)), "reload is byte 1 on the control channel");
    assert_eq!(h.starts("app.ini").len(), 1, "reloads happen in place");

    send(&h, &ep, &[vec![b"destroy", b"app.ini"]]);
    h.wait_reaped(start.pid, "app.ini after destroy");
}

#[test]
fn five_part_message_is_valid_and_uid_gid_are_reported_once() {
    let mut h = Harness::new();
    let ep = tcp_endpoint();
    start(&mut h, &ep);
    let cfg = uwsgi_ini("# tyrant form");
    send(
        &h,
        &ep,
        &[
            vec![b"touch", b"five.ini", cfg.as_bytes(), b"1000", b"1000"],
            vec![b"touch", b"next.ini", cfg.as_bytes(), b"1001", b"1001"],
        ],
    );
    // Upstream mis-frames a 5-part message and swallows the next one.
    h.wait_start("five.ini");
    h.wait_start("next.ini");
    wait_nth_config(&h, "five.ini", 1, &cfg);
    let log = h.log_text();
    assert_eq!(log.matches("only honoured in tyrant mode").count(), 1, "uid/gid reported once:\n{log}");
}

#[test]
fn touch_without_config_uses_the_absolute_path() {
    let mut h = Harness::new();
    let ep = tcp_endpoint();
    start(&mut h, &ep);
    let path = h.vassal("disk.ini");
    put(&path, &uwsgi_ini("# on disk"));
    let p = path.to_str().unwrap().as_bytes();
    send(&h, &ep, &[vec![b"touch", p]]);
    let start = h.wait_start("disk.ini");
    assert_eq!(start.argv(), format!("--ini {}", path.display()));
    // Touching an unchanged file reloads too.
    send(&h, &ep, &[vec![b"touch", p]]);
    h.wait_event("disk.ini", "reload (recv 1)", |e| e.is_recv(1));
    send(&h, &ep, &[vec![b"destroy", p]]);
    h.wait_reaped(start.pid, "disk.ini after destroy by path");
}

#[test]
fn crashed_vassal_is_respawned() {
    let mut h = Harness::new();
    let ep = tcp_endpoint();
    start(&mut h, &ep);
    let cfg = uwsgi_ini("# crash me");
    send(&h, &ep, &[vec![b"touch", b"crash.ini", cfg.as_bytes()]]);
    let first = h.wait_start("crash.ini");
    wait_nth_config(&h, "crash.ini", 1, &cfg);
    kill(first.pid, libc::SIGKILL);
    let starts = h.wait_starts("crash.ini", 2);
    assert_ne!(starts[1].pid, first.pid);
    wait_nth_config(&h, "crash.ini", 2, &cfg);
}

#[test]
fn ipc_endpoint() {
    let mut h = Harness::new();
    let sock: PathBuf = h.root.join("emperor.sock");
    let ep = format!("ipc://{}", sock.display());
    start(&mut h, &ep);
    let cfg = uwsgi_ini("# over ipc");
    send(&h, &ep, &[vec![b"touch", b"ipc.ini", cfg.as_bytes()]]);
    h.wait_start("ipc.ini");
    wait_nth_config(&h, "ipc.ini", 1, &cfg);
}

/// Needs the lead's persistence of message sources (desired set restored at
/// start, running vassals adopted).
#[test]
fn emperor_restart_keeps_vassals_and_takes_new_commands() {
    let mut h = Harness::new();
    let ep = tcp_endpoint();
    start(&mut h, &ep);
    let cfg = uwsgi_ini("# kept");
    send(&h, &ep, &[vec![b"touch", b"kept.ini", cfg.as_bytes()]]);
    let kept = h.wait_start("kept.ini");
    wait_nth_config(&h, "kept.ini", 1, &cfg);
    // A barrier: the emperor's loop records and flushes its state after each
    // round, so once a later message has been acted on, kept.ini is on disk.
    wait_until(DEADLINE, "the spawn logged", || cond(h.log_text().contains("vassal spawned")));
    send(&h, &ep, &[vec![b"touch", b"barrier.ini", cfg.as_bytes()]]);
    wait_until(DEADLINE, "the barrier spawn logged", || cond(h.log_text().matches("vassal spawned").count() >= 2));

    h.signal_emperor(libc::SIGKILL);
    h.wait_emperor_exit(DEADLINE);
    // libzmq queues while nobody listens and delivers once the emperor binds again.
    let mut sender = spawn_sender(&h.root, &ep, &[vec![b"touch", b"new.ini", cfg.as_bytes()]], 30_000);
    let _second = h.spawn(&["--stop-timeout", "5", &format!("zmq://{ep}")], &[]);
    h.wait_start("new.ini");
    let status = wait_until(DEADLINE, "the libzmq sender to finish", || sender.try_wait().unwrap());
    assert!(status.success());
    assert!(alive(kept.pid), "kept.ini survives the emperor restart");
    assert_eq!(h.starts("kept.ini").len(), 1, "kept.ini was adopted, not restarted");
}

#[test]
fn an_endpoint_that_cannot_be_bound_stops_the_emperor_with_its_name() {
    let mut h = Harness::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = format!("tcp://127.0.0.1:{}", taken.local_addr().unwrap().port());
    h.start(&[&format!("zmq://{ep}")]);
    let status = h.wait_emperor_exit(DEADLINE);
    assert!(!status.success(), "the emperor must fail: {status}");
    let log = h.log_text();
    assert!(log.contains("cannot bind") && log.contains(&ep), "the error names the endpoint:\n{log}");
}
