//! `emperor ctl events`, `logs`, `resync` and `restart --rolling` against
//! the real binary: the event stream resumes across an emperor restart, a
//! follower sees what happens after it started, logs follow a rotation.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

fn ctl(h: &Harness, args: &[&str]) -> Output {
    ctl_command(h, args).output().expect("run emperor ctl")
}

fn ctl_command(h: &Harness, args: &[&str]) -> Command {
    let mut cmd = Command::new(EMPEROR);
    cmd.arg("ctl").arg("--control-socket").arg(h.state.join("control.sock")).args(args);
    cmd
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every event `ctl events ARGS` prints (it exits once the stored ones are out).
fn events(h: &Harness, args: &[&str]) -> Vec<Value> {
    try_events(h, args).unwrap_or_else(|out| panic!("ctl events failed: {out:?}"))
}

/// [`events`], or the output of a `ctl events` that failed.
fn try_events(h: &Harness, args: &[&str]) -> Result<Vec<Value>, Output> {
    let mut all = vec!["events"];
    all.extend_from_slice(args);
    let out = ctl(h, &all);
    if code(&out) != 0 {
        return Err(out);
    }
    Ok(stdout(&out).lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect())
}

/// Waits until `ctl events` (once the socket answers) holds an event
/// matching `pred`, and returns it.
fn wait_event(h: &Harness, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_until(DEADLINE, what, || try_events(h, &[]).ok()?.into_iter().find(|e| pred(e)))
}

fn is(event: &Value, kind: &str, vassal: &str) -> bool {
    event["event"] == kind && event["vassal"] == vassal
}

fn seq(event: &Value) -> u64 {
    event["seq"].as_u64().expect("seq")
}

/// A `ctl ARGS` that keeps running, its stdout lines sent to the receiver.
struct Follower {
    child: Child,
    lines: Receiver<String>,
}

impl Follower {
    fn start(h: &Harness, args: &[&str]) -> Self {
        let mut child = ctl_command(h, args).stdout(Stdio::piped()).spawn().expect("spawn emperor ctl");
        let out = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                if tx.send(line.expect("utf-8 line")).is_err() {
                    return;
                }
            }
        });
        Follower { child, lines }
    }

    /// The first line (within the deadline) matching `pred`.
    fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line for {what}: {e}"),
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn events_resume_with_since_across_an_emperor_restart() {
    let h = Harness::new();
    put(&h.vassal("a.ini"), &uwsgi_ini(""));
    let mut first = h.spawn_dir(&[], &[]);
    let a = h.wait_start("a.ini");
    let spawned = wait_event(&h, "a.ini spawned", |e| is(e, "spawned", "a.ini"));
    assert_eq!(spawned["pid"], a.pid);
    assert!(spawned["generation"].is_u64() && spawned["time"].is_f64(), "{spawned}");
    let synced = events(&h, &[]).into_iter().find(|e| e["event"] == "source_synced").expect("the first listing");
    assert_eq!((&synced["source"], &synced["vassals"]), (&h.dir_source().into(), &1.into()));

    let before = events(&h, &[]).iter().map(seq).max().unwrap();

    // A clean stop, then a new emperor on the same state dir.
    kill(first.pid(), libc::SIGTERM);
    assert!(first.wait_exit().success());
    let _second = h.spawn_dir(&[], &[]);
    let again = h.wait_starts("a.ini", 2)[1].clone();
    wait_event(&h, "a.ini spawned again", |e| is(e, "spawned", "a.ini") && e["pid"] == again.pid);
    let all = events(&h, &[]);
    let numbers: Vec<u64> = all.iter().map(seq).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "numbers only grow, none reused: {numbers:?}");
    // What the first emperor did while stopping was stored before it exited.
    let exited = all.iter().find(|e| is(e, "exited", "a.ini") && e["pid"].is_null()).expect("exited");
    assert!(seq(exited) > before && all.iter().any(|e| is(e, "stopping", "a.ini") && e["pid"] == a.pid), "{all:?}");

    let since = seq(exited);
    let after = events(&h, &["--since", &since.to_string()]);
    assert!(after.iter().all(|e| seq(e) > since), "nothing at or before {since}: {after:?}");
    assert_eq!(after.first().map(seq), Some(since + 1), "the next one on");
    assert!(after.iter().any(|e| is(e, "spawned", "a.ini") && e["pid"] == again.pid), "{after:?}");

    // A number this store never handed out (its state was reset): said so,
    // then everything kept.
    let unknown = events(&h, &["--since", "999999"]);
    let newest = *numbers.last().unwrap();
    assert_eq!(unknown[0], serde_json::json!({ "event": "reset", "last": newest }));
    assert_eq!(unknown.len(), all.len() + 1, "{unknown:?}");
}

#[test]
fn events_follow_shows_a_spawn_when_a_config_is_added() {
    let mut h = Harness::new();
    h.start_dir(&[]);
    wait_event(&h, "the first listing", |e| e["event"] == "source_synced");
    let follower = Follower::start(&h, &["events", "-f"]);
    follower.wait_line("the stored listing event", |l| l.contains("source_synced"));
    put(&h.vassal("b.ini"), &uwsgi_ini(""));
    let b = h.wait_start("b.ini");
    let line = follower.wait_line("b.ini spawned", |l| l.contains("\"spawned\""));
    let event: Value = serde_json::from_str(&line).unwrap();
    assert!(is(&event, "spawned", "b.ini") && event["pid"] == b.pid, "{event}");
    kill(b.pid, libc::SIGKILL);
    let line = follower.wait_line("b.ini crashed", |l| l.contains("\"crashed\""));
    let crashed: Value = serde_json::from_str(&line).unwrap();
    assert!(crashed["respawn_in"].as_f64().is_some(), "with its respawn delay: {crashed}");
    let exited = events(&h, &[]).into_iter().find(|e| is(e, "exited", "b.ini")).expect("exited");
    assert_eq!(exited["signal"], "SIGKILL");
    assert!(seq(&exited) < seq(&crashed));
}

