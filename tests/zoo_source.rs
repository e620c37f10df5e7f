//! `zoo://` against a real ZooKeeper: child znodes of a base path are
//! vassals; create / set / delete → spawn / reload / stop; bad names; a
//! missing or deleted base; a cut connection, a server restart and an
//! expired session keep the vassals running and converge afterwards.
//! Each test uses its own base path of a shared server, except those that
//! cut or stop the server, which have a server of their own.

mod common;
mod servers;

use common::*;
use servers::{Proxy, ZkClient, ZooKeeper};
use std::time::{Duration, Instant};

/// Deadline for what follows a reconnect (the source backs off up to 10 s).
const RECOVERY: Duration = Duration::from_secs(40);

fn config(tag: &str) -> String {
    uwsgi_ini(&format!("# {tag}"))
}

fn uri(port: u16, base: &str) -> String {
    format!("zoo://127.0.0.1:{port}{base}")
}

#[test]
fn private_server_round_trip() {
    let zk = ZooKeeper::shared();
    let mut c = zk.client();
    c.mkdir("/skeleton/vassals");
    c.create("/skeleton/vassals/app.ini", b"[uwsgi]\n");
    assert_eq!(c.children("/skeleton/vassals"), ["app.ini"]);
    c.set("/skeleton/vassals/app.ini", b"[uwsgi]\nprocesses = 2\n");
    assert_eq!(c.get("/skeleton/vassals/app.ini").as_deref(), Some(&b"[uwsgi]\nprocesses = 2\n"[..]));
    c.delete_tree("/skeleton");
    assert_eq!(c.get("/skeleton"), None);
}

#[test]
fn create_set_delete_spawn_reload_stop() {
    let zk = ZooKeeper::shared();
    let mut c = zk.client();
    c.mkdir("/crud/vassals");
    c.create("/crud/vassals/early.ini", config("e").as_bytes());
    let mut h = Harness::new();
    h.start(&[uri(zk.port, "/crud/vassals").as_str()]);
    h.wait_start("early.ini");

    c.create("/crud/vassals/app.ini", config("v1").as_bytes());
    let pid = h.wait_start("app.ini").pid;
    assert_eq!(h.wait_start("app.ini").argv(), "--ini emperor://app.ini");
    wait_config(&h, "app.ini", &config("v1"));

    c.set("/crud/vassals/app.ini", config("v2").as_bytes());
    wait_recvs(&h, "app.ini", 1, 1);
    wait_config(&h, "app.ini", &config("v2"));

    // The same bytes again: a new mzxid, so a reload (touch).
    c.set("/crud/vassals/app.ini", config("v2").as_bytes());
    wait_recvs(&h, "app.ini", 1, 2);
    assert!(alive(pid), "reloads keep the process");
    assert_eq!(h.starts("app.ini").len(), 1, "graceful reloads must not respawn");

    // A native vassal from the node's text.
    let native = format!("[vassal]\nexec = {STUB} native from-zoo\n");
    c.create("/crud/vassals/native.ini", native.as_bytes());
    assert_eq!(h.wait_start("native.ini").argv(), "native from-zoo");

    c.delete("/crud/vassals/app.ini");
    h.wait_event("app.ini", "recv 0 (stop)", |e| e.is_recv(0));
    h.wait_reaped(pid, "deleted vassal");
    assert_eq!(h.recorded_names(), ["app.ini", "early.ini", "native.ini"]);
    assert_eq!(recvs(&h, "early.ini", 1) + recvs(&h, "early.ini", 0), 0, "the others were left alone");
}

#[test]
fn bad_names_and_empty_nodes_are_reported_once_each() {
    let zk = ZooKeeper::shared();
    let mut c = zk.client();
    c.mkdir("/bad/vassals");
    let long = format!("/bad/vassals/{}.ini", "x".repeat(300));
    for (path, data) in [
        ("/bad/vassals/good.ini", config("g")),
        ("/bad/vassals/run.sh", config("s")),
        ("/bad/vassals/noext", config("n")),
        ("/bad/vassals/empty.ini", String::new()),
        (long.as_str(), config("l")),
    ] {
        c.create(path, data.as_bytes());
    }
    let mut h = Harness::new();
    h.start(&[uri(zk.port, "/bad/vassals").as_str()]);
    h.wait_start("good.ini");
    assert!(h.wait_complaint("run.sh").contains("does not end in"));
    h.wait_complaint("noext");
    assert!(h.wait_complaint("empty.ini").contains("empty"));
    h.wait_complaint("xxxxxxxx");

    // More reads happen; each bad node is still reported once.
    c.set("/bad/vassals/run.sh", config("s2").as_bytes());
    c.create("/bad/vassals/later.ini", config("l").as_bytes());
    h.wait_start("later.ini");
    for needle in ["run.sh", "noext", "empty.ini", "xxxxxxxx"] {
        assert_eq!(h.complaints_about(needle).len(), 1, "{needle}: {:?}", h.complaints_about(needle));
    }
    assert_eq!(h.recorded_names(), ["good.ini", "later.ini"]);
    assert!(h.emperor_running());
}

