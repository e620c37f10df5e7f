//! Bad days, with the real binary and real processes: the fd holder killed
//! under a running emperor, the emperor itself stopped for longer than the
//! heartbeat timeout. Each time every running vassal keeps running, what
//! happened is said once, and the emperor recovers by itself.

mod common;

use common::*;
use std::time::Duration;

fn wait_log(h: &Harness, needle: &str, count: usize) {
    wait_until(DEADLINE, format!("{count} log line(s) with {needle:?}"), || {
        cond(h.log_text().matches(needle).count() >= count)
    });
}

/// Live fd holders of this harness's state dir: processes running
/// `emperor --fd-holder <state>/fd-holder.sock`.
fn holders(h: &Harness) -> Vec<i32> {
    let socket = h.state.join("fd-holder.sock").display().to_string();
    all_pids()
        .into_iter()
        .filter(|&pid| alive(pid))
        .filter(|&pid| {
            let args = cmdline(pid);
            args.iter().any(|a| a == "--fd-holder") && args.contains(&socket)
        })
        .collect()
}

#[test]
fn a_killed_fd_holder_is_replaced_and_uwsgi_vassals_survive_the_next_crash() {
    let h = Harness::new();
    let names = ["u1.ini", "u2.ini", "u3.ini"];
    for name in names {
        put(&h.vassal(name), &uwsgi_ini(""));
    }
    let first = h.spawn_dir(&[], &[]);
    let pids: Vec<i32> = names.iter().map(|n| h.wait_start(n).pid).collect();
    let old = wait_until(DEADLINE, "one fd holder", || match holders(&h)[..] {
        [pid] => Some(pid),
        _ => None,
    });

    kill(old, libc::SIGKILL);
    let new = wait_until(DEADLINE, "a new fd holder", || holders(&h).into_iter().find(|&p| p != old));
    wait_log(&h, "fd holder running again", 1);
    h.wait_reaped(old, "the killed fd holder (the emperor's child)");
    assert_eq!(h.log_text().matches("the fd holder went away").count(), 1, "said once");

    // The new holder has every channel: an emperor crash now leaves the
    // uWSGI vassals running, and the next emperor talks to them again.
    first.kill9();
    for (name, pid) in names.iter().zip(&pids) {
        assert!(alive(*pid), "{name} died with the emperor: its channel was not held");
    }
    let _second = h.spawn_dir(&[], &[]);
    wait_log(&h, "vassal re-adopted", names.len());
    for (name, pid) in names.iter().zip(&pids) {
        assert!(alive(*pid), "{name} must still run");
        assert_eq!(h.starts(name).len(), 1, "{name} must not be restarted");
        assert!(h.events_of(name, "eof").is_empty(), "{name} lost its control channel");
    }
    assert_eq!(holders(&h), [new], "the second emperor uses the new holder");
    touch(&h.vassal("u1.ini"));
    assert_eq!(h.wait_event("u1.ini", "recv 1 after the re-adoption", |e| e.is_recv(1)).pid, pids[0]);
}

/// How long the emperor is kept stopped: three heartbeat timeouts.
const STALL: Duration = Duration::from_secs(3);

#[test]
fn a_stopped_emperor_does_not_kill_the_vassals_it_could_not_hear() {
    let mut h = Harness::new();
    let names = ["a.ini", "b.ini", "c.ini"];
    for name in names {
        put(&h.vassal(name), &uwsgi_ini("stub-heartbeat-ms = 100"));
    }
    h.start_dir(&["--heartbeat-timeout", "1"]);
    let pids: Vec<i32> = names.iter().map(|n| h.wait_start(n).pid).collect();
    wait_log(&h, "vassal sends heartbeats", names.len());

    h.signal_emperor(libc::SIGSTOP);
    // Not a wait for an event: the fault itself is the emperor staying
    // stopped this long while its vassals keep sending heartbeats.
    std::thread::sleep(STALL);
    h.signal_emperor(libc::SIGCONT);
    wait_log(&h, "the emperor itself was not running", 1);

    // Heartbeats are still enforced over the time the emperor is awake: a
    // vassal that really falls silent is killed and respawned, and only it.
    kill(pids[2], libc::SIGSTOP);
    let again = h.wait_starts("c.ini", 2);
    assert_ne!(again[1].pid, pids[2]);
    for (name, pid) in names.iter().zip(&pids).take(2) {
        assert!(alive(*pid), "{name} was killed although it kept sending heartbeats");
        assert_eq!(h.starts(name).len(), 1, "{name} must not be restarted");
    }
    let missed = h.complaints_about("missed its heartbeat");
    assert!(missed.iter().all(|l| l.contains("c.ini")), "only the silent vassal: {missed:#?}");
    assert_eq!(h.log_text().matches("the emperor itself was not running").count(), 1, "said once");
}

