//! `glob://` sources: vassals named by their full path.

mod common;

use common::*;
use std::fs;
use std::path::PathBuf;

/// Creates `root/apps/<app>/app.ini` for each app and returns the paths.
fn apps(h: &Harness, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|app| {
            let dir = h.root.join("apps").join(app);
            fs::create_dir_all(&dir).unwrap();
            let path = dir.join("app.ini");
            put(&path, &uwsgi_ini(""));
            path
        })
        .collect()
}

/// Checks that `path`'s vassal is running from the config's directory.
fn assert_runs(h: &Harness, path: &std::path::Path) -> Event {
    let name = path.to_str().unwrap();
    let start = h.wait_start(name);
    let dir = path.parent().unwrap();
    assert_eq!(cwd_of(start.pid).as_deref(), Some(dir), "cwd of {name}");
    let args = cmdline(start.pid);
    assert_eq!(args[1], "--ini");
    assert_eq!(dir.join(&args[2]), path, "the --ini argument must name {name} (from cwd)");
    let vassal = env_of(start.pid, "EMPEROR_VASSAL").expect("EMPEROR_VASSAL");
    assert!(vassal.starts_with(&format!("{name}:")), "EMPEROR_VASSAL={vassal}");
    start
}

#[test]
fn glob_source_names_vassals_by_full_path() {
    let mut h = Harness::new();
    let paths = apps(&h, &["a", "b"]);
    put(&h.root.join("apps").join("a").join("other.ini"), &uwsgi_ini(""));
    let source = format!("glob://{}/apps/*/app.ini", h.root.display());
    h.start(&[&source]);
    for path in &paths {
        assert_runs(&h, path);
    }
    let mut expected: Vec<String> = paths.iter().map(|p| escape(p.to_str().unwrap())).collect();
    expected.sort();
    assert_eq!(h.recorded_names(), expected, "other.ini does not match the pattern");
}

#[test]
fn bare_pattern_is_a_glob_source() {
    let mut h = Harness::new();
    let paths = apps(&h, &["x"]);
    let pattern = format!("{}/apps/*/app.ini", h.root.display());
    h.start(&[&pattern]);
    assert_runs(&h, &paths[0]);
}

#[test]
fn log_dir_option_uses_escaped_names() {
    let mut h = Harness::new();
    let paths = apps(&h, &["logged"]);
    let logs = h.root.join("custom-logs");
    let source = format!("glob://{}/apps/*/app.ini", h.root.display());
    h.start(&["--log-dir", logs.to_str().unwrap(), &source]);
    let pid = assert_runs(&h, &paths[0]).pid;
    let log = logs.join(format!("{}.log", escape(paths[0].to_str().unwrap())));
    let expected = format!("stub vassal pid {pid} started");
    wait_until(DEADLINE, format!("{} to contain {expected:?}", log.display()), || {
        cond(fs::read_to_string(&log).unwrap_or_default().contains(&expected))
    });
}

#[test]
fn glob_match_with_wrong_extension_is_logged_and_skipped() {
    let mut h = Harness::new();
    let dir = h.root.join("mixed");
    fs::create_dir(&dir).unwrap();
    put(&dir.join("good.ini"), &uwsgi_ini(""));
    put(&dir.join("notes.txt"), &uwsgi_ini(""));
    let source = format!("glob://{}/*", dir.display());
    h.start(&[&source]);
    h.wait_start(dir.join("good.ini").to_str().unwrap());
    h.wait_complaint("notes.txt");
    assert!(h.emperor_running());
    assert_eq!(h.recorded_names(), [escape(dir.join("good.ini").to_str().unwrap())]);
}