#[test]
fn a_missing_or_deleted_base_keeps_the_vassals() {
    let zk = ZooKeeper::shared();
    let mut c = zk.client();
    let mut h = Harness::new();
    h.start(&[uri(zk.port, "/late/vassals").as_str()]);
    h.wait_complaint("does not exist");

    // The base appears: its children start.
    c.mkdir("/late/vassals");
    c.create("/late/vassals/one.ini", config("1").as_bytes());
    c.create("/late/vassals/two.ini", config("2").as_bytes());
    let one = h.wait_start("one.ini").pid;
    let two = h.wait_start("two.ini").pid;

    // The whole base goes (children and base in one transaction): nothing stops.
    c.delete_tree_at_once("/late/vassals");
    wait_until(DEADLINE, "a second warning about the missing base", || {
        cond(h.complaints_about("does not exist").len() >= 2)
    });
    assert!(alive(one) && alive(two), "a deleted base must not stop the vassals");
    assert_eq!(recvs(&h, "one.ini", 0) + recvs(&h, "two.ini", 0), 0);

    // It comes back with one vassal changed and one gone: applied.
    c.mkdir("/late/vassals");
    c.create("/late/vassals/one.ini", config("1b").as_bytes());
    wait_config(&h, "one.ini", &config("1b"));
    h.wait_reaped(two, "a vassal missing from the re-created base");
    assert!(alive(one));
}

/// A private server behind a proxy, with `keep.ini` and `gone.ini` running
/// under the emperor of `h` (session timeout `session`).
fn outage_setup(zk: &ZooKeeper, proxy: &Proxy, h: &mut Harness, session: &str) -> (ZkClient, i32, i32) {
    let mut c = zk.client();
    c.mkdir("/outage/vassals");
    c.create("/outage/vassals/keep.ini", config("k1").as_bytes());
    c.create("/outage/vassals/gone.ini", config("g").as_bytes());
    h.start(&[format!("{}?session-timeout={session}", uri(proxy.port, "/outage/vassals")).as_str()]);
    let keep = h.wait_start("keep.ini").pid;
    let gone = h.wait_start("gone.ini").pid;
    (c, keep, gone)
}

/// The changes of the standard outage scenario, made while cut off.
fn change_meanwhile(c: &mut ZkClient) {
    c.set("/outage/vassals/keep.ini", config("k2").as_bytes());
    c.delete("/outage/vassals/gone.ini");
    c.create("/outage/vassals/new.ini", config("n").as_bytes());
}

#[test]
fn a_cut_connection_keeps_vassals_and_resyncs_after() {
    let zk = ZooKeeper::private(2000);
    let proxy = Proxy::new(zk.port);
    let mut h = Harness::new();
    let (mut c, keep, gone) = outage_setup(&zk, &proxy, &mut h, "30");

    proxy.cut();
    h.wait_complaint("ZooKeeper connection is lost");
    change_meanwhile(&mut c);
    assert!(alive(keep) && alive(gone), "a cut connection must not stop vassals");
    assert_eq!(recvs(&h, "keep.ini", 0) + recvs(&h, "gone.ini", 0), 0, "nothing stopped while cut");

    // Back within the session timeout: the same session, the watch never
    // saw the changes, the resync after the reconnect does.
    proxy.restore();
    assert_outage_recovered(&h, keep, gone, &config("k2"), RECOVERY);
}

#[test]
fn a_server_restart_keeps_vassals_and_resyncs_after() {
    let mut zk = ZooKeeper::private(2000);
    let proxy = Proxy::new(zk.port);
    let mut h = Harness::new();
    let (mut c, keep, gone) = outage_setup(&zk, &proxy, &mut h, "30");

    // The emperor is cut off while the server restarts and changes are made.
    proxy.cut();
    zk.kill();
    h.wait_complaint("ZooKeeper connection is lost");
    zk.restart();
    change_meanwhile(&mut c);
    assert!(alive(keep) && alive(gone), "a server restart must not stop vassals");
    proxy.restore();
    assert_outage_recovered(&h, keep, gone, &config("k2"), RECOVERY);
}

#[test]
fn an_expired_session_is_replaced_and_nothing_stops() {
    // tickTime 500 ms: the server grants a 1 s session.
    let zk = ZooKeeper::private(500);
    let proxy = Proxy::new(zk.port);
    let mut h = Harness::new();
    let (mut c, keep, gone) = outage_setup(&zk, &proxy, &mut h, "1");

    proxy.cut();
    wait_until(RECOVERY, "the emperor to see its session expire", || {
        cond(h.log_text().contains("session ended (Expired)"))
    });
    change_meanwhile(&mut c);
    assert!(alive(keep) && alive(gone), "an expired session must not stop vassals");
    assert_eq!(recvs(&h, "keep.ini", 0) + recvs(&h, "gone.ini", 0), 0);

    proxy.restore();
    wait_until(RECOVERY, "new.ini to start after the new session", || h.starts("new.ini").first().cloned());
    h.wait_reaped(gone, "deleted while the session was gone");
    wait_config(&h, "keep.ini", &config("k2"));
    assert_eq!(h.starts("keep.ini").len(), 1, "keep.ini was never restarted");

    // The new session watches: a later change arrives as an event.
    c.set("/outage/vassals/new.ini", config("n2").as_bytes());
    wait_config(&h, "new.ini", &config("n2"));
}

#[test]
fn create_to_spawn_latency() {
    let zk = ZooKeeper::shared();
    let mut c = zk.client();
    c.mkdir("/latency/vassals");
    let mut h = Harness::new();
    h.start(&[uri(zk.port, "/latency/vassals").as_str()]);
    c.create("/latency/vassals/sentinel.ini", config("s").as_bytes());
    h.wait_start("sentinel.ini");

    let mut samples = Vec::new();
    for i in 0..20 {
        let name = format!("lat{i}.ini");
        let t = Instant::now();
        c.create(&format!("/latency/vassals/{name}"), config("x").as_bytes());
        wait_every(DEADLINE, Duration::from_millis(1), format!("{name}: start"), || h.starts(&name).first().cloned());
        samples.push(t.elapsed());
    }
    samples.sort();
    eprintln!("latency zoo create→spawn: n={} p50={:?} max={:?}", samples.len(), samples[10], samples[19]);
    assert!(samples[19] < Duration::from_secs(2), "create→spawn took {:?}", samples[19]);
}
