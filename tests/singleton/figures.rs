//! The fleet's measured figures (the README's failover table), with the
//! default timings (`--lease 15`): not run by default, as they take minutes.
//!
//!     cargo test --features emperor/failpoints --test singleton -- --ignored figures --nocapture
//!
//! * failover, [`TRIALS`] times each on PostgreSQL and on SecantusDB: a
//!   partition of the holder (a black hole, no FIN or RST), and `kill -9` of
//!   the holder's emperor (its fd holder kills the singleton at the last
//!   deadline it was given); from the event to a peer's start of the
//!   singleton, p50 and max, with no two runs ever overlapping;
//! * status latency: a vassal's change to its status row, as a reader of
//!   the table or collection sees it: a new vassal to its `running` row,
//!   and a crash (`kill -9` of the vassal) to its row's `last_exit`.

use super::common::*;
use super::fleet::*;
use super::servers::{lit, Mongo, Postgres};
use mongodb::bson::{doc, DateTime};
use std::time::{Duration, Instant};

/// Trials per figure.
const TRIALS: usize = 10;
/// The longest a failover with the default timings may take before the
/// trial fails (the design's bound is about 20 s).
const WITHIN: Duration = Duration::from_secs(40);

#[test]
#[ignore = "takes minutes: the README's measured failover table"]
fn figures_pg() {
    figures(Kind::Pg);
}

#[test]
#[ignore = "takes minutes: the README's measured failover table"]
fn figures_mongodb() {
    figures(Kind::Mongo);
}

fn figures(kind: Kind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    eprintln!("figures ({kind:?}, {TRIALS} trials, --lease 15): | p50 | max |");
    report(kind, "partition of the holder → a peer starts it", failover(kind, Event::Partition));
    report(kind, "kill -9 of the holder's emperor → a peer starts it", failover(kind, Event::Kill));
    let (start, crash) = status_latency(kind);
    report(kind, "new vassal → its running status row", start);
    report(kind, "kill -9 of a vassal → its crash in the status row", crash);
}

/// Prints one row of the figures: p50 and max of `samples`.
fn report(kind: Kind, what: &str, samples: Vec<Duration>) {
    let (p50, max) = p50_max(samples);
    eprintln!("figures ({kind:?}): {what} | {} ms | {} ms |", p50.as_millis(), max.as_millis());
}

/// What happens to the holder in a failover trial.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// Its connection to the store carries nothing any more.
    Partition,
    /// `kill -9` of its emperor.
    Kill,
}

/// [`TRIALS`] failovers on one fleet: each trial moves the singleton to a
/// peer, then brings the old holder back (on standby).
fn failover(kind: Kind, event: Event) -> Vec<Duration> {
    let db = Db::new(kind, &format!("figures_{kind:?}_{event:?}").to_lowercase());
    let mut fleet = Fleet::on(db, &["--lease", "15"]);
    let (mut holder, _) = fleet.wait_first_run();
    let mut samples = Vec::new();
    for trial in 1..=TRIALS {
        let at = monotonic_ns();
        match event {
            Event::Partition => fleet.hosts[holder].proxy.blackhole(),
            Event::Kill => fleet.hosts[holder].run.take().expect("running").kill9(),
        }
        let next = fleet.wait_run(trial + 1, WITHIN);
        samples.push(Duration::from_nanos(next.start - at));
        fleet.assert_no_overlap();
        let peer = fleet.host_of(&next);
        assert_ne!(peer, holder, "a peer took over");
        match event {
            Event::Partition => fleet.hosts[holder].proxy.restore(),
            Event::Kill => fleet.hosts[holder].start(),
        }
        fleet.hosts[holder].wait_state(NAME, "standby", WITHIN);
        holder = peer;
    }
    assert_eq!(fleet.incarnations().len(), TRIALS + 1, "one start per failover, no other");
    fleet.assert_no_overlap();
    samples
}

/// The median (the upper one of an even count) and the maximum.
fn p50_max(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], *samples.last().expect("samples"))
}