/// Overwrites 64 bytes a third of the way into the sled log of `h`.
fn damage_store(h: &Harness) {
    use std::io::{Seek, SeekFrom, Write};
    let db = h.state.join("state.sled/db");
    let len = std::fs::metadata(&db).expect("the sled log").len();
    let mut file = std::fs::OpenOptions::new().write(true).open(&db).expect("open the sled log");
    file.seek(SeekFrom::Start(len / 3)).unwrap();
    file.write_all(&[0xAB; 64]).unwrap();
}

#[test]
fn a_damaged_state_store_is_refused_and_a_reset_recovers_without_duplicates() {
    let h = Harness::new();
    let names = ["u1.ini", "u2.ini", "n.ini"];
    put(&h.vassal("u1.ini"), &uwsgi_ini(""));
    put(&h.vassal("u2.ini"), &uwsgi_ini(""));
    put(&h.vassal("n.ini"), &format!("[vassal]\nexec = {STUB} native\n"));
    let mut first = h.spawn_dir(&[], &[]);
    let pids: Vec<i32> = names.iter().map(|n| h.wait_start(n).pid).collect();
    kill(first.pid(), libc::SIGUSR2);
    assert!(first.wait_exit().success(), "SIGUSR2 exits 0, leaving the vassals running");
    damage_store(&h);

    let out = h.command(&[&h.dir_source()]).stderr(std::process::Stdio::piped()).output().unwrap();
    assert!(!out.status.success(), "a damaged store must be refused");
    let err = String::from_utf8_lossy(&out.stderr);
    let path = h.state.join("state.sled").display().to_string();
    assert!(err.contains(&path) && err.contains("--reset-state"), "names the store and the way out: {err}");
    for (name, pid) in names.iter().zip(&pids) {
        assert!(alive(*pid), "{name} must keep running while the emperor refuses to start");
    }

    // The reset finds the running vassals through /proc, stops them (no
    // record says what they run) and starts each once again: none twice.
    let _second = h.spawn_dir(&["--reset-state"], &[]);
    wait_log(&h, "moved aside, starting fresh", 1);
    for (name, pid) in names.iter().zip(&pids) {
        h.wait_dead(*pid, name);
        h.wait_starts(name, 2);
    }
    let found = wait_until(DEADLINE, "exactly one process per vassal after the reset", || {
        let found = our_vassals(&h);
        (found.len() == names.len() && found.values().all(|pids| pids.len() == 1)).then_some(found)
    });
    for name in names {
        assert_eq!(h.starts(name).len(), 2, "{name}: started once more, not twice");
        assert_eq!(found[name], [h.starts(name)[1].pid]);
    }
}

/// A small tmpfs mounted on a directory for the length of a test (root).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Self {
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: the emperor may still hold files there until the harness ends it.
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `path` with a file there, until it is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0x55u8; 64 << 10];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

