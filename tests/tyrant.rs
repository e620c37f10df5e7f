//! Tyrant mode and option injection against the real binary, as root:
//! vassals run as the owner of their config file, of their pg:// row or of
//! their zmq:// message (checked in `/proc/PID/status`), root and missing
//! owners are held with their reason, a change of owner restarts the vassal
//! under its new identity, and an emperor without root refuses the mode.
//! Then where `--vassals-*` options land in a uWSGI-style vassal's argv, and
//! which files `.js` and `--extra-extension` make vassals.

mod common;
#[path = "brokers/libzmq.rs"]
mod libzmq;
mod servers;

use common::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{chown, lchown, symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The options of the tyrant emperors of these tests.
const TYRANT: [&str; 3] = ["--tyrant", "--vassal-umask", "0"];

/// `nobody`: a uid with a passwd entry, whose primary group is 65534.
const NOBODY: u32 = 65534;
/// A uid and gid no passwd or group entry names.
const NO_ENTRY: u32 = 4_000_123;

/// A harness whose vassals may run as any user: its temp dir and vassals
/// dir are searchable by all, and the stub may record there (emperors
/// started with [`TYRANT`] give vassals umask 0, so a vassal running as the
/// next owner can still append to the records of the previous one).
fn open_harness() -> Harness {
    let h = Harness::new();
    for (dir, mode) in [(&h.root, 0o755), (&h.vassals, 0o755), (&h.record, 0o777)] {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).expect("chmod test dir");
    }
    h
}

/// Writes an uWSGI-style config at `path`, owned by `uid`:`gid`.
fn put_owned(path: &Path, tag: &str, uid: u32, gid: u32) {
    put(path, &uwsgi_ini(&format!("# {tag}")));
    chown(path, Some(uid), Some(gid)).expect("chown config");
}

/// A line of `/proc/PID/status` (`Uid:`, `Gid:`, `Groups:`), spaces folded.
fn status_line(pid: i32, key: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_default();
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks that `pid` runs as `uid`/`gid` (real, effective, saved and fs ids)
/// with exactly the supplementary groups `groups`.
fn assert_runs_as(pid: i32, uid: u32, gid: u32, groups: &[u32]) {
    assert_eq!(status_line(pid, "Uid:"), format!("{uid} {uid} {uid} {uid}"), "Uid of {pid}");
    assert_eq!(status_line(pid, "Gid:"), format!("{gid} {gid} {gid} {gid}"), "Gid of {pid}");
    let mut expected = groups.to_vec();
    expected.sort_unstable();
    let expected: Vec<String> = expected.iter().map(u32::to_string).collect();
    assert_eq!(status_line(pid, "Groups:"), expected.join(" "), "Groups of {pid}");
}

/// The groups `id -G USER` reports: what initgroups gives a user whose
/// primary group is the one its passwd entry names.
fn groups_of(user: &str) -> Vec<u32> {
    let out = Command::new("id").args(["-G", user]).output().expect("run id");
    assert!(out.status.success(), "id -G {user}");
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(|g| g.parse().expect("numeric gid")).collect()
}

/// `emperor ctl list -o json`, once the control socket answers.
fn list(h: &Harness) -> Vec<Value> {
    wait_until(DEADLINE, "ctl list -o json to answer", || {
        let out = Command::new(EMPEROR)
            .arg("ctl")
            .arg("--control-socket")
            .arg(h.state.join("control.sock"))
            .args(["list", "-o", "json"])
            .output()
            .expect("run emperor ctl");
        out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("a JSON array"))
    })
}

/// Waits until `name` is held, and returns the reason `ctl list` gives.
fn held_reason(h: &Harness, name: &str) -> String {
    wait_until(DEADLINE, format!("{name} to be held"), || {
        let held = list(h).into_iter().find(|v| v["name"] == name && v["state"] == "held")?;
        Some(held["reason"].as_str().unwrap_or_default().to_owned())
    })
}

/// Checks that `name` is held because of `why`, with one warning in the log
/// and no start.
fn assert_refused(h: &Harness, name: &str, why: &str) {
    let reason = held_reason(h, name);
    assert!(reason.contains(name) && reason.contains(why), "{name} held because {why:?}: {reason}");
    let log = h.log_text();
    let warnings =
        log.lines().filter(|l| l.contains("vassal refused") && l.contains(&format!("vassal={name}"))).count();
    assert_eq!(warnings, 1, "one warning for {name}:\n{log}");
    assert!(h.starts(name).is_empty(), "{name} never starts");
}

