//! Native vassals (a `vassal` section with `exec`) in every config syntax.

mod common;

use common::*;
use std::fs;

/// `STUB native <args>` as one shell-words string.
fn exec_line(args: &str) -> String {
    format!("{STUB} native {args}")
}

/// Waits for `name` to start and checks it runs the stub in native mode with
/// `args`.
fn assert_native_start(h: &Harness, name: &str, args: &str) -> Event {
    let start = h.wait_start(name);
    assert_eq!(start.argv(), format!("native {args}"), "argv of {name}");
    assert_eq!(cmdline(start.pid), [STUB, "native"].into_iter().chain(args.split(' ')).collect::<Vec<_>>());
    assert!(alive(start.pid));
    start
}

#[test]
fn native_ini_runs_exec() {
    let mut h = Harness::new();
    put(&h.vassal("app.ini"), &format!("[vassal]\nexec = {}\n", exec_line("from-ini")));
    h.start_dir(&[]);
    assert_native_start(&h, "app.ini", "from-ini");
}

#[test]
fn native_yaml_runs_exec() {
    let mut h = Harness::new();
    let yaml = format!("vassal:\n  exec:\n    - {STUB}\n    - native\n    - from-yaml\n");
    put(&h.vassal("app.yaml"), &yaml);
    h.start_dir(&[]);
    assert_native_start(&h, "app.yaml", "from-yaml");
}

#[test]
fn native_xml_runs_exec_with_env() {
    let mut h = Harness::new();
    let xml = format!(
        "<vassal>\n  <exec>{}</exec>\n  <env>XML_ONE=1</env>\n  <env>XML_TWO=two</env>\n</vassal>\n",
        exec_line("from-xml")
    );
    put(&h.vassal("app.xml"), &xml);
    h.start_dir(&[]);
    let start = assert_native_start(&h, "app.xml", "from-xml");
    assert_eq!(env_of(start.pid, "XML_ONE").as_deref(), Some("1"));
    assert_eq!(env_of(start.pid, "XML_TWO").as_deref(), Some("two"));
}

#[test]
fn native_json_runs_exec() {
    let mut h = Harness::new();
    let json = format!("{{\"vassal\": {{\"exec\": [\"{STUB}\", \"native\", \"from-json\"]}}}}\n");
    put(&h.vassal("app.json"), &json);
    h.start_dir(&[]);
    assert_native_start(&h, "app.json", "from-json");
}

#[test]
fn native_toml_runs_exec() {
    let mut h = Harness::new();
    put(&h.vassal("app.toml"), &format!("[vassal]\nexec = \"{}\"\n", exec_line("from-toml")));
    h.start_dir(&[]);
    assert_native_start(&h, "app.toml", "from-toml");
}

#[test]
fn native_env_and_chdir_take_effect() {
    let mut h = Harness::new();
    let work = h.root.join("workdir");
    fs::create_dir(&work).unwrap();
    let ini = format!(
        "[vassal]\nexec = {}\nenv = GREETING=hello world\nenv = ANSWER=42\nchdir = {}\n",
        exec_line("envtest"),
        work.display()
    );
    put(&h.vassal("app.ini"), &ini);
    h.start_dir(&[]);
    let start = assert_native_start(&h, "app.ini", "envtest");
    assert_eq!(start.cwd(), work.to_str().unwrap(), "chdir should set the cwd");
    assert_eq!(cwd_of(start.pid).as_deref(), Some(work.as_path()));
    assert_eq!(env_of(start.pid, "GREETING").as_deref(), Some("hello world"));
    assert_eq!(env_of(start.pid, "ANSWER").as_deref(), Some("42"));
    let vassal = env_of(start.pid, "EMPEROR_VASSAL").expect("EMPEROR_VASSAL set for native vassals");
    assert!(vassal.starts_with("app.ini:"), "EMPEROR_VASSAL={vassal}");
}

#[test]
fn native_default_cwd_is_config_dir() {
    let mut h = Harness::new();
    put(&h.vassal("app.ini"), &format!("[vassal]\nexec = {}\n", exec_line("cwd")));
    h.start_dir(&[]);
    let start = h.wait_start("app.ini");
    assert_eq!(start.cwd(), h.vassals.to_str().unwrap());
}

#[test]
fn native_reload_signal_keeps_pid() {
    let mut h = Harness::new();
    let path = h.vassal("app.ini");
    put(&path, &format!("[vassal]\nexec = {}\nreload = SIGHUP\n", exec_line("hup")));
    h.start_dir(&[]);
    let pid = h.wait_start("app.ini").pid;

    touch(&path);
    let hup = h.wait_event("app.ini", "sighup after touch", |e| e.kind == "sighup");
    assert_eq!(hup.pid, pid);
    assert!(alive(pid));
    assert_eq!(h.starts("app.ini").len(), 1, "reload = SIGHUP must not restart");
    assert!(h.events_of("app.ini", "sigterm").is_empty());
}

