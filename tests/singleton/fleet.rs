//! The fleet the singleton tests run: three emperors, each behind its own
//! TCP proxy to one shared store (PostgreSQL, the MongoDB stand-in or
//! ZooKeeper), and the probe vassal's log.

use super::common::*;
use super::servers::{lit, Mongo, MongoClient, PgClient, Postgres, Proxy, ZkClient, ZooKeeper};
use mongodb::bson::{doc, Bson, DateTime};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The tests measure timings: one at a time.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// The lease the tests run with (the other timeouts in proportion).
pub const LEASE: &str = "6";

/// The fleet's `--lease`: [`LEASE`], or `SINGLETON_LEASE` (for figures
/// with other timings).
pub fn lease_arg() -> String {
    std::env::var("SINGLETON_LEASE").unwrap_or_else(|_| LEASE.to_owned())
}
/// How long a failover may take (the default timings promise 20 s).
pub const FAILOVER: Duration = Duration::from_secs(20);

pub const PROBE: &str = r#"import os, signal, sys, time
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
pub fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// CLOCK_MONOTONIC in nanoseconds, the probe's clock.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live timespec the call fills in.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One line of the probe's log.
#[derive(Debug, Clone)]
pub struct Line {
    pub kind: String,
    pub emperor: String,
    pub token: String,
    pub pid: i32,
    pub ns: u64,
}

/// One run of the probe: its first and last line.
#[derive(Debug, Clone)]
pub struct Incarnation {
    pub emperor: String,
    pub token: String,
    pub pid: i32,
    pub start: u64,
    pub last: u64,
}

/// One emperor of the fleet.
pub struct Host {
    pub name: &'static str,
    pub h: Harness,
    pub proxy: Proxy,
    pub run: Option<Run>,
    pub args: Vec<String>,
}

impl Host {
    pub fn start(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.run = Some(self.h.spawn(&args, &[]));
    }

    pub fn id(&self) -> String {
        wait_until(DEADLINE, "the emperor id", || std::fs::read_to_string(self.h.state.join("emperor-id")).ok())
            .trim()
            .to_owned()
    }

    /// How this emperor is named in lease records.
    pub fn holder(&self) -> String {
        holder_name(&self.h, self.name)
    }

    /// `name`'s state in `ctl list`, if it is listed.
    pub fn state(&self, name: &str) -> Option<String> {
        let out = Command::new(EMPEROR)
            .args(["ctl", "--control-socket"])
            .arg(self.h.state.join("control.sock"))
            .args(["list", "-o", "json"])
            .output()
            .ok()?;
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
        list.into_iter().find(|v| v["name"] == name).and_then(|v| v["state"].as_str().map(str::to_owned))
    }

    pub fn wait_state(&self, name: &str, state: &str, within: Duration) {
        wait_until(within, format!("{name} to be {state} on {}", self.name), || {
            cond(self.state(name).as_deref() == Some(state))
        });
    }

    /// The pid of this host's fd holder.
    pub fn fd_holder(&self) -> Option<i32> {
        let socket = self.h.state.join("fd-holder.sock").display().to_string();
        all_pids().into_iter().find(|&pid| {
            let argv = cmdline(pid);
            argv.iter().any(|a| a == "--fd-holder") && argv.contains(&socket)
        })
    }
}

/// How the emperor of `h`, started with `--host host`, is named in lease
/// records: its host and the start of its id.
pub fn holder_name(h: &Harness, host: &str) -> String {
    let id = wait_until(DEADLINE, "the emperor id", || std::fs::read_to_string(h.state.join("emperor-id")).ok());
    format!("{host}/{}", &id.trim()[..8])
}

/// Which store the fleet shares.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Pg,
    Mongo,
    Zoo,
}

/// The shared store, and the test's own client on it.
pub enum Db {
    Pg(Arc<Postgres>, PgClient, String),
    Mongo(Arc<Mongo>, MongoClient, String),
    /// The server, a client, and the test's base path.
    Zoo(Arc<ZooKeeper>, ZkClient, String),
}

