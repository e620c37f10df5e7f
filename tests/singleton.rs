//! Singleton vassals against a real PostgreSQL and a MongoDB-compatible
//! server: three emperors on one machine, each with its own state dir,
//! `--host` and TCP proxy to the server, share one `vassals` row (document)
//! marked `singleton = true`.
//!
//! The vassal is a probe that appends `start`, `alive` (every 50 ms) and
//! `exit` lines with its emperor, token, pid and CLOCK_MONOTONIC
//! nanoseconds to one O_APPEND file. Every process shares that clock, so
//! two incarnations overlap exactly when their `[start, last line]`
//! intervals intersect: every test checks there is no overlap at all.
#![allow(unsafe_code)] // clock_gettime, for the probe's clock

mod common;
mod servers;

use common::*;
use mongodb::bson::{doc, Bson, DateTime};
use servers::{lit, Mongo, MongoClient, PgClient, Postgres, Proxy};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The tests measure timings: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The lease the tests run with (the other timeouts in proportion).
const LEASE: &str = "6";
/// How long a failover may take (the default timings promise 20 s).
const FAILOVER: Duration = Duration::from_secs(20);

const PROBE: &str = r#"import os, signal, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
who = "%s %s %d" % (os.environ.get("EMPEROR_ID", "?"), os.environ.get("EMPEROR_FENCE", "none"), os.getpid())
def line(kind):
    os.write(fd, ("%s %s %d\n" % (kind, who, time.monotonic_ns())).encode())
def stop(*_):
    line("exit")
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
line("start")
while True:
    time.sleep(0.05)
    line("alive")
"#;

/// The system's python3 (a version manager's shim would start slower).
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// CLOCK_MONOTONIC in nanoseconds, the probe's clock.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live timespec the call fills in.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One line of the probe's log.
#[derive(Debug, Clone)]
struct Line {
    kind: String,
    emperor: String,
    token: String,
    pid: i32,
    ns: u64,
}

/// One run of the probe: its first and last line.
#[derive(Debug, Clone)]
struct Incarnation {
    emperor: String,
    token: String,
    pid: i32,
    start: u64,
    last: u64,
}

/// One emperor of the fleet.
struct Host {
    name: &'static str,
    h: Harness,
    proxy: Proxy,
    run: Option<Run>,
    args: Vec<String>,
}

impl Host {
    fn start(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.run = Some(self.h.spawn(&args, &[]));
    }

    fn id(&self) -> String {
        wait_until(DEADLINE, "the emperor id", || std::fs::read_to_string(self.h.state.join("emperor-id")).ok())
            .trim()
            .to_owned()
    }

    /// `name`'s state in `ctl list`, if it is listed.
    fn state(&self, name: &str) -> Option<String> {
        let out = Command::new(EMPEROR)
            .args(["ctl", "--control-socket"])
            .arg(self.h.state.join("control.sock"))
            .args(["list", "-o", "json"])
            .output()
            .ok()?;
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
        list.into_iter().find(|v| v["name"] == name).and_then(|v| v["state"].as_str().map(str::to_owned))
    }

    fn wait_state(&self, name: &str, state: &str, within: Duration) {
        wait_until(within, format!("{name} to be {state} on {}", self.name), || {
            cond(self.state(name).as_deref() == Some(state))
        });
    }

    /// The pid of this host's fd holder.
    fn fd_holder(&self) -> Option<i32> {
        let socket = self.h.state.join("fd-holder.sock").display().to_string();
        all_pids().into_iter().find(|&pid| {
            let argv = cmdline(pid);
            argv.iter().any(|a| a == "--fd-holder") && argv.contains(&socket)
        })
    }
}

/// Which store the fleet shares.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Pg,
    Mongo,
}

/// The shared store, and the test's own client on it.
enum Db {
    Pg(Arc<Postgres>, PgClient, String),
    Mongo(Arc<Mongo>, MongoClient, String),
}

impl Db {
    fn new(kind: Kind, db: &str) -> Db {
        match kind {
            Kind::Pg => {
                let pg = Postgres::shared();
                let sql = pg.create_db(db);
                Db::Pg(pg, sql, db.to_owned())
            }
            Kind::Mongo => {
                let mongo = Mongo::shared();
                let client = mongo.client();
                Db::Mongo(mongo, client, db.to_owned())
            }
        }
    }

    fn port(&self) -> u16 {
        match self {
            Db::Pg(pg, ..) => pg.port,
            Db::Mongo(mongo, ..) => mongo.port,
        }
    }

    /// The source URI of an emperor that reaches the server on `port`.
    fn uri(&self, port: u16) -> String {
        match self {
            Db::Pg(_, _, db) => format!(
                "pg://host=127.0.0.1 port={port} user=postgres dbname={db};SELECT name, config, ts FROM vassals;listen=emperor_vassals"
            ),
            Db::Mongo(_, _, db) => format!("mongodb://127.0.0.1:{port},{db}.vassals"),
        }
    }

