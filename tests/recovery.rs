//! Crash recovery with real processes and a real `kill -9` of the emperor:
//! vassals outlive it, a restarted emperor re-adopts them (same pids, no
//! restart), applies what changed while it was down exactly once, and never
//! signals a pid that now belongs to someone else.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

fn native_ini() -> String {
    format!("[vassal]\nexec = {STUB} native\n")
}

fn wait_log(h: &Harness, needle: &str, count: usize) {
    wait_until(DEADLINE, format!("{count} log line(s) with {needle:?}"), || {
        cond(h.log_text().matches(needle).count() >= count)
    });
}

#[test]
fn kill9_leaves_vassals_running_and_a_restart_readopts_them() {
    let h = Harness::new();
    for name in ["u1.ini", "u2.ini"] {
        put(&h.vassal(name), &uwsgi_ini(""));
    }
    put(&h.vassal("n.ini"), &native_ini());
    let first = h.spawn_dir(&[], &[]);
    let pids: BTreeMap<&str, i32> = ["u1.ini", "u2.ini", "n.ini"].map(|n| (n, h.wait_start(n).pid)).into();
    first.kill9();
    for (name, pid) in &pids {
        assert!(alive(*pid), "{name} died with the emperor");
    }

    let _second = h.spawn_dir(&[], &[]);
    wait_log(&h, "vassal re-adopted", 3);
    for (name, pid) in &pids {
        assert!(alive(*pid), "{name} must still run after the restart");
        assert_eq!(h.starts(name).len(), 1, "{name} must not be restarted");
        assert!(h.events_of(name, "eof").is_empty(), "{name} lost its control channel");
    }
    let found = our_vassals(&h);
    assert_eq!(found.len(), 3, "exactly the three vassals: {found:?}");

    // Reload, stop and crash-respawn work on the adopted vassals.
    touch(&h.vassal("u1.ini"));
    let reload = h.wait_event("u1.ini", "recv 1 after adoption", |e| e.is_recv(1));
    assert_eq!(reload.pid, pids["u1.ini"]);
    fs::remove_file(h.vassal("u2.ini")).unwrap();
    h.wait_event("u2.ini", "recv 0 after adoption", |e| e.is_recv(0));
    h.wait_dead(pids["u2.ini"], "stopped adopted vassal");
    kill(pids["n.ini"], libc::SIGKILL);
    let again = h.wait_starts("n.ini", 2);
    assert_ne!(again[1].pid, pids["n.ini"]);
}

#[test]
fn changes_made_while_the_emperor_is_down_are_applied_once() {
    let h = Harness::new();
    for name in ["touched.ini", "removed.ini", "killed.ini"] {
        put(&h.vassal(name), &uwsgi_ini(""));
    }
    let first = h.spawn_dir(&[], &[]);
    let killed = h.wait_start("killed.ini").pid;
    let removed = h.wait_start("removed.ini").pid;
    let touched = h.wait_start("touched.ini").pid;
    first.kill9();

    put(&h.vassal("added.ini"), &uwsgi_ini(""));
    touch(&h.vassal("touched.ini"));
    fs::remove_file(h.vassal("removed.ini")).unwrap();
    kill(killed, libc::SIGKILL);
    wait_until(DEADLINE, "the killed vassal to die", || cond(dead(killed)));

    let _second = h.spawn_dir(&[], &[]);
    h.wait_start("added.ini");
    h.wait_event("touched.ini", "recv 1", |e| e.is_recv(1));
    h.wait_event("removed.ini", "recv 0", |e| e.is_recv(0));
    h.wait_dead(removed, "the removed vassal");
    h.wait_starts("killed.ini", 2);
    wait_until(DEADLINE, "exactly the three wanted vassals", || {
        let found = our_vassals(&h);
        cond(found.keys().map(String::as_str).eq(["added.ini", "killed.ini", "touched.ini"]))
    });

    let found = our_vassals(&h);
    assert!(found.values().all(|pids| pids.len() == 1), "one process per vassal: {found:?}");
    assert_eq!(h.starts("added.ini").len(), 1);
    assert_eq!(h.starts("touched.ini").len(), 1, "touched vassal reloaded in place, not restarted");
    assert_eq!(found["touched.ini"], [touched]);
    assert_eq!(h.events("touched.ini").iter().filter(|e| e.is_recv(1)).count(), 1);
    assert_eq!(h.starts("killed.ini").len(), 2);
    assert_eq!(h.starts("removed.ini").len(), 1);
}

