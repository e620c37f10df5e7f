//! Crash injection: the emperor aborts at a chosen point of an action (a
//! failpoint, armed through `EMPEROR_FAILPOINTS`; needs the `failpoints`
//! feature), is restarted, and must converge on exactly one live process per
//! wanted vassal, with none left for removed configs and none of ours left
//! unmanaged.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::process::ExitStatus;

/// Starts an emperor on the harness's dir source, with `failpoint` armed if given.
fn emperor(h: &Harness, failpoint: Option<&str>) -> Run {
    match failpoint {
        Some(point) => h.spawn_dir(&[], &[("EMPEROR_FAILPOINTS", point)]),
        None => h.spawn_dir(&[], &[]),
    }
}

fn wait_abort(run: &mut Run) -> ExitStatus {
    let status = run.wait_exit();
    assert!(!status.success(), "the emperor must have aborted at its failpoint, got {status}");
    status
}

/// Waits until exactly `names` run, one process each, and returns their pids.
fn converged(h: &Harness, names: &[&str]) -> BTreeMap<String, i32> {
    wait_until(DEADLINE, format!("exactly one live process for each of {names:?}"), || {
        let found = our_vassals(h);
        let exact =
            found.keys().map(String::as_str).eq(names.iter().copied()) && found.values().all(|pids| pids.len() == 1);
        exact.then(|| found.into_iter().map(|(n, p)| (n, p[0])).collect())
    })
}

fn two_vassals(h: &Harness) {
    put(&h.vassal("a.ini"), &uwsgi_ini(""));
    put(&h.vassal("b.ini"), &uwsgi_ini(""));
}

/// A crash while a source's snapshot is recorded, before anything is spawned.
#[test]
fn crash_while_writing_a_snapshot() {
    let h = Harness::new();
    two_vassals(&h);
    let mut first = emperor(&h, Some("snapshot-written"));
    wait_abort(&mut first);
    let _second = emperor(&h, None);
    converged(&h, &["a.ini", "b.ini"]);
}

/// A crash after the spawn intent is written, before the fork.
#[test]
fn crash_after_the_spawn_intent() {
    let h = Harness::new();
    two_vassals(&h);
    let mut first = emperor(&h, Some("spawn-after-intent"));
    wait_abort(&mut first);
    let _second = emperor(&h, None);
    converged(&h, &["a.ini", "b.ini"]);
}

/// A crash after the fork, before the pid is recorded: the orphan must not
/// be duplicated.
#[test]
fn crash_after_spawn_before_the_pid_is_recorded() {
    let h = Harness::new();
    two_vassals(&h);
    let mut first = emperor(&h, Some("spawn-before-pid"));
    wait_abort(&mut first);
    let _second = emperor(&h, None);
    let pids = converged(&h, &["a.ini", "b.ini"]);
    // Whatever the first emperor left behind is either adopted or gone.
    for name in ["a.ini", "b.ini"] {
        for start in h.starts(name) {
            assert!(start.pid == pids[name] || dead(start.pid), "{name}: stray process {} left running", start.pid);
        }
    }
}

/// A crash in the middle of a reload: after the restart the vassal runs the
/// new config (it got the reload, or was restarted on it).
#[test]
fn crash_during_a_reload() {
    let h = Harness::new();
    put(&h.vassal("a.ini"), &uwsgi_ini(""));
    let mut first = emperor(&h, Some("reload-before-signal"));
    let before = h.wait_start("a.ini");
    touch(&h.vassal("a.ini"));
    wait_abort(&mut first);
    let _second = emperor(&h, None);
    let pids = converged(&h, &["a.ini"]);
    wait_until(DEADLINE, "a.ini to get the new config (reload or restart)", || {
        let reloaded = h.events("a.ini").iter().any(|e| e.is_recv(1) && e.pid == pids["a.ini"]);
        cond(reloaded || pids["a.ini"] != before.pid)
    });
}

/// A crash right after a stop was requested: the removed vassal is gone and
/// the other keeps running untouched.
#[test]
fn crash_during_a_stop() {
    let h = Harness::new();
    two_vassals(&h);
    let mut first = emperor(&h, Some("stop-after-signal"));
    let a = h.wait_start("a.ini").pid;
    let b = h.wait_start("b.ini").pid;
    fs::remove_file(h.vassal("b.ini")).unwrap();
    wait_abort(&mut first);
    let _second = emperor(&h, None);
    let pids = converged(&h, &["a.ini"]);
    assert_eq!(pids["a.ini"], a, "a.ini must be re-adopted, not restarted");
    h.wait_dead(b, "the removed vassal");
}
