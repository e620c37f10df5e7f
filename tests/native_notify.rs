//! Readiness of native vassals through their `NOTIFY_SOCKET`: `READY=1`,
//! `STATUS=`, the `WATCHDOG=1` heartbeat, that no other process may speak
//! for a vassal, and that all of it survives an emperor crash.

mod common;

use common::*;
use serde_json::Value;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::Command;

/// What `emperor ctl ARGS` prints, against `h`'s emperor.
fn ctl(h: &Harness, args: &[&str]) -> Vec<u8> {
    let socket = h.state.join("control.sock");
    let out = Command::new(EMPEROR).args(["ctl", "--control-socket"]).arg(&socket).args(args).output();
    out.expect("run emperor ctl").stdout
}

/// `ctl status NAME -o json`: the vassal's object.
fn status(h: &Harness, name: &str) -> Option<Value> {
    let body: Value = serde_json::from_slice(&ctl(h, &["status", name, "-o", "json"])).ok()?;
    body.as_array()?.first().cloned()
}

/// Waits until `ctl status NAME` shows an object for which `pred` holds.
fn wait_status(h: &Harness, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_until(DEADLINE, format!("{name}: {what}"), || status(h, name).filter(&pred))
}

/// A native INI config running the stub with `args`.
fn native(args: &str, keys: &str) -> String {
    format!("[vassal]\nexec = {STUB} native {args}\n{keys}\n")
}

/// An emperor running one native vassal `name` (the stub with `args`,
/// `keys` added to its section); the vassal's first pid.
fn start_one(name: &str, args: &str, keys: &str) -> (Harness, i32) {
    let mut h = Harness::new();
    put(&h.vassal(name), &native(args, keys));
    h.start_dir(&[]);
    let pid = h.wait_start(name).pid;
    (h, pid)
}

/// Sends `message` to the notify socket named in `pid`'s environment, from
/// this (test) process.
fn send_as_stranger(pid: i32, message: &str) {
    let name = env_of(pid, "NOTIFY_SOCKET").expect("NOTIFY_SOCKET in the vassal's environment");
    let name = name.strip_prefix('@').expect("an abstract socket");
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
    UnixDatagram::unbound().unwrap().send_to_addr(message.as_bytes(), &addr).expect("send");
}

#[test]
fn a_notify_vassal_is_starting_until_it_sends_ready() {
    let (h, pid) = start_one("app.ini", "--notify-ready-after-ms 1500 --notify-status warming-up", "notify = true");
    let starting = wait_status(&h, "app.ini", "starting, with its status text", |v| {
        v["state"] == "starting" && v["status_text"] == "warming-up"
    });
    assert_eq!((starting["ready"].clone(), starting["pid"].clone()), (Value::Bool(false), Value::from(pid)));
    assert_eq!(starting["since_ready"], Value::Null);
    assert!(h.events_of("app.ini", "notify").iter().all(|e| !e.details.starts_with("READY=1")), "not sent yet");

    let ready = wait_status(&h, "app.ini", "running once READY=1 came", |v| v["state"] == "running");
    assert_eq!(ready["ready"], true);
    assert!(ready["since_ready"].as_f64().is_some(), "{ready}");
    h.wait_event("app.ini", "READY=1 sent", |e| e.kind == "notify" && e.details.starts_with("READY=1"));
    assert_eq!(ready["status_text"], "warming-up");

    let text = String::from_utf8(ctl(&h, &["status", "app.ini"])).unwrap();
    assert!(text.contains("app.ini - running") && text.contains("Status: warming-up"), "{text}");
    assert!(text.contains("Ready: since"), "{text}");
}

#[test]
fn a_vassal_without_notify_is_ready_when_spawned_and_keeps_its_emperor_variables_out() {
    let (h, pid) = start_one("plain.ini", "plain", "");
    let view = wait_status(&h, "plain.ini", "running", |v| v["state"] == "running");
    assert_eq!(view["ready"], true);
    let socket = env_of(pid, "NOTIFY_SOCKET").expect("every native vassal gets a notify socket");
    assert!(socket.starts_with("@emperor-notify-"), "{socket}");
    assert_eq!(env_of(pid, "WATCHDOG_USEC"), None, "no watchdog asked for");
}

