//! Failover figures (run with `--ignored`): a fleet of three emperors hands
//! the singleton on again and again, alternately after a host's death and
//! after a partition, and the time from each event to the peer's start is
//! printed as p50 and max. `SINGLETON_LEASE=15` measures the default timings.

use super::common::*;
use super::fleet::*;

/// How many handovers to measure (`SINGLETON_TRIALS`, default 10).
fn trials() -> usize {
    std::env::var("SINGLETON_TRIALS").ok().and_then(|n| n.parse().ok()).unwrap_or(10)
}

/// Kills the holder's emperor, fd holder and singleton at once.
fn host_death(fleet: &mut Fleet, holder: usize, pid: i32) {
    let fd_holder = fleet.hosts[holder].fd_holder().expect("the holder host's fd holder");
    fleet.hosts[holder].run.take().expect("running").kill9();
    kill(fd_holder, libc::SIGKILL);
    kill(-pid, libc::SIGKILL);
}

/// Measures `trials()` handovers on `kind` and prints the figures.
pub fn failover_figures(kind: Kind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut fleet = Fleet::new(kind, &format!("singleton_figures_{kind:?}").to_lowercase());
    let (mut holder, mut run) = fleet.wait_first_run();
    let mut ms = Vec::new();
    for trial in 0..trials() {
        let partition = trial % 2 == 1;
        let at = monotonic_ns();
        match partition {
            true => fleet.hosts[holder].proxy.blackhole(),
            false => host_death(&mut fleet, holder, run.pid),
        }
        let within = FAILOVER.max(lease() * 2);
        let next = fleet.wait_takeover(holder, at, within, if partition { "partition" } else { "host death" });
        ms.push((next.start - at) / 1_000_000);
        // The old holder comes back, and waits on standby.
        match partition {
            true => fleet.hosts[holder].proxy.restore(),
            false => fleet.hosts[holder].start(),
        }
        fleet.hosts[holder].wait_state(NAME, "standby", within);
        (holder, run) = (fleet.host_of(&next), next);
    }
    ms.sort_unstable();
    let (p50, max) = (ms[ms.len() / 2], ms[ms.len() - 1]);
    eprintln!(
        "{kind:?} --lease {}: {} handovers (host death, partition): p50 {p50} ms, max {max} ms: {ms:?}",
        lease_arg(),
        ms.len()
    );
}

#[test]
#[ignore = "a figure, not a check: minutes of handovers"]
fn zookeeper_failover_figures() {
    failover_figures(Kind::Zoo);
}