#[test]
fn a_recorded_pid_reused_by_another_process_is_never_signalled() {
    let h = Harness::new();
    put(&h.vassal("n.ini"), &native_ini());
    let first = h.spawn_dir(&[], &[]);
    let vassal = h.wait_start("n.ini").pid;
    first.kill9();
    kill(vassal, libc::SIGKILL);
    wait_until(DEADLINE, "the vassal to die", || cond(dead(vassal)));

    // An unrelated process now sits on the recorded pid (rewritten in the
    // store, as pid reuse would do it): same pid, different start time.
    let mut stranger = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let stranger_pid = stranger.id() as i32;
    {
        let store = state::Store::open(&h.state).expect("open the state store");
        let name = reconciler::VassalName::parse("n.ini").unwrap();
        let mut record = store.vassal(&name).unwrap().expect("record of n.ini");
        record.pid = Some(stranger_pid);
        store.put_vassal(&record).unwrap();
        store.flush().unwrap();
    }

    let _second = h.spawn_dir(&[], &[]);
    let starts = h.wait_starts("n.ini", 2);
    assert_ne!(starts[1].pid, stranger_pid);
    assert!(alive(stranger_pid), "the stranger must never be signalled");
    assert_eq!(stranger.try_wait().unwrap(), None, "the stranger must still run");
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

#[test]
fn sigusr2_exits_leaving_vassals_for_the_next_emperor() {
    let h = Harness::new();
    put(&h.vassal("u.ini"), &uwsgi_ini(""));
    put(&h.vassal("n.ini"), &native_ini());
    let mut first = h.spawn_dir(&[], &[]);
    let u = h.wait_start("u.ini").pid;
    let n = h.wait_start("n.ini").pid;
    kill(first.pid(), libc::SIGUSR2);
    assert!(first.wait_exit().success(), "SIGUSR2 exits 0");
    assert!(alive(u) && alive(n), "vassals keep running after an upgrade exit");

    let _second = h.spawn_dir(&[], &[]);
    wait_log(&h, "vassal re-adopted", 2);
    touch(&h.vassal("u.ini"));
    assert_eq!(h.wait_event("u.ini", "recv 1", |e| e.is_recv(1)).pid, u);
    assert_eq!(h.starts("n.ini").len(), 1);
}

#[test]
fn a_second_emperor_on_the_same_state_dir_refuses_to_start() {
    let h = Harness::new();
    put(&h.vassal("u.ini"), &uwsgi_ini(""));
    let _first = h.spawn_dir(&[], &[]);
    h.wait_start("u.ini");
    let out = h.command(&[&h.dir_source()]).stderr(std::process::Stdio::piped()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another emperor"), "unexpected message: {err}");
    assert_eq!(our_vassals(&h).len(), 1, "no duplicate vassal");
}

#[test]
fn an_unreadable_state_dir_is_refused_and_reset_moves_it_aside() {
    let h = Harness::new();
    put(&h.vassal("u.ini"), &uwsgi_ini(""));
    fs::write(h.state.join("state.sled"), "not a database").unwrap();
    let out = h.command(&[&h.dir_source()]).stderr(std::process::Stdio::piped()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--reset-state"), "the message names the way out: {err}");

    let _run = h.spawn_dir(&["--reset-state"], &[]);
    h.wait_start("u.ini");
    let aside = fs::read_dir(&h.state)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("state.sled.broken-"));
    assert!(aside, "the broken store was moved aside");
}

#[test]
fn readoption_of_many_vassals_is_measured() {
    let h = Harness::new();
    const N: usize = 50;
    for i in 0..N {
        put(&h.vassal(&format!("v{i}.ini")), &uwsgi_ini(""));
    }
    let first = h.spawn_dir(&[], &[]);
    wait_until(Duration::from_secs(30), "every vassal started", || cond(our_vassals(&h).len() == N));
    first.kill9();
    let started = std::time::Instant::now();
    let _second = h.spawn_dir(&[], &[]);
    wait_log(&h, "emperor started", 2);
    eprintln!("re-adoption of {N} vassals: {:?} to 'emperor started'", started.elapsed());
    let restarts: usize = (0..N).map(|i| h.starts(&format!("v{i}.ini")).len() - 1).sum();
    assert_eq!(restarts, 0, "no vassal restarted");
}

#[test]
fn readoption_takes_one_fd_per_uwsgi_vassal() {
    // 50 vassals under 128 fds: their control channels fit once, not
    // twice, and not with a pidfd each beside them.
    let mut h = Harness::new();
    const N: usize = 50;
    let names: Vec<String> = (0..N).map(|i| format!("v{i:02}.ini")).collect();
    for name in &names {
        put(&h.vassal(name), &uwsgi_ini(""));
    }
    let source = h.dir_source();
    h.start_after("ulimit -n 128", &[&source]);
    let pids: Vec<i32> = names.iter().map(|n| h.wait_start(n).pid).collect();
    h.kill9_emperor();
    h.start_after("ulimit -n 128", &[&source]);
    wait_log(&h, &format!("re-adoption done adopted={N} gone=0"), 1);
    for (name, pid) in names.iter().zip(&pids) {
        assert!(alive(*pid), "{name} must still run");
        assert_eq!(h.starts(name).len(), 1, "{name} must not be restarted");
        assert!(h.events_of(name, "eof").is_empty(), "{name} lost its control channel");
    }
    // An adopted vassal's death is seen through its channel's hang-up.
    kill(pids[0], libc::SIGKILL);
    let again = h.wait_starts(&names[0], 2);
    assert_ne!(again[1].pid, pids[0]);
    touch(&h.vassal(&names[1]));
    assert_eq!(h.wait_event(&names[1], "recv 1 after the re-adoption", |e| e.is_recv(1)).pid, pids[1]);
}

#[test]
fn a_source_missing_at_start_serves_its_last_known_snapshot() {
    let h = Harness::new();
    put(&h.vassal("u.ini"), &uwsgi_ini(""));
    let first = h.spawn_dir(&[], &[]);
    let pid = h.wait_start("u.ini").pid;
    first.kill9();
    // The directory is gone when the emperor comes back (an unmounted
    // volume, a checkout being replaced): nothing may be stopped.
    let away = h.root.join("away");
    fs::rename(&h.vassals, &away).unwrap();
    let _second = h.spawn_dir(&[], &[]);
    wait_log(&h, "vassal re-adopted", 1);
    wait_log(&h, "cannot list the source yet", 1);
    assert!(alive(pid), "the vassal keeps running on the last known snapshot");
    // The directory returns with the config removed: now it is stopped.
    fs::remove_file(away.join("u.ini")).unwrap();
    fs::rename(&away, &h.vassals).unwrap();
    h.wait_dead(pid, "vassal whose config is gone");
}