#[test]
fn native_default_reload_restarts() {
    let mut h = Harness::new();
    let path = h.vassal("app.yaml");
    let yaml = |arg: &str| format!("vassal:\n  exec:\n    - {STUB}\n    - native\n    - {arg}\n");
    put(&path, &yaml("v1"));
    h.start_dir(&[]);
    let first = h.wait_start("app.yaml");

    put(&path, &yaml("v2"));
    let starts = h.wait_starts("app.yaml", 2);
    let second = &starts[1];
    assert_ne!(second.pid, first.pid, "default native reload is a restart");
    assert_eq!(second.argv(), "native v2", "the restart must use the new config");
    assert!(second.gen > first.gen);
    assert!(
        h.events_of("app.yaml", "sigterm").iter().any(|e| e.pid == first.pid),
        "the old process should have been stopped with SIGTERM"
    );
    h.wait_reaped(first.pid, "old generation");
    assert!(alive(second.pid));
}

#[test]
fn native_stop_sends_sigterm_and_reaps() {
    let mut h = Harness::new();
    let path = h.vassal("app.ini");
    put(&path, &format!("[vassal]\nexec = {}\n", exec_line("stop")));
    h.start_dir(&[]);
    let pid = h.wait_start("app.ini").pid;

    fs::remove_file(&path).unwrap();
    h.wait_event("app.ini", "sigterm after delete", |e| e.kind == "sigterm" && e.pid == pid);
    h.wait_reaped(pid, "stopped native vassal");
    assert!(h.events_of("app.ini", "exit").iter().any(|e| e.pid == pid && e.details == "code=0"));
}

#[test]
fn native_stop_signal_and_stop_timeout() {
    let mut h = Harness::new();
    let path = h.vassal("app.ini");
    let ini = format!("[vassal]\nexec = {}\nstop-signal = SIGUSR1\nstop-timeout = 1\n", exec_line("usr1"));
    put(&path, &ini);
    // The emperor-wide timeout is long: only the per-vassal one can end this.
    h.start_dir(&["--stop-timeout", "60"]);
    let pid = h.wait_start("app.ini").pid;

    fs::remove_file(&path).unwrap();
    h.wait_event("app.ini", "sigusr1 (stop-signal) after delete", |e| e.kind == "sigusr1");
    h.wait_reaped(pid, "vassal that ignores its stop signal (SIGKILL after stop-timeout)");
    assert!(h.events_of("app.ini", "exit").is_empty(), "it must have been SIGKILLed");
}

#[test]
fn native_ignore_stop_is_sigkilled() {
    let mut h = Harness::new();
    let path = h.vassal("app.ini");
    put(&path, &format!("[vassal]\nexec = {}\n", exec_line("--ignore-stop")));
    h.start_dir(&["--stop-timeout", "0.3"]);
    let pid = h.wait_start("app.ini").pid;

    fs::remove_file(&path).unwrap();
    h.wait_event("app.ini", "sigterm after delete", |e| e.kind == "sigterm");
    h.wait_reaped(pid, "SIGTERM-ignoring native vassal");
    assert!(h.events_of("app.ini", "exit").is_empty(), "it must have been SIGKILLed");
}

#[test]
fn native_stop_signals_the_process_group() {
    let mut h = Harness::new();
    let path = h.vassal("app.ini");
    put(&path, &format!("[vassal]\nexec = {}\n", exec_line("--child")));
    h.start_dir(&["--stop-timeout", "0.3"]);
    let pid = h.wait_start("app.ini").pid;
    let child = h.wait_event("app.ini", "child record", |e| e.kind == "child").child_pid().unwrap();
    assert!(alive(child));

    fs::remove_file(&path).unwrap();
    h.wait_reaped(pid, "stopped native vassal");
    h.wait_dead(child, "child of the stopped native vassal");
}

#[test]
fn native_crash_respawns() {
    let mut h = Harness::new();
    put(&h.vassal("app.ini"), &format!("[vassal]\nexec = {}\n", exec_line("--exit-after-ms 50")));
    h.start_dir(&["--backoff-min", "0.1"]);
    let starts = h.wait_starts("app.ini", 2);
    assert!(starts[1].gen > starts[0].gen);
    h.wait_reaped(starts[0].pid, "crashed native vassal");
    assert!(h.events_of("app.ini", "exit").iter().any(|e| e.pid == starts[0].pid && e.details == "code=3"));
}
