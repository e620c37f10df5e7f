//! `emperor ctl` against the real binary: reads, operator commands and
//! their persistence, exit codes, the uid check and the HTTP parser's
//! answer to garbage.

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `emperor ctl ARGS` against the socket of `h`'s state dir.
fn ctl(h: &Harness, args: &[&str]) -> Output {
    ctl_at(&h.state.join("control.sock"), args)
}

fn ctl_at(socket: &Path, args: &[&str]) -> Output {
    Command::new(EMPEROR).arg("ctl").arg("--control-socket").arg(socket).args(args).output().expect("run emperor ctl")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

/// `list -o json`, as JSON, once the socket answers.
fn list_json(h: &Harness) -> Vec<Value> {
    wait_until(DEADLINE, "ctl list -o json to answer", || {
        let out = ctl(h, &["list", "-o", "json"]);
        (code(&out) == 0).then(|| serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("JSON array"))
    })
}

/// Waits until `list -o json` shows `name` in `state`, and returns its object.
fn wait_state(h: &Harness, name: &str, state: &str) -> Value {
    wait_until(DEADLINE, format!("{name} to be {state} in ctl list"), || {
        list_json(h).into_iter().find(|v| v["name"] == name && v["state"] == state)
    })
}

#[test]
fn list_and_status_show_states_pids_and_logs() {
    let mut h = Harness::new();
    put(&h.vassal("a.ini"), &uwsgi_ini(""));
    put(&h.vassal("b.ini"), &uwsgi_ini(""));
    put(&h.vassal("bad.xml"), "not xml");
    h.start_dir(&[]);
    let a = h.wait_start("a.ini");
    h.wait_start("b.ini");
    let held = wait_state(&h, "bad.xml", "held");
    assert!(held["reason"].as_str().unwrap().contains("bad.xml"), "held with its reason: {held}");
    let a_json = wait_state(&h, "a.ini", "running");
    wait_state(&h, "b.ini", "running");
    for key in ["name", "source", "state", "pid", "generation", "since", "restarts", "last_exit"] {
        assert!(a_json.get(key).is_some(), "{key} missing in {a_json}");
    }
    assert_eq!(a_json["pid"], a.pid);
    assert_eq!(a_json["source"], h.dir_source());
    assert_eq!(a_json["last_exit"], Value::Null, "nothing exited yet");

    let table = stdout(&ctl(&h, &["list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("VASSAL"), "{table}");
    for column in ["SOURCE", "STATE", "PID", "UPTIME", "RESTARTS", "LAST-EXIT"] {
        assert!(lines[0].contains(column), "{column} in {table}");
    }
    assert!(lines.iter().any(|l| l.starts_with("a.ini") && l.contains(&a.pid.to_string())), "{table}");
    assert_eq!(*lines.last().unwrap(), "3 vassals: 2 running, 0 crashed (backing off), 1 held, 0 stopped");
    assert_eq!(stdout(&ctl(&h, &["status"])), table, "status without names is list");

    let status = ctl(&h, &["status", "a.ini"]);
    assert_eq!(code(&status), 0);
    let text = stdout(&status);
    assert!(text.contains("a.ini - running") && text.contains(&a.pid.to_string()), "{text}");
    assert!(text.contains(h.state.join("logs/a.ini.log").to_str().unwrap()), "log file named: {text}");
    assert_eq!(code(&ctl(&h, &["status", "bad.xml"])), 3, "held is not running");
    assert_eq!(code(&ctl(&h, &["status", "nope.ini"])), 4, "no source wants it");
    assert_eq!(code(&ctl(&h, &["stop", "nope.ini"])), 4);

    let sources = stdout(&ctl(&h, &["sources", "-o", "json"]));
    let sources: Vec<Value> = serde_json::from_str(&sources).unwrap();
    assert_eq!(sources[0]["up"], true);
    assert_eq!(sources[0]["desired"], 3);
}

#[test]
fn a_stopped_vassal_stays_stopped_across_resyncs_and_restarts_until_started() {
    let h = Harness::new();
    put(&h.vassal("a.ini"), &uwsgi_ini(""));
    let first = h.spawn_dir(&["--resync", "0.2"], &[]);
    let a = h.wait_start("a.ini");
    list_json(&h);
    let out = ctl(&h, &["stop", "--wait", "a.ini"]);
    assert_eq!(code(&out), 0, "{out:?}");
    // --wait returns once the process is gone.
    assert!(dead(a.pid), "stopped vassal still alive after stop --wait");
    assert!(h.events("a.ini").iter().any(|e| e.is_recv(0)), "asked to stop with the stop byte");
    let stopped = list_json(&h).into_iter().find(|v| v["name"] == "a.ini").unwrap();
    assert_eq!((&stopped["state"], &stopped["pid"]), (&"stopped".into(), &Value::Null));
    assert_eq!(code(&ctl(&h, &["status", "a.ini"])), 3);

    // A change of its config and a new vassal: the source is read again, a.ini stays down.
    put(&h.vassal("a.ini"), &uwsgi_ini("# changed"));
    put(&h.vassal("b.ini"), &uwsgi_ini(""));
    h.wait_start("b.ini");
    wait_state(&h, "b.ini", "running");
    assert_eq!(h.starts("a.ini").len(), 1, "a.ini must stay stopped");

    // A restarted emperor keeps it stopped too.
    first.kill9();
    let _second = h.spawn_dir(&[], &[]);
    wait_state(&h, "b.ini", "running");
    wait_state(&h, "a.ini", "stopped");
    assert_eq!(h.starts("a.ini").len(), 1, "a.ini must stay stopped after a restart");

    assert_eq!(code(&ctl(&h, &["start", "a.ini"])), 0);
    let again = h.wait_starts("a.ini", 2);
    let running = wait_state(&h, "a.ini", "running");
    assert_eq!(running["pid"], again[1].pid);
}

#[test]
fn restart_gives_a_new_pid_and_reload_sends_the_reload_byte() {
    let mut h = Harness::new();
    put(&h.vassal("a.ini"), &uwsgi_ini(""));
    h.start_dir(&[]);
    let first = h.wait_start("a.ini");
    wait_state(&h, "a.ini", "running");

    assert_eq!(code(&ctl(&h, &["reload", "a.ini"])), 0);
    let reload = h.wait_event("a.ini", "reload byte", |e| e.is_recv(1));
    assert_eq!(reload.pid, first.pid, "a reload keeps the process");

    assert_eq!(code(&ctl(&h, &["restart", "--wait", "a.ini"])), 0);
    // --wait returns once the new process runs.
    let now = list_json(&h).into_iter().find(|v| v["name"] == "a.ini").unwrap();
    assert_eq!(now["state"], "running");
    let starts = h.wait_starts("a.ini", 2);
    assert_ne!(starts[1].pid, first.pid, "a restart makes a new process");
    assert_eq!(now["pid"], starts[1].pid);
    assert_eq!(now["restarts"], 1);
    assert!(now["last_exit"].is_object(), "the old process's exit is known: {now}");
}

#[test]
fn an_unreachable_emperor_exits_7_naming_the_socket() {
    let h = Harness::new();
    let socket = h.root.join("nobody.sock");
    let out = ctl_at(&socket, &["list"]);
    assert_eq!(code(&out), 7);
    assert!(String::from_utf8_lossy(&out.stderr).contains(socket.to_str().unwrap()), "{out:?}");
    assert_eq!(code(&ctl_at(&socket, &["frobnicate"])), 2, "usage error");
}

#[test]
fn another_uid_may_read_but_not_change_anything() {
    let h = Harness::new();
    put(&h.vassal("a.ini"), &uwsgi_ini(""));
    let socket = h.root.join("ctl.sock");
    // A directory the group may enter: the socket is then 0660 (in the
    // private state dir it is 0600).
    std::fs::set_permissions(&h.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _run = h.spawn_dir(&["--control-socket", socket.to_str().unwrap()], &[]);
    let a = h.wait_start("a.ini");
    wait_until(DEADLINE, "the control socket", || cond(socket.exists()));
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o660);
    // Let uid 65534 reach the socket, so that only the uid check stands in its way.
    std::fs::set_permissions(&h.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let as_nobody = |args: &[&str]| {
        Command::new(EMPEROR)
            .arg("ctl")
            .arg("--control-socket")
            .arg(&socket)
            .args(args)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run emperor ctl as nobody")
    };
    let list = as_nobody(&["list"]);
    assert_eq!(code(&list), 0, "reading is allowed: {list:?}");
    assert!(stdout(&list).contains("a.ini"));
    let stop = as_nobody(&["stop", "a.ini"]);
    assert_eq!(code(&stop), 1, "{stop:?}");
    assert!(String::from_utf8_lossy(&stop.stderr).contains("uid 65534 may not stop"), "{stop:?}");
    assert!(alive(a.pid));
    assert!(h.events_of("a.ini", "recv").is_empty(), "nothing was sent to the vassal");
    assert_eq!(code(&ctl_at(&socket, &["reload", "a.ini"])), 0, "root may");
}

#[test]
fn malformed_http_is_answered_400() {
    let mut h = Harness::new();
    h.start_dir(&[]);
    list_json(&h);
    let socket = h.state.join("control.sock");
    for garbage in ["GARBAGE\r\n\r\n", "GET /v1/vassals HTTP/9\r\n\r\n", "GET /v1 HTTP/1.1\r\nno-colon\r\n\r\n"] {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        stream.write_all(garbage.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 400 "), "{garbage:?} -> {answer}");
    }
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let _ = stream.write_all(&vec![b'A'; 64 * 1024]);
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    list_json(&h);
}

#[test]
fn a_readopted_vassal_that_dies_has_an_unknown_exit_never_a_made_up_one() {
    let h = Harness::new();
    put(&h.vassal("n.ini"), &format!("[vassal]\nexec = {STUB} native\n"));
    let first = h.spawn_dir(&[], &[]);
    let n = h.wait_start("n.ini");
    first.kill9();
    let _second = h.spawn_dir(&[], &[]);
    wait_until(DEADLINE, "the vassal re-adopted", || cond(h.log_text().contains("vassal re-adopted")));
    assert_eq!(wait_state(&h, "n.ini", "running")["last_exit"], Value::Null, "nothing ended yet");
    kill(n.pid, libc::SIGKILL);
    let after = wait_until(DEADLINE, "the adopted process's end in ctl list", || {
        list_json(&h).into_iter().find(|v| v["name"] == "n.ini" && !v["last_exit"].is_null())
    });
    assert_eq!(after["last_exit"], "unknown", "init reaped it: its status is not ours to know");
    let table = stdout(&ctl(&h, &["list"]));
    assert!(table.lines().any(|l| l.starts_with("n.ini") && l.ends_with("unknown")), "{table}");
}
