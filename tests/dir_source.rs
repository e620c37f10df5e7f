//! `dir://` sources with uWSGI-style vassals: spawn, reload, stop, respawn,
//! backoff, forced kills, logs, late directories and GitOps symlink swaps.

mod common;

use common::*;
use std::fs;
use std::time::{Duration, Instant};

#[test]
fn spawns_vassal_with_ini_flag_cwd_and_env() {
    let mut h = Harness::new();
    put(&h.vassal("app.ini"), &uwsgi_ini(""));
    h.start_dir(&[]);

    let start = h.wait_start("app.ini");
    let pid = start.pid;
    assert!(alive(pid), "vassal pid {pid} should be running");
    let config = h.vassal("app.ini").display().to_string();
    assert_eq!(cmdline(pid)[1..], ["--ini", config.as_str()], "vassal argv");
    assert_eq!(cwd_of(pid).as_deref(), Some(h.vassals.as_path()), "vassal cwd");
    assert_eq!(start.argv(), format!("--ini {config}"));
    assert_eq!(start.cwd(), h.vassals.to_str().unwrap());

    let vassal_env = env_of(pid, "EMPEROR_VASSAL").expect("EMPEROR_VASSAL set");
    let (name, gen) = vassal_env.rsplit_once(':').expect("EMPEROR_VASSAL is name:generation");
    assert_eq!(name, "app.ini");
    assert_eq!(Some(gen.parse::<u64>().expect("numeric generation")), start.gen);
    let fd = env_of(pid, "UWSGI_EMPEROR_FD").expect("UWSGI_EMPEROR_FD set");
    assert!(
        fs::read_link(format!("/proc/{pid}/fd/{fd}")).is_ok(),
        "UWSGI_EMPEROR_FD={fd} is not an open fd of the vassal"
    );
}

#[test]
fn created_file_spawns_while_running() {
    let mut h = Harness::new();
    put(&h.vassal("sentinel.ini"), &uwsgi_ini(""));
    h.start_dir(&[]);
    h.wait_start("sentinel.ini");

    // A plain (non-atomic) write, as `cp` or `echo >` would do.
    fs::write(h.vassal("late.ini"), uwsgi_ini("")).unwrap();
    let start = h.wait_start("late.ini");
    assert!(alive(start.pid));
    assert_eq!(start.argv(), format!("--ini {}", h.vassal("late.ini").display()));
}

#[test]
fn touch_reloads_in_place() {
    let mut h = Harness::new();
    let path = h.vassal("app.ini");
    put(&path, &uwsgi_ini(""));
    h.start_dir(&[]);
    let pid = h.wait_start("app.ini").pid;

    touch(&path);
    let recv = h.wait_event("app.ini", "recv 1 (reload) after touch", |e| e.is_recv(1));
    assert_eq!(recv.pid, pid, "reload must reach the running process");
    h.wait_event("app.ini", "reloaded", |e| e.kind == "reloaded");
    assert!(alive(pid), "vassal must keep running after a graceful reload");
    assert_eq!(h.starts("app.ini").len(), 1, "a graceful reload must not respawn");
}

#[test]
fn content_change_reloads_in_place() {
    let mut h = Harness::new();
    let path = h.vassal("app.ini");
    put(&path, &uwsgi_ini(""));
    h.start_dir(&[]);
    let pid = h.wait_start("app.ini").pid;

    // In-place rewrite, as an editor saving over the file would do.
    fs::write(&path, uwsgi_ini("workers = 4")).unwrap();
    let recv = h.wait_event("app.ini", "recv 1 (reload) after content change", |e| e.is_recv(1));
    assert_eq!(recv.pid, pid);
    assert!(alive(pid));
    assert_eq!(h.starts("app.ini").len(), 1, "a graceful reload must not respawn");
}

#[test]
fn delete_stops_and_reaps() {
    let mut h = Harness::new();
    let path = h.vassal("app.ini");
    put(&path, &uwsgi_ini(""));
    h.start_dir(&[]);
    let pid = h.wait_start("app.ini").pid;

    fs::remove_file(&path).unwrap();
    let recv = h.wait_event("app.ini", "recv 0 (stop) after delete", |e| e.is_recv(0));
    assert_eq!(recv.pid, pid);
    h.wait_event("app.ini", "exit code=0", |e| e.kind == "exit");
    h.wait_reaped(pid, "deleted vassal");
    assert!(h.emperor_running());
    assert_eq!(h.starts("app.ini").len(), 1, "a deleted vassal must not be respawned");
}