impl Db {
    /// Database `db` on the server this test binary shares.
    pub fn new(kind: Kind, db: &str) -> Db {
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
            Kind::Zoo => {
                let zk = ZooKeeper::shared();
                let mut client = zk.client();
                let base = format!("/{db}");
                client.mkdir(&format!("{base}/vassals"));
                Db::Zoo(zk, client, base)
            }
        }
    }

    /// Database `db` on a server of the test's own, which it may stop and
    /// start again ([`Db::stop_server`], [`Db::start_server`]).
    pub fn private(kind: Kind, db: &str) -> Db {
        match kind {
            Kind::Pg => {
                let pg = Arc::new(Postgres::private());
                let sql = pg.create_db(db);
                Db::Pg(pg, sql, db.to_owned())
            }
            Kind::Mongo => {
                let mongo = Arc::new(Mongo::private());
                let client = mongo.client();
                Db::Mongo(mongo, client, db.to_owned())
            }
            Kind::Zoo => {
                let zk = Arc::new(ZooKeeper::private(2000));
                let mut client = zk.client();
                let base = format!("/{db}");
                client.mkdir(&format!("{base}/vassals"));
                Db::Zoo(zk, client, base)
            }
        }
    }

    /// Stops the private server as an operator restarting it would
    /// (`pg_ctl stop -m fast`; SIGTERM to SecantusDB) and waits until it is gone.
    pub fn stop_server(&mut self) {
        match self {
            Db::Pg(pg, ..) => Arc::get_mut(pg).expect("a private server").stop(),
            Db::Mongo(mongo, ..) => Arc::get_mut(mongo).expect("a private server").kill(),
            Db::Zoo(zk, ..) => Arc::get_mut(zk).expect("a private server").kill(),
        }
    }

    /// Starts the private server again on its data and its port.
    pub fn start_server(&mut self) {
        match self {
            Db::Pg(pg, ..) => Arc::get_mut(pg).expect("a private server").restart(true),
            Db::Mongo(mongo, ..) => {
                let port = mongo.port;
                Arc::get_mut(mongo).expect("a private server").restart_on(port);
            }
            Db::Zoo(zk, ..) => Arc::get_mut(zk).expect("a private server").restart(),
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Db::Pg(pg, ..) => pg.port,
            Db::Mongo(mongo, ..) => mongo.port,
            Db::Zoo(zk, ..) => zk.port,
        }
    }

    /// The source URI of an emperor that reaches the server on `port`.
    pub fn uri(&self, port: u16) -> String {
        match self {
            Db::Pg(_, _, db) => format!(
                "pg://host=127.0.0.1 port={port} user=postgres dbname={db};SELECT name, config, ts FROM vassals;listen=emperor_vassals"
            ),
            Db::Mongo(_, _, db) => format!("mongodb://127.0.0.1:{port},{db}.vassals"),
            Db::Zoo(_, _, base) => format!("zoo://127.0.0.1:{port}{base}/vassals"),
        }
    }

    pub fn insert(&mut self, name: &str, config: &str) {
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
            Db::Zoo(_, client, base) => client.create(&format!("{base}/vassals/{name}"), config.as_bytes()),
        }
    }

    /// The holder and token of `name`'s lease.
    pub fn lease(&mut self, name: &str) -> (String, String) {
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
            Db::Zoo(_, client, base) => {
                // The lowest node of the queue holds it; its czxid is the token.
                let queue = format!("{base}/vassals.leases/{name}");
                let mut children = client.children(&queue);
                children.sort_by_key(|c| c.rsplit_once("-lease-").map(|(_, seq)| seq.to_owned()));
                let first = children.first().expect("a lease node");
                let (data, stat) = client.get_stat(&format!("{queue}/{first}")).expect("the holder's node");
                (String::from_utf8(data).expect("a holder name"), stat.czxid.to_string())
            }
        }
    }

    /// Moves `name`'s lease on, as if another emperor had taken it.
    pub fn move_lease(&mut self, name: &str) {
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
            Db::Zoo(..) => unreachable!("a ZooKeeper lease moves on only with its session"),
        }
    }
}

/// Three emperors, one database, one singleton.
pub struct Fleet {
    pub db: Db,
    pub hosts: Vec<Host>,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

pub const NAME: &str = "probe.ini";

impl Fleet {
    /// The fleet on database `name` of the shared server, with [`lease_arg`].
    pub fn new(kind: Kind, name: &str) -> Fleet {
        Fleet::on(Db::new(kind, name), &["--lease", &lease_arg()])
    }