/// Waits for the second start of `name`, after its first process `first`
/// was stopped (not reloaded: a new identity takes a new process).
fn wait_restarted(h: &Harness, name: &str, first: i32) -> i32 {
    let starts = h.wait_starts(name, 2);
    h.wait_reaped(first, "the process of the previous owner");
    assert_ne!(starts[1].pid, first);
    assert!(h.events(name).iter().all(|e| !e.is_recv(1)), "an owner change restarts, never reloads");
    starts[1].pid
}

#[test]
fn file_owners_are_the_identity_and_a_chown_restarts() {
    let mut h = open_harness();
    let app = h.vassal("app.ini");
    put_owned(&app, "tyrant", NOBODY, NOBODY);
    h.start_dir(&TYRANT);
    let first = h.wait_start("app.ini").pid;
    assert_runs_as(first, NOBODY, NOBODY, &groups_of("nobody"));

    // A chown alone (inotify IN_ATTRIB): the vassal comes back as the new
    // owner, who has no passwd entry, hence no supplementary group.
    chown(&app, Some(NO_ENTRY), Some(NO_ENTRY)).unwrap();
    let second = wait_restarted(&h, "app.ini", first);
    assert_runs_as(second, NO_ENTRY, NO_ENTRY, &[]);
}

#[test]
fn root_owned_configs_are_held_with_the_reason() {
    let mut h = open_harness();
    put(&h.vassal("root.ini"), &uwsgi_ini("# owned by root, who runs the test"));
    put_owned(&h.vassal("gid0.ini"), "group root", NOBODY, 0);
    put_owned(&h.vassal("ok.ini"), "nobody", NOBODY, NOBODY);
    h.start_dir(&TYRANT);
    h.wait_start("ok.ini");
    assert_refused(&h, "root.ini", "uid 0 or gid 0");
    assert_refused(&h, "gid0.ini", "uid 0 or gid 0");

    // Given to nobody, the held vassal starts (a new owner is a new version).
    chown(h.vassal("root.ini"), Some(NOBODY), Some(NOBODY)).unwrap();
    let pid = h.wait_start("root.ini").pid;
    assert_runs_as(pid, NOBODY, NOBODY, &groups_of("nobody"));
}

#[test]
fn native_uid_keys_work_with_and_without_tyrant() {
    let native = |uid: &str| format!("[vassal]\nexec = {STUB} native\nuid = {uid}\n");
    // Without tyrant mode the keys name whom to run as.
    let mut plain = open_harness();
    put(&plain.vassal("web.ini"), &native("nobody"));
    plain.start_dir(&["--vassal-umask", "0"]);
    assert_runs_as(plain.wait_start("web.ini").pid, NOBODY, NOBODY, &groups_of("nobody"));

    // In tyrant mode they may only name the owner.
    let mut h = open_harness();
    put(&h.vassal("web.ini"), &native("nobody"));
    put(&h.vassal("evil.ini"), &native("root"));
    for name in ["web.ini", "evil.ini"] {
        chown(h.vassal(name), Some(NOBODY), Some(NOBODY)).unwrap();
    }
    h.start_dir(&TYRANT);
    assert_runs_as(h.wait_start("web.ini").pid, NOBODY, NOBODY, &groups_of("nobody"));
    assert_refused(&h, "evil.ini", "its owner is 65534:65534");
}

#[test]
fn tyrant_nofollow_takes_the_owner_of_the_link() {
    let mut h = open_harness();
    let target = h.root.join("app.ini");
    put_owned(&target, "behind a link", NOBODY, NOBODY);
    let link = h.vassal("app.ini");
    symlink(&target, &link).unwrap();
    lchown(&link, Some(NO_ENTRY), Some(NO_ENTRY)).unwrap();
    h.start_dir(&[&TYRANT[..], &["--tyrant-nofollow"]].concat());
    let pid = h.wait_start("app.ini").pid;
    assert_runs_as(pid, NO_ENTRY, NO_ENTRY, &[]);
}

#[test]
fn pg_rows_give_the_identity() {
    let pg = servers::Postgres::shared();
    let mut sql = pg.create_db("tyrant_rows");
    let cfg = servers::lit(&uwsgi_ini("# row"));
    sql.exec(&format!(
        "INSERT INTO vassals (name, config, uid, gid) VALUES ('app.ini', {cfg}, {NOBODY}, {NOBODY}), \
         ('anon.ini', {cfg}, NULL, NULL), ('root.ini', {cfg}, 0, {NOBODY})"
    ));
    let mut h = open_harness();
    let uri = format!(
        "pg://{};SELECT name, config, ts, uid, gid FROM vassals;listen=emperor_vassals",
        pg.conninfo("tyrant_rows")
    );
    h.start(&[&TYRANT[..], &[uri.as_str()]].concat());
    let first = h.wait_start("app.ini").pid;
    assert_runs_as(first, NOBODY, NOBODY, &groups_of("nobody"));
    assert_refused(&h, "anon.ini", "gives no owner");
    assert_refused(&h, "root.ini", "uid 0 or gid 0");

    sql.exec(&format!("UPDATE vassals SET uid = {NO_ENTRY}, gid = {} WHERE name = 'app.ini'", NO_ENTRY + 1));
    let second = wait_restarted(&h, "app.ini", first);
    assert_runs_as(second, NO_ENTRY, NO_ENTRY + 1, &[]);
}