#[test]
fn sigkilled_vassal_respawns_with_higher_generation() {
    let mut h = Harness::new();
    put(&h.vassal("app.ini"), &uwsgi_ini(""));
    h.start_dir(&[]);
    let first = h.wait_start("app.ini");

    kill(first.pid, libc::SIGKILL);
    let starts = h.wait_starts("app.ini", 2);
    let second = &starts[1];
    assert_ne!(second.pid, first.pid);
    assert!(alive(second.pid), "respawned vassal should be running");
    assert!(second.gen > first.gen, "generation must grow: first {:?}, second {:?}", first.gen, second.gen);
    h.wait_reaped(first.pid, "killed vassal");
}

#[test]
fn crash_loop_backs_off() {
    let mut h = Harness::new();
    put(&h.vassal("crash.ini"), &uwsgi_ini("stub-exit-after-ms = 10"));
    h.start_dir(&["--backoff-min", "0.2", "--backoff-max", "5", "--backoff-reset", "10"]);

    // Note when each start record first appears (2 ms polling).
    let t0 = Instant::now();
    let mut seen: Vec<Duration> = Vec::new();
    let starts =
        wait_every(DEADLINE, Duration::from_millis(2), "crash.ini: 4 starts of a crash-looping vassal", || {
            let starts = h.starts("crash.ini");
            while seen.len() < starts.len() {
                seen.push(t0.elapsed());
            }
            (starts.len() >= 4).then_some(starts)
        });
    eprintln!("crash loop: starts seen at {seen:?}");
    let gap = seen[3] - seen[2];
    assert!(
        gap >= Duration::from_millis(150),
        "3rd -> 4th start came after {gap:?}, expected a backoff of about 400 ms (>= 150 ms)"
    );
    let gens: Vec<_> = starts.iter().map(|s| s.gen).collect();
    assert!(gens.windows(2).all(|w| w[0] < w[1]), "generations must grow: {gens:?}");
    for s in &starts[..3] {
        h.wait_reaped(s.pid, "crashed vassal");
        assert!(
            h.events_of("crash.ini", "exit").iter().any(|e| e.pid == s.pid && e.details == "code=3"),
            "pid {} should have crashed with code 3",
            s.pid
        );
    }
}

#[test]
fn ignore_stop_is_sigkilled_after_stop_timeout() {
    let mut h = Harness::new();
    let path = h.vassal("stubborn.ini");
    put(&path, &uwsgi_ini("stub-ignore-stop = 1"));
    h.start_dir(&["--stop-timeout", "0.3"]);
    let pid = h.wait_start("stubborn.ini").pid;

    let deleted = Instant::now();
    fs::remove_file(&path).unwrap();
    h.wait_event("stubborn.ini", "recv 0 (stop)", |e| e.is_recv(0));
    h.wait_reaped(pid, "stop-ignoring vassal");
    let took = deleted.elapsed();
    eprintln!("stop-ignoring vassal gone {took:?} after delete");
    assert!(
        h.events_of("stubborn.ini", "exit").is_empty(),
        "the vassal must have been SIGKILLed, not exited by itself"
    );
    assert!(took >= Duration::from_millis(250), "killed after {took:?}, before the 0.3 s stop timeout");
}

#[test]
fn stop_kills_the_whole_process_group() {
    let mut h = Harness::new();
    let path = h.vassal("parent.ini");
    put(&path, &uwsgi_ini("stub-child = 1"));
    h.start_dir(&["--stop-timeout", "0.3"]);
    let pid = h.wait_start("parent.ini").pid;
    let child = h.wait_event("parent.ini", "child record", |e| e.kind == "child");
    let child_pid = child.child_pid().expect("child pid");
    assert!(alive(child_pid), "the vassal's child should be running");

    fs::remove_file(&path).unwrap();
    h.wait_reaped(pid, "stopped vassal");
    h.wait_dead(child_pid, "the stopped vassal's child (group kill)");
}

#[test]
fn vassal_output_goes_to_default_log_dir() {
    let mut h = Harness::new();
    put(&h.vassal("app.ini"), &uwsgi_ini(""));
    h.start_dir(&[]);
    let pid = h.wait_start("app.ini").pid;

    let log = h.state.join("logs").join("app.ini.log");
    let expected = format!("stub vassal pid {pid} started");
    wait_until(DEADLINE, format!("{} to contain {expected:?}", log.display()), || {
        cond(fs::read_to_string(&log).unwrap_or_default().contains(&expected))
    });
}

#[test]
fn other_extensions_are_ignored() {
    let mut h = Harness::new();
    put(&h.vassal("good.ini"), &uwsgi_ini(""));
    put(&h.vassal("notes.txt"), &uwsgi_ini(""));
    put(&h.vassal("app.ini.bak"), &uwsgi_ini(""));
    h.start_dir(&[]);
    h.wait_start("good.ini");
    // Barrier: a file created later is handled, so the ignored ones were seen.
    put(&h.vassal("later.yaml"), "uwsgi:\n  master: true\n");
    h.wait_start("later.yaml");
    put(&h.vassal("more.txt"), &uwsgi_ini(""));
    put(&h.vassal("later2.ini"), &uwsgi_ini(""));
    h.wait_start("later2.ini");
    assert_eq!(h.recorded_names(), ["good.ini", "later.yaml", "later2.ini"]);
}

