//! Vassal logs with the real binary: built-in size rotation through a pipe
//! (every line once, in order, across `<name>.log*`; the oldest dropped past
//! `--log-keep`; nothing lost across a `kill -9` of the emperor and a
//! re-adoption), the default file mode, and `--log-format json`.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LINES: u32 = 20_000;
const MAX_SIZE: u64 = 4096;

/// A native vassal printing `count` numbered lines, pausing `pause_ms` every 1000 bytes.
fn printer(count: u32, pause_ms: u64) -> String {
    format!("[vassal]\nexec = {STUB} native --print-lines {count} --print-pause-ms {pause_ms}\n")
}

/// `n.ini`'s logs, oldest first: `n.ini.log.K` … `n.ini.log.1`, `n.ini.log`,
/// with their numbers (0 for the current one).
fn log_files(h: &Harness) -> Vec<(u32, PathBuf)> {
    let dir = h.state.join("logs");
    let mut files: Vec<(u32, PathBuf)> = fs::read_dir(&dir)
        .expect("log dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let rest = name.strip_prefix("n.ini.log")?;
            let n = if rest.is_empty() { 0 } else { rest.strip_prefix('.')?.parse().ok()? };
            Some((n, dir.join(&name)))
        })
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    files
}

/// The numbered lines in `n.ini`'s logs, oldest first (the stub's other output left out).
fn logged_numbers(h: &Harness) -> Vec<u32> {
    let text: String = log_files(h).iter().map(|(_, path)| fs::read_to_string(path).unwrap_or_default()).collect();
    text.lines().filter_map(|l| l.parse().ok()).collect()
}

/// Waits until the logs hold line `last` (the vassal printed and the emperor wrote it all).
fn wait_logged(h: &Harness, last: u32, within: Duration, every_line: bool) -> Vec<u32> {
    // A listing taken while the emperor shifts `.N` → `.N+1` can miss a
    // file: when every line is kept, wait until they can all be there (the
    // caller then checks them).
    wait_until(within, format!("lines 1 to {last} in the logs"), || {
        let numbers = logged_numbers(h);
        (numbers.last() == Some(&last) && (!every_line || numbers.len() >= last as usize)).then_some(numbers)
    })
}

/// Every log is `0640`, at most `MAX_SIZE` long and made of whole lines.
fn assert_rotated_files(files: &[(u32, PathBuf)]) {
    for (_, path) in files {
        let text = fs::read(path).unwrap();
        assert!(text.len() as u64 <= MAX_SIZE, "{} has {} bytes", path.display(), text.len());
        assert!(text.is_empty() || text.ends_with(b"\n"), "{} ends mid-line", path.display());
        assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o640, "{}", path.display());
    }
}

/// What fd 1 of `pid` is.
fn stdout_of(pid: i32) -> String {
    fs::read_link(format!("/proc/{pid}/fd/1")).map(|p| p.display().to_string()).unwrap_or_default()
}

#[test]
fn rotation_keeps_every_line_once_and_in_order() {
    let mut h = Harness::new();
    put(&h.vassal("n.ini"), &printer(LINES, 0));
    h.start_dir(&["--log-max-size", "4K", "--log-keep", "50"]);
    let pid = h.wait_start("n.ini").pid;
    assert!(stdout_of(pid).starts_with("pipe:"), "stdout is {}", stdout_of(pid));
    let pipes: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| Some(fs::read_link(e.ok()?.path()).ok()?.display().to_string()))
        .filter(|target| target.starts_with("pipe:"))
        .collect();
    assert_eq!(pipes, [stdout_of(pid), stdout_of(pid)], "stdout and stderr are the one pipe, no other leaks in");
    h.wait_event("n.ini", "printed", |e| e.kind == "printed");
    let numbers = wait_logged(&h, LINES, DEADLINE, true);
    assert_eq!(numbers, (1..=LINES).collect::<Vec<_>>(), "every line exactly once, in order");
    let files = log_files(&h);
    assert!(files.len() > 20, "rotated into many files: {}", files.len());
    assert!(files.iter().all(|(n, _)| *n <= 50), "nothing beyond .50: {files:?}");
    assert_rotated_files(&files);
    let first = fs::read_to_string(&files[0].1).unwrap();
    assert!(first.starts_with(&format!("stub vassal pid {pid} started")), "{first}");
}