#[test]
fn logs_prints_the_last_lines_and_follows_across_a_rename() {
    let mut h = Harness::new();
    put(&h.vassal("a.ini"), &uwsgi_ini(""));
    h.start_dir(&[]);
    h.wait_start("a.ini");
    let log = h.state.join("logs/a.ini.log");
    wait_until(DEADLINE, "the vassal's first log line", || {
        cond(std::fs::read_to_string(&log).is_ok_and(|t| t.contains("started")))
    });
    let append = |path: &std::path::Path, text: &str| {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    };
    append(&log, "one\ntwo\nthree\nfour\n");
    let out = ctl(&h, &["logs", "-n", "3", "a.ini"]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "two\nthree\nfour\n"));
    assert_eq!(stdout(&ctl(&h, &["logs", "a.ini"])).lines().count(), 5, "10 by default: all 5 lines");
    let missing = ctl(&h, &["logs", "nope.ini"]);
    assert_eq!(code(&missing), 4, "{missing:?}");

    let follower = Follower::start(&h, &["logs", "-f", "-n", "1", "a.ini"]);
    follower.wait_line("the last line", |l| l == "four");
    append(&log, "written after the follower started\n");
    follower.wait_line("the appended line", |l| l == "written after the follower started");
    // Rotation: the file is renamed away and a new one takes its path.
    append(&log, "last line of the old file\n");
    std::fs::rename(&log, h.state.join("logs/a.ini.log.1")).unwrap();
    append(&log, "first line of the new file\n");
    follower.wait_line("the old file's last line", |l| l == "last line of the old file");
    follower.wait_line("the new file's first line", |l| l == "first line of the new file");
    append(&log, "and on\n");
    follower.wait_line("the new file followed", |l| l == "and on");
}

#[test]
fn resync_reads_the_sources_again_and_names_unknown_ones() {
    let mut h = Harness::new();
    put(&h.vassal("a.ini"), &uwsgi_ini(""));
    h.start_dir(&[]);
    h.wait_start("a.ini");
    let first = wait_event(&h, "the first listing", |e| e["event"] == "source_synced");
    let out = ctl(&h, &["resync", "--wait"]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), format!("{}: synced\n", h.dir_source()));
    let again: Vec<Value> = events(&h, &["--since", &seq(&first).to_string()])
        .into_iter()
        .filter(|e| e["event"] == "source_synced")
        .collect();
    assert_eq!(again.len(), 1, "one more listing: {again:?}");
    assert_eq!(again[0]["vassals"], 1);
    assert_eq!(h.starts("a.ini").len(), 1, "a listing that changed nothing restarts nothing");

    assert_eq!(code(&ctl(&h, &["resync", &h.dir_source()])), 0, "by id");
    let unknown = ctl(&h, &["resync", "pg://nowhere"]);
    assert_eq!(code(&unknown), 4, "{unknown:?}");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no such source: pg://nowhere"), "{unknown:?}");
}

#[test]
fn a_rolling_restart_restarts_the_next_vassal_once_the_previous_runs_again() {
    let mut h = Harness::new();
    put(&h.vassal("a.ini"), &uwsgi_ini(""));
    put(&h.vassal("b.ini"), &uwsgi_ini(""));
    h.start_dir(&[]);
    let (a, b) = (h.wait_start("a.ini"), h.wait_start("b.ini"));
    wait_event(&h, "b.ini spawned", |e| is(e, "spawned", "b.ini"));
    let out = ctl(&h, &["restart", "--rolling", "a.ini", "b.ini"]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "a.ini: running again\nb.ini: running again\n");
    let (a2, b2) = (h.wait_starts("a.ini", 2)[1].clone(), h.wait_starts("b.ini", 2)[1].clone());
    assert!(a2.pid != a.pid && b2.pid != b.pid, "both have new processes");
    let all = events(&h, &[]);
    let find = |kind: &str, name: &str, pid: i32| {
        all.iter()
            .find(|e| is(e, kind, name) && e["pid"] == pid)
            .map(seq)
            .unwrap_or_else(|| panic!("{kind} {name}: {all:?}"))
    };
    let (a_back, b_stopping) = (find("spawned", "a.ini", a2.pid), find("stopping", "b.ini", b.pid));
    assert!(a_back < b_stopping, "b.ini stopped only after a.ini ran again: {all:?}");
    let of_b = events(&h, &["--vassal", "b.ini"]);
    assert!(of_b.iter().all(|e| e["vassal"] == "b.ini"), "{of_b:?}");
    assert_eq!(of_b.iter().filter(|e| e["event"] == "spawned").count(), 2, "{of_b:?}");

    let stopped = ctl(&h, &["restart", "--rolling", "nope.ini", "a.ini"]);
    assert_eq!(code(&stopped), 4, "{stopped:?}");
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("rolling restart stopped at nope.ini"), "{stopped:?}");
    assert_eq!(h.starts("a.ini").len(), 2, "nothing after the first failure");
}
