//! Singleton vassals against a real PostgreSQL, a MongoDB-compatible
//! server and ZooKeeper: three emperors on one machine, each with its own
//! state dir, `--host` and TCP proxy to the server, share one `vassals` row
//! (document, node) marked `singleton = true`.
//!
//! The vassal is a probe that appends `start`, `alive` (every 50 ms) and
//! `exit` lines with its emperor, token, pid and CLOCK_MONOTONIC
//! nanoseconds to one O_APPEND file. Every process shares that clock, so
//! two incarnations overlap exactly when their `[start, last line]`
//! intervals intersect: every test checks there is no overlap at all.
#![allow(unsafe_code)] // clock_gettime, for the probe's clock

#[path = "../common/mod.rs"]
mod common;
mod fleet;
#[path = "../servers/mod.rs"]
mod servers;

use common::*;
use fleet::*;
use servers::{lit, Postgres, ZooKeeper};
use std::time::Duration;

/// Runs the fleet test `$name` on each store listed, as `$name::$test`.
macro_rules! on_stores {
    ($name:ident: $($test:ident => $kind:ident),+) => {
        mod $name {
            $(
                #[test]
                fn $test() {
                    super::$name(super::Kind::$kind);
                }
            )+
        }
    };
}

/// Runs the fleet test `$name` on PostgreSQL (`$name::pg`), the MongoDB
/// stand-in (`$name::mongodb`) and ZooKeeper (`$name::zoo`).
macro_rules! on_every_store {
    ($name:ident) => {
        on_stores!($name: pg => Pg, mongodb => Mongo, zoo => Zoo);
    };
}

mod figures;
mod restart;
mod zoo_figures;

on_every_store!(one_host_runs_it_and_a_partition_moves_it);
fn one_host_runs_it_and_a_partition_moves_it(kind: Kind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut fleet = Fleet::new(kind, &format!("singleton_partition_{kind:?}").to_lowercase());
    let (holder, first) = fleet.wait_first_run();

    // A partition without FIN or RST: the holder keeps running until it
    // fences itself by its own clock, and a peer takes over after that.
    let cut_at = monotonic_ns();
    fleet.hosts[holder].proxy.blackhole();
    fleet.wait_takeover(holder, cut_at, FAILOVER, "partition failover");
    assert!(dead(first.pid), "the partitioned holder stopped its singleton");
    assert!(
        fleet.lines().iter().any(|l| l.kind == "exit" && l.pid == first.pid),
        "the partitioned holder stopped it with SIGTERM first"
    );
    fleet.assert_no_overlap();

    // After the heal the old holder stays on standby and does not start it again.
    fleet.hosts[holder].proxy.restore();
    fleet.hosts[holder].wait_state(NAME, "standby", FAILOVER);
    assert_eq!(fleet.incarnations().len(), 2);
    fleet.assert_no_overlap();
}

on_every_store!(host_death_moves_it);
fn host_death_moves_it(kind: Kind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut fleet = Fleet::new(kind, &format!("singleton_host_death_{kind:?}").to_lowercase());
    let (holder, first) = fleet.wait_first_run();

    let holder_pid = fleet.hosts[holder].fd_holder().expect("the holder host's fd holder");
    let died_at = monotonic_ns();
    fleet.hosts[holder].run.take().expect("running").kill9();
    kill(holder_pid, libc::SIGKILL);
    kill(-first.pid, libc::SIGKILL);
    fleet.wait_takeover(holder, died_at, FAILOVER, "host death failover");
}