#[test]
fn flag_follows_extension() {
    let mut h = Harness::new();
    put(&h.vassal("a.xml"), "<uwsgi><master>true</master></uwsgi>\n");
    put(&h.vassal("b.yml"), "uwsgi:\n  master: true\n");
    put(&h.vassal("c.yaml"), "uwsgi:\n  master: true\n");
    put(&h.vassal("d.json"), "{\"uwsgi\": {\"master\": true}}\n");
    h.start_dir(&[]);
    for (name, flag) in [("a.xml", "--xml"), ("b.yml", "--yaml"), ("c.yaml", "--yaml"), ("d.json", "--json")] {
        let start = h.wait_start(name);
        assert_eq!(start.argv(), format!("{flag} {}", h.vassal(name).display()), "argv of {name}");
        assert_eq!(cmdline(start.pid)[1..], [flag.to_owned(), h.vassal(name).display().to_string()]);
    }
}

#[test]
fn bare_directory_argument_is_a_dir_source() {
    let mut h = Harness::new();
    put(&h.vassal("app.ini"), &uwsgi_ini(""));
    let dir = h.vassals.to_str().unwrap().to_owned();
    h.start(&[&dir]);
    let pid = h.wait_start("app.ini").pid;
    // Dir sources are event-driven: a touch reloads.
    touch(&h.vassal("app.ini"));
    assert_eq!(h.wait_event("app.ini", "recv 1 after touch", |e| e.is_recv(1)).pid, pid);
}

#[test]
fn missing_dir_created_later_spawns() {
    let mut h = Harness::new();
    let later = h.root.join("not-yet");
    let source = format!("dir://{}", later.display());
    put(&h.vassal("sentinel.ini"), &uwsgi_ini(""));
    let present = h.dir_source();
    h.start(&["--resync", "1", &source, &present]);
    // Barrier: the other source's vassal runs, so start-up is over.
    h.wait_start("sentinel.ini");
    assert!(h.emperor_running(), "a missing watched directory must not be fatal");

    fs::create_dir(&later).unwrap();
    put(&later.join("app.ini"), &uwsgi_ini(""));
    let start = h.wait_start("app.ini");
    assert_eq!(start.cwd(), later.to_str().unwrap());
    assert!(alive(start.pid));
}

#[test]
fn symlink_swap_converges_on_new_target() {
    let mut h = Harness::new();
    let releases = h.root.join("releases");
    let (r1, r2, r3) = (releases.join("r1"), releases.join("r2"), releases.join("r3"));
    for r in [&r1, &r2, &r3] {
        fs::create_dir_all(r).unwrap();
    }
    let same = uwsgi_ini("# same everywhere");
    put(&r1.join("same.ini"), &same);
    put(&r1.join("changed.ini"), &uwsgi_ini("# version 1"));
    put(&r1.join("removed.ini"), &uwsgi_ini(""));
    put(&r2.join("same.ini"), &same);
    put(&r2.join("changed.ini"), &uwsgi_ini("# version 2"));
    put(&r2.join("added.ini"), &uwsgi_ini(""));
    // r3 = r2 + barrier.ini
    put(&r3.join("same.ini"), &same);
    put(&r3.join("changed.ini"), &uwsgi_ini("# version 2"));
    put(&r3.join("added.ini"), &uwsgi_ini(""));
    put(&r3.join("barrier.ini"), &uwsgi_ini(""));

    let current = h.root.join("current");
    let swap_to = |target: &std::path::Path| {
        let tmp = current.with_extension("tmp");
        std::os::unix::fs::symlink(target, &tmp).unwrap();
        fs::rename(&tmp, &current).unwrap(); // mv -T: atomic replace
    };
    std::os::unix::fs::symlink(&r1, &current).unwrap();
    let source = format!("dir://{}", current.display());
    h.start(&["--resync", "2", &source]);
    let same_pid = h.wait_start("same.ini").pid;
    let changed_pid = h.wait_start("changed.ini").pid;
    let removed_pid = h.wait_start("removed.ini").pid;

    swap_to(&r2);
    let recv = h.wait_event("changed.ini", "recv 1 (changed content reloaded)", |e| e.is_recv(1));
    assert_eq!(recv.pid, changed_pid);
    h.wait_event("removed.ini", "recv 0 (removed config stopped)", |e| e.is_recv(0));
    h.wait_reaped(removed_pid, "vassal of the removed config");
    let added = h.wait_start("added.ini");
    assert!(alive(added.pid));

    // Barrier: a second swap that only adds barrier.ini; once it is running,
    // everything before it has been processed.
    swap_to(&r3);
    h.wait_start("barrier.ini");
    let same_events = h.events("same.ini");
    assert!(
        !same_events.iter().any(|e| e.kind == "recv" || e.kind == "sigterm"),
        "identical config must not be reloaded or stopped: {same_events:?}"
    );
    assert_eq!(h.starts("same.ini").len(), 1);
    assert!(alive(same_pid));
    let changed_reloads = h.events("changed.ini").iter().filter(|e| e.is_recv(1)).count();
    assert_eq!(changed_reloads, 1, "changed.ini is identical in r2 and r3: one reload only");
    assert!(alive(changed_pid));
    assert_eq!(h.starts("changed.ini").len(), 1);
    assert_eq!(h.starts("added.ini").len(), 1, "added.ini is identical in r2 and r3");
    assert!(h.events("added.ini").iter().all(|e| e.kind != "recv"));
}