#[test]
fn rotation_drops_the_oldest_beyond_keep() {
    let mut h = Harness::new();
    put(&h.vassal("n.ini"), &printer(LINES, 0));
    h.start_dir(&["--log-max-size", "4K", "--log-keep", "3"]);
    h.wait_event("n.ini", "printed", |e| e.kind == "printed");
    let numbers = wait_logged(&h, LINES, DEADLINE, false);
    let files = log_files(&h);
    assert_eq!(files.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [3, 2, 1, 0], "{files:?}");
    assert_rotated_files(&files);
    let first = numbers[0];
    assert!(first > 1, "the oldest lines were dropped");
    assert_eq!(numbers, (first..=LINES).collect::<Vec<_>>(), "the newest lines, each once, in order");
}

#[test]
fn an_emperor_kill9_mid_output_loses_no_line_and_keeps_the_vassal() {
    let h = Harness::new();
    // 120 writes of 1000 bytes, 10 ms apart: over a second of output.
    put(&h.vassal("n.ini"), &printer(LINES, 10));
    let args = ["--log-max-size", "4K", "--log-keep", "50"];
    let first = h.spawn_dir(&args, &[]);
    let pid = h.wait_start("n.ini").pid;
    wait_until(DEADLINE, "1000 lines logged", || cond(logged_numbers(&h).len() >= 1000));
    first.kill9();
    assert!(h.events_of("n.ini", "printed").is_empty(), "the emperor must die while the vassal still prints");
    assert!(alive(pid), "the vassal outlives the emperor");

    let _second = h.spawn_dir(&args, &[]);
    h.wait_event("n.ini", "printed", |e| e.kind == "printed");
    let numbers = wait_logged(&h, LINES, DEADLINE, true);
    assert_eq!(numbers, (1..=LINES).collect::<Vec<_>>(), "every line exactly once, in order");
    assert_rotated_files(&log_files(&h));
    assert!(alive(pid), "the vassal still runs");
    assert_eq!(h.starts("n.ini").len(), 1, "the vassal was re-adopted, not restarted");
    assert!(h.events_of("n.ini", "print-failed").is_empty(), "the vassal's writes never failed");
}

#[test]
fn without_rotation_the_vassal_writes_its_log_file_itself() {
    let mut h = Harness::new();
    put(&h.vassal("n.ini"), &printer(100, 0));
    h.start_dir(&[]);
    let pid = h.wait_start("n.ini").pid;
    let log = h.state.join("logs/n.ini.log");
    assert_eq!(Path::new(&stdout_of(pid)), log);
    h.wait_event("n.ini", "printed", |e| e.kind == "printed");
    assert_eq!(logged_numbers(&h), (1..=100).collect::<Vec<_>>());
    assert_eq!(log_files(&h).len(), 1);
}

#[test]
fn json_log_lines_parse_and_carry_the_vassal() {
    let mut h = Harness::new();
    put(&h.vassal("n.ini"), &printer(1, 0));
    h.start_dir(&["--log-format", "json"]);
    h.wait_start("n.ini");
    let spawned = wait_until(DEADLINE, "a JSON line for the spawn", || {
        h.log_text().lines().find(|l| l.contains("vassal spawned")).map(str::to_owned)
    });
    let line: serde_json::Value = serde_json::from_str(&spawned).expect("a JSON object");
    assert_eq!(line["vassal"], "n.ini", "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(line["pid"].is_u64() && line["timestamp"].is_string() && line["target"].is_string(), "{line}");
    for text in h.log_text().lines() {
        let value: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(value["message"].is_string(), "{text}");
    }
}

#[test]
fn output_of_a_vassal_that_died_while_the_emperor_was_down_still_reaches_its_log() {
    let h = Harness::new();
    // 5000 lines (30 000 bytes) fit in the pipe while no emperor reads it.
    put(&h.vassal("n.ini"), &printer(5000, 20));
    let args = ["--log-max-size", "4K", "--log-keep", "50"];
    let first = h.spawn_dir(&args, &[]);
    let pid = h.wait_start("n.ini").pid;
    first.kill9();
    h.wait_event("n.ini", "printed", |e| e.kind == "printed");
    kill(pid, libc::SIGKILL);
    h.wait_dead(pid, "the vassal");
    // Its successor prints nothing: every numbered line is the dead one's.
    put(&h.vassal("n.ini"), &printer(0, 0));

    let _second = h.spawn_dir(&args, &[]);
    h.wait_starts("n.ini", 2);
    let numbers = wait_logged(&h, 5000, DEADLINE, true);
    assert_eq!(numbers, (1..=5000).collect::<Vec<_>>(), "every line of the dead vassal, once, in order");
}