    /// The fleet on `db`, each emperor started with the lease options `lease`.
    pub fn on(db: Db, lease: &[&str]) -> Fleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("probe.log");
        std::fs::write(dir.path().join("probe.py"), PROBE).expect("write the probe");
        let hosts = ["a", "b", "c"]
            .into_iter()
            .map(|name| {
                let proxy = Proxy::new(db.port());
                let mut args: Vec<String> =
                    ["--host", name].into_iter().chain(lease.iter().copied()).map(str::to_owned).collect();
                args.push(db.uri(proxy.port));
                Host { name, h: Harness::new(), proxy, run: None, args }
            })
            .collect();
        let mut fleet = Fleet { db, hosts, log, _dir: dir };
        fleet.hosts.iter_mut().for_each(Host::start);
        fleet
    }

    pub fn insert_probe(&mut self) {
        let config = format!(
            "[vassal]\nexec = {} {} {}\nsingleton = true\nstop-timeout = 1\n",
            python(),
            self.log.with_file_name("probe.py").display(),
            self.log.display()
        );
        self.db.insert(NAME, &config);
    }

    pub fn lines(&self) -> Vec<Line> {
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
    pub fn incarnations(&self) -> Vec<Incarnation> {
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
    pub fn assert_no_overlap(&self) {
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
    pub fn wait_run(&self, n: usize, within: Duration) -> Incarnation {
        wait_until(within, format!("incarnation {n} of the singleton"), || self.incarnations().into_iter().nth(n - 1))
    }

    pub fn host_of(&self, run: &Incarnation) -> usize {
        self.hosts.iter().position(|h| h.id() == run.emperor).expect("the probe's emperor is one of ours")
    }

    /// The first run on exactly one host, the others on standby.
    pub fn wait_first_run(&mut self) -> (usize, Incarnation) {
        self.insert_probe();
        let run = self.wait_run(1, FAILOVER);
        let holder = self.host_of(&run);
        self.hosts[holder].wait_state(NAME, "running", DEADLINE);
        for (_, host) in self.hosts.iter().enumerate().filter(|(i, _)| *i != holder) {
            host.wait_state(NAME, "standby", DEADLINE);
        }
        let token = match self.db {
            Db::Zoo(..) => self.db.lease(NAME).1,
            _ => "1".to_owned(),
        };
        assert_eq!(run.token, token, "the first holder's token");
        (holder, run)
    }
}

impl Fleet {
    /// Waits (at most `within`) for a peer of `holder` to start the
    /// singleton again, under the next token, reports how long it took after
    /// `since` as `what`, and checks that no runs overlapped.
    pub fn wait_takeover(&self, holder: usize, since: u64, within: Duration, what: &str) -> Incarnation {
        let runs = self.incarnations();
        let second = self.wait_run(runs.len() + 1, within);
        eprintln!("{what}: {} ms", (second.start - since) / 1_000_000);
        assert_ne!(self.host_of(&second), holder, "a peer took over");
        let token = |run: &Incarnation| run.token.parse::<u64>().expect("a numeric token");
        let (before, after) = (token(runs.last().expect("a run before")), token(&second));
        match self.db {
            // The holder node's czxid: larger with every new holder.
            Db::Zoo(..) => assert!(after > before, "a new holder, a larger token: {before} then {after}"),
            _ => assert_eq!(after, before + 1, "a new holder, the next token"),
        }
        self.assert_no_overlap();
        second
    }
}

/// Waits until `pid` is killed, at once: within half a lease of `since`
/// (long before any deadline a dead emperor gave its fd holder).
pub fn wait_killed_at_once(pid: i32, since: u64) {
    wait_until(DEADLINE, "the singleton killed", || cond(dead(pid)));
    let killed_ms = (monotonic_ns() - since) / 1_000_000;
    let lease_ms = lease().as_millis() as u64;
    assert!(killed_ms < lease_ms / 2, "killed after {killed_ms} ms");
}

/// The lease the tests run with.
pub fn lease() -> Duration {
    Duration::from_secs(lease_arg().parse().expect("lease"))
}