#[test]
fn a_vassal_that_stops_sending_heartbeats_is_killed_and_respawned() {
    let mut h = Harness::new();
    put(&h.vassal("hb.ini"), &uwsgi_ini("stub-heartbeat-ms = 50"));
    h.start_dir(&["--heartbeat-timeout", "0.5"]);
    let first = h.wait_start("hb.ini");
    wait_until(DEADLINE, "the emperor to notice the heartbeats", || {
        cond(h.log_text().contains("vassal sends heartbeats"))
    });
    // A frozen vassal sends no heartbeat any more.
    kill(first.pid, libc::SIGSTOP);
    let starts = h.wait_starts("hb.ini", 2);
    assert_ne!(starts[1].pid, first.pid);
    h.wait_reaped(first.pid, "the frozen vassal");
}

#[test]
fn the_same_name_from_two_sources_is_reported_and_runs_once() {
    let mut h = Harness::new();
    let other = h.root.join("other");
    fs::create_dir(&other).unwrap();
    put(&h.vassal("dup.ini"), &uwsgi_ini(""));
    put(&other.join("dup.ini"), &uwsgi_ini(""));
    let first = h.dir_source();
    let second = format!("dir://{}", other.display());
    h.start(&[&first, &second]);
    h.wait_complaint("two sources");
    // Whichever source lists first, the vassal ends up running once, on the
    // first source's config.
    wait_until(DEADLINE, "dup.ini to run once, from the first source", || {
        let found = our_vassals(&h);
        let pids = found.get("dup.ini")?;
        (pids.len() == 1 && cwd_of(pids[0]).as_deref() == Some(h.vassals.as_path())).then_some(())
    });
}

#[test]
fn vassal_inherits_only_its_channel_and_mapped_variables() {
    let h = Harness::new();
    put(&h.vassal("fds.ini"), &uwsgi_ini(""));
    let _run = h.spawn_dir(&[], &[("UWSGI_VASSAL_SOCKET", ":3031"), ("KEEP_ME", "1")]);
    let pid = h.wait_start("fds.ini").pid;
    let control: String = env_of(pid, "UWSGI_EMPEROR_FD").expect("UWSGI_EMPEROR_FD");
    // Everything open in the vassal is stdio, the control channel, or what
    // the stub opened itself (its signalfd, its record file, its config while
    // it reads it, just after recording its start): nothing of the emperor's
    // (state store, inotify, other vassals' logs, the fd holder).
    let fds: Vec<(String, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            let target = fs::read_link(e.path()).map(|t| t.display().to_string()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), target)
        })
        .collect();
    let record = h.record.display().to_string();
    let config = h.vassal("fds.ini").display().to_string();
    let foreign: Vec<&(String, String)> = fds
        .iter()
        .filter(|(fd, target)| {
            !["0", "1", "2", control.as_str()].contains(&fd.as_str())
                && !target.contains("signalfd")
                && !target.starts_with(&record)
                && *target != config
        })
        .collect();
    assert!(foreign.is_empty(), "fds leaked into the vassal: {foreign:?} (all: {fds:?})");
    assert_eq!(fs::read_link(format!("/proc/{pid}/fd/0")).unwrap(), std::path::Path::new("/dev/null"));
    assert_eq!(env_of(pid, "UWSGI_SOCKET").as_deref(), Some(":3031"), "UWSGI_VASSAL_x becomes UWSGI_x");
    assert_eq!(env_of(pid, "KEEP_ME").as_deref(), Some("1"), "the emperor's environment is inherited");
    assert!(env_of(pid, "EMPEROR_ID").is_some());
}