#[test]
fn zmq_parts_give_the_identity() {
    let mut h = open_harness();
    let ep = libzmq::tcp_endpoint();
    h.start(&[&TYRANT[..], &[format!("zmq://{ep}").as_str()]].concat());
    wait_until(DEADLINE, "the zmq socket to be bound", || cond(h.log_text().contains("zmq PULL socket bound")));
    let cfg = uwsgi_ini("# message");
    let nobody = NOBODY.to_string();
    let send = |messages: &[Vec<&[u8]>]| libzmq::send(&h.root, &ep, messages, DEADLINE * 2);
    send(&[
        vec![b"touch", b"app.ini", cfg.as_bytes(), nobody.as_bytes(), nobody.as_bytes()],
        vec![b"touch", b"anon.ini", cfg.as_bytes()],
    ]);
    let first = h.wait_start("app.ini").pid;
    assert_runs_as(first, NOBODY, NOBODY, &groups_of("nobody"));
    assert_refused(&h, "anon.ini", "gives no owner");

    let other = NO_ENTRY.to_string();
    send(&[vec![b"touch", b"app.ini", cfg.as_bytes(), other.as_bytes(), other.as_bytes()]]);
    let second = wait_restarted(&h, "app.ini", first);
    assert_runs_as(second, NO_ENTRY, NO_ENTRY, &[]);
}

#[test]
fn tyrant_without_root_exits_at_start_with_the_reason() {
    let h = open_harness();
    let err_path = h.root.join("stderr");
    let mut emperor = Command::new(EMPEROR)
        .arg("--tyrant")
        .arg("--state-dir")
        .arg(h.root.join("nobody-state"))
        .arg(h.dir_source())
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start the emperor as nobody");
    let status = wait_until(DEADLINE, "the emperor to exit", || emperor.try_wait().unwrap());
    let stderr = fs::read_to_string(&err_path).unwrap();
    assert!(!status.success(), "{status}: {stderr}");
    assert!(stderr.contains("--tyrant") && stderr.contains("needs root"), "{stderr}");
}

#[test]
fn injected_options_go_where_upstream_puts_them() {
    let mut h = Harness::new();
    let app = h.vassal("app.ini");
    put(&app, &uwsgi_ini("# injected"));
    put(&h.vassal("web.ini"), &format!("[vassal]\nexec = {STUB} native plain\n"));
    h.start_dir(&[
        "--vassals-inherit",
        "/etc/i1.ini",
        "--vassals-include",
        "/etc/c1.ini",
        "--vassals-set",
        "a=1",
        "--vassals-inherit-before",
        "/etc/ib.ini",
        "--vassal-set",
        "b=x=y",
        "--vassals-inherit",
        "/etc/i2.ini",
        "--vassals-include-before",
        "/etc/cb.ini",
    ]);
    // The table of `uwsgi_emperor_spawn_vassal`: inherits and includes of
    // the -before lists, the sets, the config, then inherits and includes.
    let expected = format!(
        "--inherit /etc/ib.ini --include /etc/cb.ini --set a=1 --set b=x=y --ini {} \
         --inherit /etc/i1.ini --inherit /etc/i2.ini --include /etc/c1.ini",
        app.display()
    );
    assert_eq!(h.wait_start("app.ini").argv(), expected);
    assert_eq!(h.wait_start("web.ini").argv(), "native plain", "native vassals get no uWSGI options");
}

#[test]
fn js_is_json_and_extra_extensions_run_with_config() {
    let mut h = Harness::new();
    put(&h.vassal("app.js"), "{\"uwsgi\": {\"master\": true}}\n");
    put(&h.vassal("site.conf"), "[uwsgi]\nmaster = true\n");
    put(&h.vassal("other.cfg"), "[uwsgi]\nmaster = true\n");
    h.start_dir(&["--extra-extension", "conf"]);
    assert_eq!(h.wait_start("app.js").argv(), format!("--json {}", h.vassal("app.js").display()));
    assert_eq!(h.wait_start("site.conf").argv(), format!("--config {}", h.vassal("site.conf").display()));
    let mut names: Vec<String> = list(&h).iter().map(|v| v["name"].as_str().unwrap_or_default().to_owned()).collect();
    names.sort();
    assert_eq!(names, ["app.js", "site.conf"], "other.cfg is not a vassal");
}