// A ZooKeeper session cannot be resumed by a new process: see
// `a_restarted_emperor_gives_a_zookeeper_singleton_up`.
on_stores!(a_restarted_emperor_keeps_its_singleton: pg => Pg, mongodb => Mongo);
fn a_restarted_emperor_keeps_its_singleton(kind: Kind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut fleet = Fleet::new(kind, &format!("singleton_restart_{kind:?}").to_lowercase());
    let (holder, first) = fleet.wait_first_run();

    let killed_at = monotonic_ns();
    fleet.hosts[holder].run.take().expect("running").kill9();
    fleet.hosts[holder].start();
    fleet.hosts[holder].wait_state(NAME, "running", DEADLINE);
    // Past every deadline the dead emperor gave: the restarted one renewed
    // the lease under the same token, so nothing killed or moved it.
    let lease = lease().as_nanos() as u64;
    wait_every(Duration::from_secs(15), Duration::from_millis(100), "a lease past the crash", || {
        cond(monotonic_ns() > killed_at + 2 * lease)
    });
    assert!(alive(first.pid), "the same process runs on");
    assert_eq!(fleet.incarnations().len(), 1, "no second start anywhere");
    assert_eq!(env_of(first.pid, "EMPEROR_FENCE").as_deref(), Some("1"));
    assert_eq!(fleet.db.lease(NAME), (fleet.hosts[holder].holder(), "1".to_owned()));
    fleet.assert_no_overlap();
}

on_stores!(a_restarted_emperor_whose_lease_moved_on_kills_at_once: pg => Pg, mongodb => Mongo);
fn a_restarted_emperor_whose_lease_moved_on_kills_at_once(kind: Kind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut fleet = Fleet::new(kind, &format!("singleton_moved_{kind:?}").to_lowercase());
    let (holder, first) = fleet.wait_first_run();
    // The peers stop, so that only the restarted emperor could run it.
    for (_, host) in fleet.hosts.iter_mut().enumerate().filter(|(i, _)| *i != holder) {
        host.run.take().expect("running").kill9();
    }
    fleet.hosts[holder].run.take().expect("running").kill9();
    // Meanwhile the lease moved on (as if a peer had taken it).
    fleet.db.move_lease(NAME);
    let restarted_at = monotonic_ns();
    fleet.hosts[holder].start();
    // Its renewal under the old token fails: the process is killed at once,
    // long before the deadline the dead emperor gave the fd holder.
    wait_killed_at_once(first.pid, restarted_at);
    fleet.hosts[holder].wait_state(NAME, "standby", DEADLINE);
    assert_eq!(fleet.incarnations().len(), 1);
}

on_every_store!(a_dead_emperors_fd_holder_kills_its_singleton);
fn a_dead_emperors_fd_holder_kills_its_singleton(kind: Kind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut fleet = Fleet::new(kind, &format!("singleton_watchdog_{kind:?}").to_lowercase());
    let (holder, first) = fleet.wait_first_run();

    let killed_at = monotonic_ns();
    fleet.hosts[holder].run.take().expect("running").kill9();
    // Nobody renews: the fd holder kills the vassal at the last deadline it
    // was given, without SIGTERM, and a peer starts it after the lease expired.
    fleet.wait_takeover(holder, killed_at, FAILOVER, "emperor death failover");
    assert!(dead(first.pid), "the fd holder killed the orphaned singleton");
    assert!(!fleet.lines().iter().any(|l| l.kind == "exit" && l.pid == first.pid), "killed, not stopped");
}

on_every_store!(a_clean_stop_hands_it_over_within_a_renew_period);
fn a_clean_stop_hands_it_over_within_a_renew_period(kind: Kind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut fleet = Fleet::new(kind, &format!("singleton_clean_stop_{kind:?}").to_lowercase());
    let (holder, first) = fleet.wait_first_run();

    let mut run = fleet.hosts[holder].run.take().expect("running");
    kill(run.pid(), libc::SIGTERM);
    run.wait_exit();
    let stopped_at = monotonic_ns();
    assert!(fleet.lines().iter().any(|l| l.kind == "exit" && l.pid == first.pid), "stopped with SIGTERM");
    // The lease was released: a peer needs no expiry, only its next try.
    fleet.wait_takeover(holder, stopped_at, lease(), "clean stop handover");
}

/// A restarted emperor cannot resume the ZooKeeper session its lease
/// belonged to: it kills the singleton at once (long before the deadline
/// the dead emperor gave its fd holder), queues again behind its peers, and
/// one of them runs it under a larger token.
#[test]
fn a_restarted_emperor_gives_a_zookeeper_singleton_up() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut fleet = Fleet::new(Kind::Zoo, "singleton_restart_zoo");
    let (holder, first) = fleet.wait_first_run();

    fleet.hosts[holder].run.take().expect("running").kill9();
    let restarted_at = monotonic_ns();
    fleet.hosts[holder].start();
    wait_killed_at_once(first.pid, restarted_at);
    // Its earlier session's node is gone with it: a peer needs no expiry.
    fleet.wait_takeover(holder, restarted_at, lease(), "restart handover");
    fleet.hosts[holder].wait_state(NAME, "standby", DEADLINE);
    assert_eq!(fleet.incarnations().len(), 2);
}