    fn insert(&mut self, name: &str, config: &str) {
        match self {
            Db::Pg(_, sql, _) => sql.exec(&format!(
                "INSERT INTO vassals (name, config, host) VALUES ({}, {}, '')",
                lit(name),
                lit(config)
            )),
            Db::Mongo(_, client, db) => {
                let vassal = doc! { "name": name, "config": config, "ts": DateTime::now() };
                client.run(client.coll(db, "vassals").insert_one(vassal)).expect("insert_one");
            }
        }
    }

    /// The holder and token of `name`'s lease.
    fn lease(&mut self, name: &str) -> (String, String) {
        match self {
            Db::Pg(_, sql, _) => {
                let rows = sql.rows(&format!("SELECT holder, token FROM emperor_leases WHERE name = {}", lit(name)));
                let row = rows.into_iter().next().expect("a lease row");
                (row[0].clone().unwrap_or_default(), row[1].clone().unwrap_or_default())
            }
            Db::Mongo(_, client, db) => {
                let lease = client.run(client.coll(db, "emperor_leases").find_one(doc! { "_id": name }));
                let lease = lease.expect("find_one").expect("a lease document");
                let token = match lease.get("token") {
                    Some(Bson::Int32(n)) => n.to_string(),
                    Some(Bson::Int64(n)) => n.to_string(),
                    other => format!("{other:?}"),
                };
                (lease.get_str("holder").unwrap_or_default().to_owned(), token)
            }
        }
    }

    /// Moves `name`'s lease on, as if another emperor had taken it.
    fn move_lease(&mut self, name: &str) {
        match self {
            Db::Pg(_, sql, _) => sql.exec(&format!(
                "UPDATE emperor_leases SET token = token + 1, holder = 'elsewhere' WHERE name = {}",
                lit(name)
            )),
            Db::Mongo(_, client, db) => {
                let moved = doc! { "$inc": { "token": 1 }, "$set": { "holder": "elsewhere" } };
                client
                    .run(client.coll(db, "emperor_leases").update_one(doc! { "_id": name }, moved))
                    .expect("update_one");
            }
        }
    }
}

/// Three emperors, one database, one singleton.
struct Fleet {
    db: Db,
    hosts: Vec<Host>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

const NAME: &str = "probe.ini";

impl Fleet {
    fn new(kind: Kind, name: &str) -> Fleet {
        let db = Db::new(kind, name);
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("probe.log");
        std::fs::write(dir.path().join("probe.py"), PROBE).expect("write the probe");
        let hosts = ["a", "b", "c"]
            .into_iter()
            .map(|name| {
                let proxy = Proxy::new(db.port());
                let mut args: Vec<String> = ["--host", name, "--lease", LEASE].map(str::to_owned).to_vec();
                args.push(db.uri(proxy.port));
                Host { name, h: Harness::new(), proxy, run: None, args }
            })
            .collect();
        let mut fleet = Fleet { db, hosts, log, _dir: dir };
        fleet.hosts.iter_mut().for_each(Host::start);
        fleet
    }

    fn insert_probe(&mut self) {
        let config = format!(
            "[vassal]\nexec = {} {} {}\nsingleton = true\nstop-timeout = 1\n",
            python(),
            self.log.with_file_name("probe.py").display(),
            self.log.display()
        );
        self.db.insert(NAME, &config);
    }

    fn lines(&self) -> Vec<Line> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let [kind, emperor, token, pid, ns] = f[..] else { return None };
                Some(Line {
                    kind: kind.into(),
                    emperor: emperor.into(),
                    token: token.into(),
                    pid: pid.parse().ok()?,
                    ns: ns.parse().ok()?,
                })
            })
            .collect()
    }

    /// Every run of the probe so far, in start order.
    fn incarnations(&self) -> Vec<Incarnation> {
        let mut by_pid: BTreeMap<i32, Incarnation> = BTreeMap::new();
        for line in self.lines() {
            let run = by_pid.entry(line.pid).or_insert_with(|| Incarnation {
                emperor: line.emperor.clone(),
                token: line.token.clone(),
                pid: line.pid,
                start: line.ns,
                last: line.ns,
            });
            if line.kind == "start" {
                run.start = line.ns;
            }
            run.last = run.last.max(line.ns);
        }
        let mut runs: Vec<Incarnation> = by_pid.into_values().collect();
        runs.sort_by_key(|r| r.start);
        runs
    }

    /// No two runs of the probe were ever alive at once.
    fn assert_no_overlap(&self) {
        let runs = self.incarnations();
        for pair in runs.windows(2) {
            assert!(
                pair[1].start > pair[0].last,
                "two incarnations overlap by {} ns: {:?} and {:?}",
                pair[0].last - pair[1].start,
                pair[0],
                pair[1]
            );
        }
    }

    /// Waits for the `n`-th run of the probe and returns it.
    fn wait_run(&self, n: usize, within: Duration) -> Incarnation {
        wait_until(within, format!("incarnation {n} of the singleton"), || self.incarnations().into_iter().nth(n - 1))
    }

    fn host_of(&self, run: &Incarnation) -> usize {
        self.hosts.iter().position(|h| h.id() == run.emperor).expect("the probe's emperor is one of ours")
    }

    /// The first run on exactly one host, the others on standby.
    fn wait_first_run(&mut self) -> (usize, Incarnation) {
        self.insert_probe();
        let run = self.wait_run(1, FAILOVER);
        let holder = self.host_of(&run);
        self.hosts[holder].wait_state(NAME, "running", DEADLINE);
        for (_, host) in self.hosts.iter().enumerate().filter(|(i, _)| *i != holder) {
            host.wait_state(NAME, "standby", DEADLINE);
        }
        assert_eq!(run.token, "1", "the first holder's token");
        (holder, run)
    }
}

