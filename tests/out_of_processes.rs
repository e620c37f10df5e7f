//! Processes running out, with the real binary in tyrant mode, as root: the
//! emperor's `RLIMIT_NPROC` (inherited by every vassal through its spawn)
//! lets a vassal's uid run only a few processes. The vassals that fit run;
//! the exec of the others fails with `EAGAIN`, and their starts are held
//! with that reason, said once each, and retried with backoff without
//! keeping the emperor busy. Vassals of other uids are not affected, and
//! once the limit is raised the held vassals start by themselves.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::process::Command;
use std::time::{Duration, Instant};

/// The uid (and gid) the limited vassals run as: no passwd entry, and no
/// other test runs processes as it.
const LIMITED: u32 = 4_000_321;
/// The uid (and gid) of a vassal the limit leaves room for.
const OTHER: u32 = 4_000_322;
/// The `RLIMIT_NPROC` of the emperor.
const LIMIT: usize = 2;
/// Vassals of the limited uid: more than fit.
const VASSALS: usize = 5;
/// The retry delay of held starts (`--backoff-min` and `--backoff-max`).
const BACKOFF: &str = "0.5";

/// Processes running as `uid` (real uid), from /proc.
fn processes_of(uid: u32) -> usize {
    let real_uid = |pid: i32| {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse::<u32>().ok()
    };
    all_pids().into_iter().filter(|&pid| real_uid(pid) == Some(uid)).count()
}

/// The output of `emperor ctl ARGS`, once the control socket answers.
fn ctl(h: &Harness, args: &[&str]) -> Vec<u8> {
    wait_until(DEADLINE, format!("ctl {args:?} to answer"), || {
        let out = Command::new(EMPEROR)
            .arg("ctl")
            .arg("--control-socket")
            .arg(h.state.join("control.sock"))
            .args(args)
            .output()
            .expect("run emperor ctl");
        out.status.success().then_some(out.stdout)
    })
}

/// `emperor ctl list -o json`.
fn list(h: &Harness) -> Vec<Value> {
    serde_json::from_slice(&ctl(h, &["list", "-o", "json"])).expect("a JSON array")
}

/// The kinds of the stored events (`ctl events`) of `name`.
fn events_of(h: &Harness, name: &str) -> Vec<String> {
    let out = String::from_utf8(ctl(h, &["events"])).expect("UTF-8 events");
    let events = out.lines().map(|l| serde_json::from_str::<Value>(l).expect("one JSON object a line"));
    events.filter(|e| e["vassal"] == name).map(|e| e["event"].as_str().unwrap_or_default().to_owned()).collect()
}

/// The `ctl list` entry of `name`.
fn entry<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter().find(|v| v["name"] == name)
}

/// CPU time the process `pid` used so far (utime + stime, in clock ticks).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The fields after the command (in parentheses): utime and stime are the 14th and 15th of the line.
    let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Log lines saying `name`'s start is held.
fn holds_said(h: &Harness, name: &str) -> usize {
    let needle = format!("vassal={name} reason=");
    h.log_text().lines().filter(|l| l.contains("vassal not started") && l.contains(&needle)).count()
}