#[test]
fn watchdog_pings_keep_a_vassal_alive_and_silence_gets_it_respawned() {
    let (h, first) = start_one("dog.ini", "--watchdog-ms 150", "watchdog = 1");
    assert_eq!(env_of(first, "WATCHDOG_USEC").as_deref(), Some("1000000"));
    assert_eq!(env_of(first, "WATCHDOG_PID"), Some(first.to_string()), "the watchdog is the vassal's own");
    // Fifteen pings 150 ms apart span more than twice the 1 s watchdog.
    wait_until(DEADLINE, "15 watchdog pings", || cond(h.events_of("dog.ini", "watchdog").len() >= 15));
    assert!(alive(first), "pinging keeps it alive");
    assert_eq!(h.starts("dog.ini").len(), 1);

    kill(first, libc::SIGUSR1);
    h.wait_event("dog.ini", "pings stopped", |e| e.kind == "watchdog-stop");
    let starts = h.wait_starts("dog.ini", 2);
    assert_ne!(starts[1].pid, first, "a new process");
    h.wait_dead(first, "the silent vassal");
    assert!(h.log_text().contains("vassal missed its heartbeat"), "{}", h.log_text());
    let view = wait_status(&h, "dog.ini", "running again", |v| v["pid"] == starts[1].pid);
    assert_eq!(view["restarts"], 1);
}

#[test]
fn another_process_cannot_speak_for_a_vassal() {
    let (h, pid) = start_one("app.ini", "never-ready", "notify = true");
    wait_status(&h, "app.ini", "starting", |v| v["state"] == "starting");
    send_as_stranger(pid, "READY=1\nSTATUS=forged");
    // The vassal's own message comes after the stranger's in the socket's
    // queue: once it shows, the forged one has been read and ignored.
    kill(pid, libc::SIGHUP);
    let view = wait_status(&h, "app.ini", "the vassal's own status", |v| v["status_text"] == "got SIGHUP");
    assert_eq!(view["state"], "starting", "{view}");
    assert_eq!(view["ready"], false);
}

#[test]
fn a_readopted_vassal_is_still_heard_after_an_emperor_crash() {
    let h = Harness::new();
    put(&h.vassal("dog.ini"), &native("--watchdog-ms 150", "watchdog = 1\nnotify = true"));
    let emperor = h.spawn_dir(&[], &[]);
    let pid = h.wait_start("dog.ini").pid;
    emperor.kill9();
    let _emperor = h.spawn_dir(&[], &[]);
    wait_until(DEADLINE, "the vassal re-adopted", || cond(h.log_text().contains("vassal re-adopted")));
    let pings = h.events_of("dog.ini", "watchdog").len();
    // Fifteen more pings: well past the 1 s watchdog of the new emperor.
    wait_until(DEADLINE, "15 more watchdog pings", || cond(h.events_of("dog.ini", "watchdog").len() >= pings + 15));
    kill(pid, libc::SIGHUP);
    let view = wait_status(&h, "dog.ini", "the status sent to the new emperor", |v| v["status_text"] == "got SIGHUP");
    assert_eq!((view["pid"].clone(), view["state"].clone()), (Value::from(pid), Value::from("running")));
    assert!(alive(pid));
    assert_eq!(h.starts("dog.ini").len(), 1, "never respawned");
}

#[test]
fn reloading_makes_a_vassal_starting_until_it_is_ready_again() {
    let args = "--notify-ready-after-ms 0 --on-usr2 RELOADING=1 --on-usr2 READY=1";
    let (h, pid) = start_one("app.ini", args, "notify = true");
    let first = wait_status(&h, "app.ini", "ready", |v| v["state"] == "running");
    kill(pid, libc::SIGUSR2);
    let reloading = wait_status(&h, "app.ini", "starting while it reloads", |v| v["state"] == "starting");
    assert_eq!((reloading["ready"].clone(), reloading["since_ready"].clone()), (Value::Bool(false), Value::Null));
    kill(pid, libc::SIGUSR2);
    let again = wait_status(&h, "app.ini", "ready again", |v| v["state"] == "running");
    assert!(again["since_ready"].as_f64() >= first["since_ready"].as_f64(), "{first} {again}");
    assert_eq!((again["pid"].clone(), again["restarts"].clone()), (Value::from(pid), Value::from(0)));
}

#[test]
fn an_exit_announced_by_stopping_is_a_stop_and_the_vassal_is_respawned() {
    let (h, pid) = start_one("app.ini", "--on-usr2 STOPPING=1,exit", "");
    wait_status(&h, "app.ini", "running", |v| v["state"] == "running");
    kill(pid, libc::SIGUSR2);
    let starts = h.wait_starts("app.ini", 2);
    assert_ne!(starts[1].pid, pid);
    let log = h.log_text();
    let about = |what: &str| log.lines().any(|l| l.contains(what) && l.contains(&format!("pid={pid}")));
    assert!(log.contains("vassal is stopping on its own"), "{log}");
    assert!(about("vassal stopped") && !about("vassal died"), "an announced exit is no death:\n{log}");
}