impl Fleet {
    /// Waits (at most `within`) for a peer of `holder` to start the
    /// singleton under the next token, reports how long it took after
    /// `since` as `what`, and checks that no runs overlapped.
    fn wait_takeover(&self, holder: usize, since: u64, within: Duration, what: &str) -> Incarnation {
        let second = self.wait_run(2, within);
        eprintln!("{what}: {} ms", (second.start - since) / 1_000_000);
        assert_ne!(self.host_of(&second), holder, "a peer took over");
        assert_eq!(second.token, "2", "a new holder, a new token");
        self.assert_no_overlap();
        second
    }
}

/// The lease the tests run with.
fn lease() -> Duration {
    Duration::from_secs(LEASE.parse().expect("lease"))
}

#[test]
fn pg_one_host_runs_it_and_a_partition_moves_it() {
    one_host_runs_it_and_a_partition_moves_it(Kind::Pg);
}

#[test]
fn mongodb_one_host_runs_it_and_a_partition_moves_it() {
    one_host_runs_it_and_a_partition_moves_it(Kind::Mongo);
}

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

#[test]
fn pg_host_death_moves_it() {
    host_death_moves_it(Kind::Pg);
}

#[test]
fn mongodb_host_death_moves_it() {
    host_death_moves_it(Kind::Mongo);
}

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

#[test]
fn pg_a_restarted_emperor_keeps_its_singleton() {
    a_restarted_emperor_keeps_its_singleton(Kind::Pg);
}

#[test]
fn mongodb_a_restarted_emperor_keeps_its_singleton() {
    a_restarted_emperor_keeps_its_singleton(Kind::Mongo);
}

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
    assert_eq!(fleet.db.lease(NAME), (fleet.hosts[holder].name.to_owned(), "1".to_owned()));
    fleet.assert_no_overlap();
}

#[test]
fn pg_a_restarted_emperor_whose_lease_moved_on_kills_at_once() {
    a_restarted_emperor_whose_lease_moved_on_kills_at_once(Kind::Pg);
}

#[test]
fn mongodb_a_restarted_emperor_whose_lease_moved_on_kills_at_once() {
    a_restarted_emperor_whose_lease_moved_on_kills_at_once(Kind::Mongo);
}

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
    wait_until(DEADLINE, "the singleton killed", || cond(dead(first.pid)));
    let killed_ms = (monotonic_ns() - restarted_at) / 1_000_000;
    let lease_ms = lease().as_millis() as u64;
    assert!(killed_ms < lease_ms / 2, "killed after {killed_ms} ms");
    fleet.hosts[holder].wait_state(NAME, "standby", DEADLINE);
    assert_eq!(fleet.incarnations().len(), 1);
}

#[test]
fn pg_a_dead_emperors_fd_holder_kills_its_singleton() {
    a_dead_emperors_fd_holder_kills_its_singleton(Kind::Pg);
}

#[test]
fn mongodb_a_dead_emperors_fd_holder_kills_its_singleton() {
    a_dead_emperors_fd_holder_kills_its_singleton(Kind::Mongo);
}

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

#[test]
fn pg_a_clean_stop_hands_it_over_within_a_renew_period() {
    a_clean_stop_hands_it_over_within_a_renew_period(Kind::Pg);
}

#[test]
fn mongodb_a_clean_stop_hands_it_over_within_a_renew_period() {
    a_clean_stop_hands_it_over_within_a_renew_period(Kind::Mongo);
}

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
    assert_eq!(lease, vec![vec![Some("solo".to_owned()), Some("1".to_owned())]]);
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