#[test]
fn out_of_processes_holds_the_starts_that_do_not_fit_until_the_limit_is_raised() {
    let mut h = Harness::new();
    for (dir, mode) in [(&h.root, 0o755), (&h.vassals, 0o755), (&h.record, 0o777)] {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).expect("chmod test dir");
    }
    let names: Vec<String> = (0..VASSALS).map(|i| format!("p{i}.ini")).collect();
    for name in &names {
        put(&h.vassal(name), &uwsgi_ini(""));
        chown(h.vassal(name), Some(LIMITED), Some(LIMITED)).expect("chown config");
    }
    let other = "other.ini";
    put(&h.vassal(other), &format!("[vassal]\nexec = {STUB} native\n"));
    chown(h.vassal(other), Some(OTHER), Some(OTHER)).expect("chown config");

    // Processes of an earlier run (killed, but zombies until init reaps
    // them, which can take seconds) would still count against the limit.
    wait_until(DEADLINE * 3, format!("no process of uid {LIMITED} left"), || cond(processes_of(LIMITED) == 0));
    let source = h.dir_source();
    let options = ["--tyrant", "--vassal-umask", "0", "--backoff-min", BACKOFF, "--backoff-max", BACKOFF];
    let args: Vec<&str> = options.iter().copied().chain([source.as_str()]).collect();
    // The soft limit only: raising a hard limit may be refused even to root.
    h.start_after(&format!("prlimit --pid $$ --nproc={LIMIT}:"), &args);
    let emperor = h.emperor_pid();

    // The ones that fit run; the others are held, with the reason.
    let (started, held) = wait_until(DEADLINE, "every limited vassal started or held", || {
        let list = list(&h);
        let started: Vec<&String> = names.iter().filter(|n| !h.starts(n).is_empty()).collect();
        let held: Vec<&String> =
            names.iter().filter(|n| entry(&list, n).is_some_and(|v| v["state"] == "held")).collect();
        (started.len() + held.len() == names.len()).then_some((started, held))
    });
    eprintln!("{} vassals of uid {LIMITED} started under RLIMIT_NPROC {LIMIT}, {} held", started.len(), held.len());
    if held.is_empty() {
        // Only the kernel decides whether an exec over the limit fails: no
        // start of the emperor's can go through one that does.
        eprintln!(
            "SKIPPED out_of_processes: this kernel let {VASSALS} vassals exec as uid {LIMITED} under RLIMIT_NPROC {LIMIT} (a process started by root), so processes cannot run out here"
        );
        return;
    }
    assert!(!started.is_empty(), "the vassals that fit run: {held:?} held");
    for name in &held {
        let reason = entry(&list(&h), name).unwrap()["reason"].as_str().unwrap_or_default().to_owned();
        assert!(reason.contains("out of processes") && reason.contains("EAGAIN"), "{name}: {reason}");
        assert!(reason.contains(&format!("uid {LIMITED}")) && reason.contains("RLIMIT_NPROC"), "{name}: {reason}");
    }
    let other_pid = h.wait_start(other).pid;

    // Over a few backoff periods (three retries of a held start, seen as
    // its next retry time moving on), nothing more is said and the emperor
    // is not busy.
    let (ticks, since) = (cpu_ticks(emperor), Instant::now());
    let mut retries: Vec<String> = Vec::new();
    wait_every(DEADLINE, Duration::from_millis(100), "three retries of a held start", || {
        let list = list(&h);
        let next = entry(&list, held[0]).map(|v| v["restart_at"].to_string()).unwrap_or_default();
        if retries.last() != Some(&next) {
            retries.push(next);
        }
        cond(retries.len() > 3)
    });
    let (used, window) = (cpu_ticks(emperor) - ticks, since.elapsed());
    let ticks_per_second = 100; // USER_HZ, what /proc/PID/stat counts in
    eprintln!("the emperor used {used} ticks of CPU in {window:?} of held starts");
    assert!(
        used * 1000 < window.as_millis() as u64 * ticks_per_second / 4,
        "held starts keep the emperor busy: {used} ticks in {window:?}"
    );
    for name in &held {
        assert_eq!(holds_said(&h, name), 1, "{name}: held once, said once:\n{}", h.log_text());
        assert!(h.starts(name).is_empty(), "{name} must not have run");
    }
    assert!(!h.log_text().contains("cannot start vassal"), "a held start is no failure:\n{}", h.log_text());
    for name in &held {
        let events = events_of(&h, name);
        assert_eq!(events.iter().filter(|e| *e == "held").count(), 1, "{name}: one held event: {events:?}");
        assert!(!events.iter().any(|e| e == "crashed"), "{name}: nothing crashed: {events:?}");
    }

    // The limit raised, the held vassals start by themselves; none of the
    // others was restarted meanwhile.
    let raised = format!("--nproc={}:", LIMIT + VASSALS + 1);
    let status = Command::new("prlimit").args(["--pid", &emperor.to_string(), &raised]).status().expect("run prlimit");
    assert!(status.success(), "prlimit --pid EMPEROR");
    for name in &held {
        h.wait_start(name);
    }
    wait_until(DEADLINE, "every vassal running", || {
        let list = list(&h);
        cond(list.len() == names.len() + 1 && list.iter().all(|v| v["state"] == "running"))
    });
    for name in started.iter().map(|n| n.as_str()).chain([other]) {
        assert_eq!(h.starts(name).len(), 1, "{name} must not be restarted");
        assert!(alive(h.starts(name)[0].pid), "{name} must keep running");
    }
    assert_eq!(h.starts(other)[0].pid, other_pid);
    assert!(h.emperor_running(), "the emperor must not crash");
    for name in &held {
        assert_eq!(holds_said(&h, name), 1, "{name}: said once:\n{}", h.log_text());
    }
}
