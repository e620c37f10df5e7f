//! Bad input is logged and never takes the emperor or other vassals down.

mod common;

use common::*;

fn native_ini(args: &str) -> String {
    format!("[vassal]\nexec = {STUB} native {args}\n")
}

/// A native section whose `exec` is not valid shell words.
const BROKEN_INI: &str = "[vassal]\nexec = \"unterminated quote\n";

#[test]
fn broken_native_ini_is_logged_and_not_spawned() {
    let mut h = Harness::new();
    put(&h.vassal("good.ini"), &uwsgi_ini(""));
    put(&h.vassal("broken.ini"), BROKEN_INI);
    h.start_dir(&[]);
    let good = h.wait_start("good.ini").pid;
    let line = h.wait_complaint("broken.ini");
    eprintln!("logged: {line}");

    assert!(h.emperor_running(), "a broken config must not stop the emperor");
    assert!(h.events("broken.ini").is_empty(), "broken.ini must not be spawned");
    // Still processing events afterwards.
    put(&h.vassal("later.ini"), &uwsgi_ini(""));
    h.wait_start("later.ini");
    assert!(h.events("broken.ini").is_empty(), "broken.ini must not be spawned");
    assert!(alive(good));
    assert_eq!(h.events("good.ini").len(), 1, "good.ini must be untouched");
}

#[test]
fn good_native_ini_changed_to_broken_keeps_running() {
    let mut h = Harness::new();
    let path = h.vassal("app.ini");
    put(&path, &native_ini("good"));
    h.start_dir(&[]);
    let pid = h.wait_start("app.ini").pid;

    put(&path, BROKEN_INI);
    h.wait_complaint("app.ini");
    assert!(alive(pid), "the previous good version must keep running");
    let events = h.events("app.ini");
    assert_eq!(events.len(), 1, "no stop, signal or restart expected: {events:?}");
    assert!(h.emperor_running());
}

#[test]
fn good_native_yaml_changed_to_unparseable_keeps_running() {
    let mut h = Harness::new();
    let path = h.vassal("app.yaml");
    put(&path, &format!("vassal:\n  exec: [{STUB}, native, good]\n"));
    h.start_dir(&[]);
    let pid = h.wait_start("app.yaml").pid;

    put(&path, "vassal:\n  exec: [unclosed, \n  - : : {\n");
    h.wait_complaint("app.yaml");
    assert!(alive(pid), "the previous good version must keep running");
    let events = h.events("app.yaml");
    assert_eq!(events.len(), 1, "no stop, signal or restart expected: {events:?}");
    assert!(h.emperor_running());
}

#[test]
fn nonexistent_exec_is_logged_and_others_unaffected() {
    let mut h = Harness::new();
    put(&h.vassal("good.ini"), &uwsgi_ini(""));
    h.start_dir(&[]);
    let good = h.wait_start("good.ini").pid;

    put(&h.vassal("bad.ini"), "[vassal]\nexec = /nonexistent/prog --flag\n");
    wait_until(DEADLINE, "an error log line naming bad.ini or /nonexistent/prog", || {
        let mut lines = h.complaints_about("bad.ini");
        lines.extend(h.complaints_about("/nonexistent/prog"));
        lines.into_iter().next()
    });
    put(&h.vassal("good2.ini"), &uwsgi_ini(""));
    h.wait_start("good2.ini");

    assert!(h.emperor_running());
    assert!(alive(good));
    assert_eq!(h.events("good.ini").len(), 1, "good.ini must be untouched");
    assert!(h.events("bad.ini").is_empty(), "nothing could have been run for bad.ini");
}
