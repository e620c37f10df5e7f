//! Signals sent to the emperor itself, and its command-line failures.

mod common;

use common::*;

/// Starts an emperor with `names` as uWSGI-style vassals and returns their pids.
fn with_vassals(h: &mut Harness, names: &[&str]) -> Vec<i32> {
    for name in names {
        put(&h.vassal(name), &uwsgi_ini(""));
    }
    h.start_dir(&["--stop-timeout", "5"]);
    names.iter().map(|name| h.wait_start(name).pid).collect()
}

/// Sends `sig` to the emperor and checks that every vassal was told to stop,
/// exited, was reaped, and that the emperor then exited 0.
fn graceful_shutdown(sig: i32, names: &[&str]) {
    let mut h = Harness::new();
    let pids = with_vassals(&mut h, names);
    h.signal_emperor(sig);
    let status = h.wait_emperor_exit(DEADLINE);
    assert!(status.success(), "emperor exited with {status} after signal {sig}, expected 0");
    for (name, pid) in names.iter().zip(pids) {
        let events = h.events(name);
        assert!(
            events.iter().any(|e| e.pid == pid && e.is_recv(0)),
            "{name} should have received the stop byte: {events:?}"
        );
        assert!(
            events.iter().any(|e| e.pid == pid && e.kind == "exit" && e.details == "code=0"),
            "{name} should have exited cleanly: {events:?}"
        );
        assert!(reaped(pid), "{name} (pid {pid}) must be reaped before the emperor exits");
    }
}

#[test]
fn sigterm_stops_all_vassals_and_exits_zero() {
    graceful_shutdown(libc::SIGTERM, &["a.ini", "b.ini", "c.ini"]);
}

#[test]
fn sigint_stops_vassals_and_exits_zero() {
    graceful_shutdown(libc::SIGINT, &["a.ini"]);
}

#[test]
fn sigquit_stops_vassals_and_exits_zero() {
    graceful_shutdown(libc::SIGQUIT, &["a.ini"]);
}

#[test]
fn sighup_reloads_every_vassal() {
    let mut h = Harness::new();
    let names = ["a.ini", "b.ini", "c.ini"];
    let pids = with_vassals(&mut h, &names);
    h.signal_emperor(libc::SIGHUP);
    for (name, pid) in names.iter().zip(pids) {
        let recv = h.wait_event(name, "recv 1 after SIGHUP to the emperor", |e| e.is_recv(1));
        assert_eq!(recv.pid, pid);
        assert!(alive(pid), "{name} must keep running after a graceful reload");
        assert_eq!(h.starts(name).len(), 1);
    }
    assert!(h.emperor_running(), "SIGHUP must not stop the emperor");
}

#[test]
fn unknown_scheme_fails_at_once_naming_the_source() {
    let mut h = Harness::new();
    h.start(&["ftp://x"]);
    let status = h.wait_emperor_exit(DEADLINE);
    assert!(!status.success(), "emperor should fail on an unknown source scheme, got {status}");
    let log = h.log_text();
    assert!(log.contains("ftp://x"), "the error should name the source; stderr was:\n{log}");
}