#[test]
fn a_full_state_dir_holds_new_vassals_until_space_returns() {
    let h = Harness::new();
    let _tmpfs = Tmpfs::mount(&h.state, "4m");
    let logs = h.root.join("logs");
    let logs_arg = logs.display().to_string();
    put(&h.vassal("a.ini"), &uwsgi_ini(""));
    let first = h.spawn_dir(&["--log-dir", &logs_arg, "--backoff-min", "1", "--backoff-max", "1"], &[]);
    let a = h.wait_start("a.ini").pid;

    let filler = h.state.join("filler");
    fill(&filler);
    put(&h.vassal("b.ini"), &uwsgi_ini(""));
    let refused = h.wait_complaint("vassal not started");
    assert!(refused.contains("b.ini") && refused.contains("is full"), "names the vassal and the cause: {refused}");
    assert!(refused.contains("spawn intent cannot be recorded"), "{refused}");
    // Running vassals stay supervised: a crash of a recorded one is respawned.
    kill(a, libc::SIGKILL);
    let again = h.wait_starts("a.ini", 2);
    assert!(h.starts("b.ini").is_empty(), "b.ini must wait for its intent to be recorded");

    std::fs::remove_file(&filler).unwrap();
    h.wait_start("b.ini");
    wait_log(&h, "the state store can be written again", 1);
    let log = h.log_text();
    assert_eq!(log.matches("vassal not started").count(), 1, "said once:\n{log}");
    assert_eq!(log.matches("cannot write the state store").count(), 1, "said once:\n{log}");

    // The respawn's record, refused while the disk was full, is written now.
    wait_log(&h, "vassal records written again", 1);

    // The store is intact: the next emperor opens it and re-adopts both.
    first.kill9();
    let _second = h.spawn_dir(&["--log-dir", &logs_arg], &[]);
    wait_log(&h, "vassal re-adopted", 2);
    assert_eq!(h.starts("a.ini").len(), 2);
    assert_eq!(h.starts("b.ini").len(), 1);
    assert!(alive(again[1].pid));
}

/// Names of `names` whose start `h`'s emperor held for lack of fds.
fn held_for_fds<'a>(h: &Harness, names: &'a [String]) -> Vec<&'a String> {
    let log = h.log_text();
    names.iter().filter(|n| log.contains(&format!("vassal={n} reason=too few file descriptors"))).collect()
}

#[test]
fn out_of_fds_holds_the_starts_that_do_not_fit_and_the_emperor_keeps_serving() {
    let mut h = Harness::new();
    let names: Vec<String> = (0..150).map(|i| format!("v{i:02}.ini")).collect();
    for name in &names {
        put(&h.vassal(name), &uwsgi_ini(""));
    }
    let source = h.dir_source();
    h.start_after("ulimit -n 128", &["--backoff-min", "1", "--backoff-max", "1", &source]);
    let started = wait_until(DEADLINE, "every vassal started or held", || {
        let started: Vec<&String> = names.iter().filter(|n| !h.starts(n).is_empty()).collect();
        let held = held_for_fds(&h, &names);
        (!started.is_empty() && !held.is_empty() && started.len() + held.len() == names.len()).then_some(started)
    });
    eprintln!("{} vassals started under 128 fds, {} held", started.len(), names.len() - started.len());

    // The emperor itself is unaffected: its control socket answers.
    let list = std::process::Command::new(EMPEROR)
        .args(["ctl", "--control-socket"])
        .arg(h.state.join("control.sock"))
        .arg("list")
        .output()
        .expect("run emperor ctl");
    assert!(list.status.success(), "ctl list: {}", String::from_utf8_lossy(&list.stderr));

    // Configs removed: the directory source still works, the freed fds go
    // to held vassals, retried with backoff.
    let held = held_for_fds(&h, &names);
    let removed: Vec<&String> = started.iter().take(10).copied().collect();
    for name in &removed {
        std::fs::remove_file(h.vassal(name)).unwrap();
    }
    wait_until(DEADLINE, "a held vassal to start once fds are free", || held.iter().find(|n| !h.starts(n).is_empty()));
    for name in started.iter().filter(|n| !removed.contains(n)) {
        assert_eq!(h.starts(name).len(), 1, "{name} must not be restarted");
        assert!(alive(h.starts(name)[0].pid), "{name} must keep running");
    }
    let log = h.log_text();
    for name in &held {
        let reports = log.matches(&format!("vassal={name} reason=too few")).count();
        assert_eq!(reports, 1, "{name}: held once, said once");
    }
}