/// A lease the ZooKeeper server would cut short (its sessions last at
/// most 20 ticks of 2 s) is refused at start, naming what it grants.
#[test]
fn a_lease_longer_than_zookeeper_grants_is_refused() {
    let zk = ZooKeeper::shared();
    let h = Harness::new();
    let uri = format!("zoo://{}/singleton_refused/vassals", zk.address());
    let mut run = h.spawn(&["--lease", "60", &uri], &[]);
    assert!(!run.wait_exit().success(), "a 60 s lease must be refused");
    let log = h.log_text();
    assert!(log.contains("grants sessions of at most 40s, less than --lease (60s)"), "{log}");
}

/// `emperor ctl stop` on the holder stops it there and gives up the lease:
/// a peer runs it instead.
#[test]
fn an_operator_stop_on_the_holder_hands_it_to_a_peer() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut fleet = Fleet::new(Kind::Pg, "singleton_ctl_stop");
    let (holder, first) = fleet.wait_first_run();
    let socket = fleet.hosts[holder].h.state.join("control.sock");
    let out = std::process::Command::new(EMPEROR)
        .args(["ctl", "--control-socket"])
        .arg(&socket)
        .args(["stop", "--wait", NAME])
        .output()
        .expect("run emperor ctl");
    assert!(out.status.success(), "ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    let stopped_at = fleet.incarnations()[0].last;
    assert!(dead(first.pid));
    fleet.wait_takeover(holder, stopped_at, lease(), "operator stop handover");
    fleet.hosts[holder].wait_state(NAME, "stopped", DEADLINE);
}

#[test]
fn a_uwsgi_style_singleton_gets_its_token() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let pg = Postgres::shared();
    let mut sql = pg.create_db("singleton_uwsgi");
    let mut h = Harness::new();
    let uri =
        format!("pg://{};SELECT name, config, ts FROM vassals;listen=emperor_vassals", pg.conninfo("singleton_uwsgi"));
    h.start(&["--host", "solo", "--lease", LEASE, &uri]);
    let config = uwsgi_ini("[emperor]\nsingleton = true");
    sql.exec(&format!("INSERT INTO vassals (name, config) VALUES ('web.ini', {})", lit(&config)));
    let pid = h.wait_start("web.ini").pid;
    assert_eq!(env_of(pid, "EMPEROR_FENCE").as_deref(), Some("1"));
    let lease = sql.rows("SELECT holder, token FROM emperor_leases WHERE name = 'web.ini'");
    assert_eq!(lease, vec![vec![Some(holder_name(&h, "solo")), Some("1".to_owned())]]);
}

#[test]
fn singletons_from_a_source_without_leases_are_refused() {
    let mut h = Harness::new();
    put(&h.vassal("solo.ini"), "[vassal]\nexec = sleep 60\nsingleton = true\n");
    h.start_dir(&[]);
    let line = h.wait_complaint("solo.ini");
    assert!(line.contains("singleton = true needs a source that can hold a lease"), "{line}");
    assert!(h.starts("solo.ini").is_empty());
}

#[test]
fn unsafe_lease_timings_are_refused_at_start() {
    let h = Harness::new();
    let source = h.dir_source();
    for (args, why) in [
        (["--lease-renew", "5"], "quarter of --lease"),
        (["--lease-deadline", "13"], "leaving a kill grace"),
        (["--lease-deadline", "3"], "1.2 × --lease-renew"),
    ] {
        let mut run = h.spawn(&[args[0], args[1], &source], &[]);
        assert!(!run.wait_exit().success(), "{args:?} must be refused");
        let log = h.log_text();
        assert!(log.contains(why), "{args:?}: {log}");
    }
}
