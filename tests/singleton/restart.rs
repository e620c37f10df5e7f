//! The store itself restarts under a running singleton: the real server is
//! stopped and started again on the same data and port (`pg_ctl stop -m
//! fast` / `start`; SecantusDB stopped with SIGTERM and started again).
//!
//! * Down longer than the lease: the holder cannot renew, so it stops the
//!   singleton by its own clock (SIGTERM at the deadline, dead by `L − M`
//!   after its last confirmed renewal); once the store is back, exactly one
//!   emperor runs it, under the next token.
//! * Down for less than the deadline: the holder renews as soon as the
//!   store answers again, the same process runs on, and no peer ever starts
//!   a second one.

use super::common::*;
use super::fleet::*;
use std::time::Duration;

/// Lease options for the quick restart: a 1 s renew period leaves the
/// restart `D − 2 × 1.2 R` = 5.6 s (the deadline is 8 s), however the
/// renewals fall around it.
const QUICK: [&str; 4] = ["--lease", "12", "--lease-renew", "1"];

on_stores!(a_store_down_longer_than_the_lease_stops_it_then_one_emperor_runs_it: pg => Pg, mongodb => Mongo);
fn a_store_down_longer_than_the_lease_stops_it_then_one_emperor_runs_it(kind: Kind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = Db::private(kind, &format!("singleton_store_down_{kind:?}").to_lowercase());
    let mut fleet = Fleet::on(db, &["--lease", LEASE]);
    let (_, first) = fleet.wait_first_run();

    fleet.db.stop_server();
    // Every renewal the holder saw confirmed was sent before this.
    let down_at = monotonic_ns();
    wait_until(FAILOVER, "the holder to stop its singleton", || cond(dead(first.pid)));
    let lines = fleet.lines();
    assert!(lines.iter().any(|l| l.kind == "exit" && l.pid == first.pid), "stopped with SIGTERM at the deadline");
    let last = fleet.incarnations()[0].last;
    let kill_after = Duration::from_secs_f64(lease().as_secs_f64() * 13.0 / 15.0).as_nanos() as u64;
    assert!(
        last < down_at + kill_after,
        "the singleton ran {} ms after the store went away (at most L − M = {} ms)",
        (last - down_at) / 1_000_000,
        kill_after / 1_000_000
    );
    for host in &fleet.hosts {
        host.wait_state(NAME, "standby", DEADLINE);
    }

    // The store stays away past the lease, then comes back.
    let lease_ns = lease().as_nanos() as u64;
    wait_every(FAILOVER, Duration::from_millis(100), "the lease to pass", || {
        cond(monotonic_ns() > down_at + lease_ns + 1_000_000_000)
    });
    assert_eq!(fleet.incarnations().len(), 1, "nobody runs it while the store is away");
    fleet.db.start_server();
    let back_at = monotonic_ns();
    let second = fleet.wait_run(2, FAILOVER);
    eprintln!("store back → singleton started: {} ms", (second.start - back_at) / 1_000_000);
    assert_eq!(second.token, "2", "the lease expired: a new token");
    let runner = fleet.host_of(&second);
    exactly_one_runs(&fleet, runner, 2);
}

on_stores!(a_quick_store_restart_never_runs_it_twice: pg => Pg, mongodb => Mongo);
fn a_quick_store_restart_never_runs_it_twice(kind: Kind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let db = Db::private(kind, &format!("singleton_store_restart_{kind:?}").to_lowercase());
    let mut fleet = Fleet::on(db, &QUICK);
    let (holder, first) = fleet.wait_first_run();

    let down_at = monotonic_ns();
    fleet.db.stop_server();
    fleet.db.start_server();
    let back_at = monotonic_ns();
    eprintln!("store restart: {} ms", (back_at - down_at) / 1_000_000);
    // Past the whole lease after the restart: had the holder lost it, a
    // peer would have started the singleton by then.
    let lease_ns = Duration::from_secs(12).as_nanos() as u64;
    wait_every(Duration::from_secs(30), Duration::from_millis(100), "a lease past the restart", || {
        cond(monotonic_ns() > back_at + lease_ns + 2_000_000_000)
    });
    assert!(alive(first.pid), "the same process runs on");
    exactly_one_runs(&fleet, holder, 1);
}

/// `runner` runs the singleton and every other emperor has it on standby,
/// after `runs` runs in all, none overlapping.
fn exactly_one_runs(fleet: &Fleet, runner: usize, runs: usize) {
    fleet.hosts[runner].wait_state(NAME, "running", DEADLINE);
    for (_, host) in fleet.hosts.iter().enumerate().filter(|(i, _)| *i != runner) {
        host.wait_state(NAME, "standby", DEADLINE);
    }
    assert_eq!(fleet.incarnations().len(), runs, "runs: {:?}", fleet.incarnations());
    fleet.assert_no_overlap();
}
