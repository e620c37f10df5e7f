//! An idle store wakes no thread: sled's I/O threads sleep until there is
//! work (its own flusher is off, and the threads it keeps for good wait
//! without a timeout). Alone in its test binary, so that no other test's
//! writes give the shared I/O threads work while it watches them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long the idle store is watched: every I/O thread of an unpatched
/// sled wakes once a second, so three times or more in this window.
const WATCH: Duration = Duration::from_millis(3500);

/// The voluntary context switches of each of this process's sled I/O
/// threads, by thread id: one more each time a thread wakes from its wait.
fn sled_io_switches() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("sled-io") {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let switches =
            status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:")).and_then(|v| v.trim().parse().ok());
        if let Some(switches) = switches {
            out.insert(task.file_name().to_string_lossy().into_owned(), switches);
        }
    }
    out
}

#[test]
fn an_idle_store_wakes_no_sled_io_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = state::Store::open(dir.path()).unwrap();
    store.set_next_generation(7).unwrap();
    store.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let threads = sled_io_switches();
        if !threads.is_empty() {
            break threads;
        }
        assert!(Instant::now() < deadline, "sled started no I/O thread");
        std::thread::yield_now();
    };
    std::thread::sleep(WATCH); // the observation window, not a wait for anything
    let after = sled_io_switches();
    for (tid, was) in &before {
        let woke = after.get(tid).map_or(0, |now| now - was);
        // One wake-up at most: a thread may still be going back to sleep
        // after the flush's work when the window opens.
        assert!(woke <= 1, "sled I/O thread {tid} woke {woke} times in {WATCH:?} with nothing to do");
    }
    drop(store);
}