/// One emperor writing status; per trial a new vassal, then its crash.
fn status_latency(kind: Kind) -> (Vec<Duration>, Vec<Duration>) {
    let mut store = StatusStore::new(kind);
    let mut h = Harness::new();
    h.start(&["--host", "fig", "--resync", "600", &store.uri()]);
    let (mut start, mut crash) = (Vec::new(), Vec::new());
    for trial in 0..TRIALS {
        let name = format!("v{trial}.ini");
        let at = Instant::now();
        store.insert(&name);
        let pid = wait_until(DEADLINE, format!("{name}'s running row"), || store.running_pid(&name));
        start.push(at.elapsed());
        let at = Instant::now();
        kill(pid, libc::SIGKILL);
        wait_until(DEADLINE, format!("{name}'s crash in its row"), || cond(store.crashed(&name)));
        crash.push(at.elapsed());
    }
    (start, crash)
}

/// The store of [`status_latency`]: the vassals and their status rows.
enum StatusStore {
    Pg(std::sync::Arc<Postgres>, super::servers::PgClient),
    Mongo(std::sync::Arc<Mongo>, super::servers::MongoClient),
}

const STATUS_DB: &str = "figures_status";

impl StatusStore {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Pg => {
                let pg = Postgres::shared();
                let mut sql = pg.create_db(STATUS_DB);
                // The tables exist before the emperor first writes, for the test's reads.
                sql.exec(include_str!("../../deploy/pg/fleet.sql"));
                StatusStore::Pg(pg, sql)
            }
            Kind::Mongo => {
                let mongo = Mongo::shared();
                let client = mongo.client();
                StatusStore::Mongo(mongo, client)
            }
            Kind::Zoo => unreachable!("ZooKeeper's status figures are not measured here"),
        }
    }

    fn uri(&self) -> String {
        match self {
            StatusStore::Pg(pg, _) => format!(
                "pg://{};SELECT name, config, ts FROM vassals;listen=emperor_vassals;status=emperor_status",
                pg.conninfo(STATUS_DB)
            ),
            StatusStore::Mongo(mongo, _) => {
                format!("mongodb://127.0.0.1:{},{STATUS_DB}.vassals;status=emperor_status", mongo.port)
            }
        }
    }

    fn insert(&mut self, name: &str) {
        let config = uwsgi_ini("# figures");
        match self {
            StatusStore::Pg(_, sql) => sql.exec(&format!(
                "INSERT INTO vassals (name, config, host) VALUES ({}, {}, '')",
                lit(name),
                lit(&config)
            )),
            StatusStore::Mongo(_, client) => {
                let vassal = doc! { "name": name, "config": config, "ts": DateTime::now() };
                client.run(client.coll(STATUS_DB, "vassals").insert_one(vassal)).expect("insert_one");
            }
        }
    }

    /// The pid in `name`'s row once it says `running`.
    fn running_pid(&mut self, name: &str) -> Option<i32> {
        match self {
            StatusStore::Pg(_, sql) => {
                let rows = sql
                    .query(&format!("SELECT pid FROM emperor_status WHERE name = {} AND state = 'running'", lit(name)));
                rows.first().and_then(|r| r.get(0))
            }
            StatusStore::Mongo(_, client) => {
                let filter = doc! { "name": name, "state": "running" };
                let row = client.run(client.coll(STATUS_DB, "emperor_status").find_one(filter)).ok()??;
                row.get_i32("pid").ok()
            }
        }
    }

    /// Whether `name`'s row shows its process killed.
    fn crashed(&mut self, name: &str) -> bool {
        match self {
            StatusStore::Pg(_, sql) => !sql
                .query(&format!(
                    "SELECT 1 FROM emperor_status WHERE name = {} AND last_exit = 'signal SIGKILL'",
                    lit(name)
                ))
                .is_empty(),
            StatusStore::Mongo(_, client) => {
                let filter = doc! { "name": name, "last_exit": "signal SIGKILL" };
                client.run(client.coll(STATUS_DB, "emperor_status").find_one(filter)).ok().flatten().is_some()
            }
        }
    }
}
