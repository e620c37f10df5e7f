//! Status write-back (`pg://…;status=TABLE`) against a real PostgreSQL,
//! with the real binary: rows follow the vassals as `ctl list` shows them,
//! one heartbeat row per emperor, one host name per live emperor, no write
//! while idle, no wake-up of a peer, and catching up after an outage of the
//! status store. The same for MongoDB is in `fleet/mongodb.rs`, for
//! ZooKeeper in `fleet/zoo.rs`.

mod common;
#[path = "fleet/mongodb.rs"]
mod mongodb_status;
mod servers;
#[path = "fleet/zoo.rs"]
mod zoo_status;

use common::*;
use serde_json::Value;
use servers::{lit, PgClient, Postgres, Proxy};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What a status row or `ctl list` says of a vassal: state and pid.
type Seen = BTreeMap<String, (String, Option<i32>)>;

/// The status options every test uses: a short heartbeat.
const STATUS: &str = "status=emperor_status;status-heartbeat=0.5";

/// The vassals of `host` in database `db`, with status written back.
fn source(pg: &Postgres, db: &str, host: &str) -> String {
    format!(
        "pg://{};SELECT name, config, ts FROM vassals WHERE host = {};listen=emperor_vassals;{STATUS}",
        pg.conninfo(db),
        lit(host)
    )
}

fn start(h: &mut Harness, pg: &Postgres, db: &str, host: &str) {
    h.start(&["--host", host, "--resync", "600", &source(pg, db, host)]);
}

fn insert(sql: &mut PgClient, host: &str, names: &[&str]) {
    for name in names {
        sql.exec(&format!(
            "INSERT INTO vassals (name, config, host) VALUES ({}, {}, {})",
            lit(name),
            lit(&uwsgi_ini(&format!("# {host}"))),
            lit(host)
        ));
    }
}

/// `emperor ctl list -o json` of `h`, as name → (state, pid).
fn ctl_list(h: &Harness) -> Option<Seen> {
    let socket = h.state.join("control.sock");
    ctl_list_at(&socket)
}

fn ctl_list_at(socket: &Path) -> Option<Seen> {
    let mut ctl = Command::new(EMPEROR);
    let out = ctl.arg("ctl").arg("--control-socket").arg(socket).args(["list", "-o", "json"]).output();
    let out = out.expect("run emperor ctl");
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        list.iter()
            .map(|v| {
                let pid = v["pid"].as_i64().map(|p| p as i32);
                (
                    v["name"].as_str().unwrap_or_default().to_owned(),
                    (v["state"].as_str().unwrap_or_default().to_owned(), pid),
                )
            })
            .collect(),
    )
}

/// The status rows of `host`, as name → (state, pid).
fn status_rows(sql: &mut PgClient, host: &str) -> Seen {
    let rows = sql.query(&format!("SELECT name, state, pid FROM emperor_status WHERE host = {}", lit(host)));
    rows.iter().map(|r| (r.get::<_, String>(0), (r.get::<_, String>(1), r.get::<_, Option<i32>>(2)))).collect()
}

/// Waits until the status rows of `host` match `ctl list` of `h` and hold `names`.
fn wait_rows_match(sql: &mut PgClient, h: &Harness, host: &str, names: &[&str]) -> Seen {
    wait_until(DEADLINE, format!("the status rows of {host} to match ctl list"), || {
        let listed = ctl_list(h)?;
        let rows = status_rows(sql, host);
        let complete = names.iter().all(|n| listed.get(*n).is_some_and(|(state, _)| state == "running"));
        (complete && listed.len() == names.len() && rows == listed).then_some(rows)
    })
}

/// The heartbeat of `host`: when, and the emperor's id.
fn heartbeat(sql: &mut PgClient, host: &str) -> Option<(f64, String, Value)> {
    let rows = sql.query(&format!(
        "SELECT extract(epoch FROM heartbeat_at)::float8, emperor_id, vassals::text FROM emperor_status_hosts WHERE host = {}",
        lit(host)
    ));
    rows.first().map(|r| (r.get(0), r.get(1), serde_json::from_str(r.get::<_, &str>(2)).expect("counts are JSON")))
}

#[test]
fn rows_follow_the_vassals_and_the_heartbeat_advances() {
    let pg = Postgres::shared();
    let mut sql = pg.create_db("status_rows");
    let mut h = Harness::new();
    start(&mut h, &pg, "status_rows", "web-1");
    insert(&mut sql, "web-1", &["a.ini", "b.ini", "c.ini"]);
    insert(&mut sql, "web-2", &["other.ini"]);
    let rows = wait_rows_match(&mut sql, &h, "web-1", &["a.ini", "b.ini", "c.ini"]);
    assert!(status_rows(&mut sql, "web-2").is_empty(), "only this host's vassals are written");

    // A crash shows: the killed process's exit, then its new process.
    let (_, old_pid) = rows["b.ini"].clone();
    let killed = std::time::Instant::now();
    kill(old_pid.expect("b.ini has a pid"), libc::SIGKILL);
    wait_until(DEADLINE, "b.ini's crash in its status row", || {
        let found = sql.query(
            "SELECT state FROM emperor_status WHERE host = 'web-1' AND name = 'b.ini' \
             AND last_exit = 'signal SIGKILL'",
        );
        cond(!found.is_empty())
    });
    let crash_latency = killed.elapsed();
    let rows = wait_rows_match(&mut sql, &h, "web-1", &["a.ini", "b.ini", "c.ini"]);
    assert_ne!(rows["b.ini"].1, old_pid, "the new process is written");
    let restarts = sql.query("SELECT restarts FROM emperor_status WHERE name = 'b.ini'")[0].get::<_, i32>(0);
    assert_eq!(restarts, 1, "one restart");

    // A removed vassal's row is deleted.
    let removed = std::time::Instant::now();
    sql.exec("DELETE FROM vassals WHERE name = 'c.ini'");
    wait_rows_match(&mut sql, &h, "web-1", &["a.ini", "b.ini"]);
    eprintln!(
        "status latency: kill → crash row {crash_latency:?}, row removed → status row deleted {:?}",
        removed.elapsed()
    );

    // The heartbeat advances and carries the counts.
    let (first, id, _) = wait_until(DEADLINE, "a heartbeat row", || heartbeat(&mut sql, "web-1"));
    let (_, later_id, counts) = wait_until(DEADLINE, "the heartbeat to advance", || {
        heartbeat(&mut sql, "web-1").filter(|(at, _, counts)| *at > first && counts["running"] == 2)
    });
    assert_eq!(later_id, id, "one emperor");
    assert_eq!(counts["crashed"], 0, "{counts}");
}

#[test]
fn one_live_emperor_per_host_name_and_each_writes_its_own_rows() {
    let pg = Postgres::shared();
    let mut sql = pg.create_db("status_hosts");
    let hosts = ["a", "b", "c"];
    let mut emperors: Vec<Harness> = hosts.iter().map(|_| Harness::new()).collect();
    for (h, host) in emperors.iter_mut().zip(hosts) {
        start(h, &pg, "status_hosts", host);
        insert(&mut sql, host, &[&format!("{host}1.ini"), &format!("{host}2.ini")]);
    }
    for (h, host) in emperors.iter().zip(hosts) {
        wait_rows_match(&mut sql, h, host, &[&format!("{host}1.ini"), &format!("{host}2.ini")]);
    }
    let total = sql.query("SELECT count(*) FROM emperor_status")[0].get::<_, i64>(0);
    assert_eq!(total, 6, "three hosts, two rows each");

    // A second emperor as host "a" (another state dir) is refused.
    let twin = Harness::new();
    let mut run = twin.spawn(&["--host", "a", &source(&pg, "status_hosts", "a")], &[]);
    let status = run.wait_exit_within(DEADLINE);
    assert!(!status.success(), "a second emperor as host a must not start");
    let log = twin.log_text();
    assert!(log.contains("another emperor") && log.contains("\"a\""), "the refusal names the host: {log}");
    assert!(log.contains("pg://"), "and the source: {log}");
    assert_eq!(emperors[0].starts("a1.ini").len(), 1, "the first emperor is untouched");

    // The same emperor started again (its state dir, so its id) is no other one.
    let (_, id_before, _) = heartbeat(&mut sql, "b").expect("b's heartbeat");
    let b = &mut emperors[1];
    b.signal_emperor(libc::SIGKILL);
    b.wait_emperor_exit(DEADLINE);
    // Meanwhile someone deletes one of b's rows and leaves a stale one: the
    // read-back at start writes only these differences.
    sql.exec("DELETE FROM emperor_status WHERE name = 'b1.ini'");
    sql.exec("INSERT INTO emperor_status (host, name, state) VALUES ('b', 'ghost.ini', 'running')");
    let version = |sql: &mut PgClient| -> String {
        sql.query("SELECT xmin::text FROM emperor_status WHERE name = 'b2.ini'")[0].get(0)
    };
    let b2_version = version(&mut sql);
    let again = b.spawn(&["--host", "b", "--resync", "600", &source(&pg, "status_hosts", "b")], &[]);
    wait_until(DEADLINE, "b's restarted emperor to renew its heartbeat", || {
        let (_, id, _) = heartbeat(&mut sql, "b")?;
        let pid = sql.query("SELECT pid FROM emperor_status_hosts WHERE host = 'b'")[0].get::<_, Option<i32>>(0);
        cond(id == id_before && pid == Some(again.pid()))
    });
    wait_rows_match(&mut sql, b, "b", &["b1.ini", "b2.ini"]);
    assert_eq!(version(&mut sql), b2_version, "an unchanged row is not written again");
    again.kill9();
}

#[test]
fn a_status_write_wakes_no_peer() {
    let pg = Postgres::shared();
    let mut sql = pg.create_db("status_quiet");
    sql.exec("CREATE SEQUENCE b_fetches");
    let mut a = Harness::new();
    start(&mut a, &pg, "status_quiet", "a");
    // B counts its own queries: every fetch takes one value of the sequence.
    let mut b = Harness::new();
    let counted = format!(
        "pg://{};SELECT name, config, ts FROM vassals, (SELECT nextval('b_fetches')) AS f WHERE host = 'b';\
         listen=emperor_vassals",
        pg.conninfo("status_quiet")
    );
    b.start(&["--host", "b", "--resync", "600", &counted]);
    insert(&mut sql, "a", &["a1.ini"]);
    insert(&mut sql, "b", &["b1.ini"]);
    let rows = wait_rows_match(&mut sql, &a, "a", &["a1.ini"]);
    b.wait_start("b1.ini");
    let fetches = |sql: &mut PgClient| sql.query("SELECT last_value FROM b_fetches")[0].get::<_, i64>(0);
    let before = fetches(&mut sql);

    // A's vassal crashes and restarts (status writes), A beats (heartbeat writes).
    kill(rows["a1.ini"].1.expect("a pid"), libc::SIGKILL);
    wait_until(DEADLINE, "a1.ini's crash in its status row", || {
        cond(!sql.query("SELECT 1 FROM emperor_status WHERE last_exit = 'signal SIGKILL'").is_empty())
    });
    wait_rows_match(&mut sql, &a, "a", &["a1.ini"]);
    let (first, _, _) = heartbeat(&mut sql, "a").expect("a's heartbeat");
    wait_until(DEADLINE, "two more heartbeats", || {
        let (at, _, _) = heartbeat(&mut sql, "a")?;
        cond(at > first + 0.9)
    });
    assert_eq!(fetches(&mut sql), before, "status writes must not make a listening peer query again");
}

#[test]
fn an_outage_of_the_status_store_keeps_vassals_and_rows_catch_up() {
    let pg = Postgres::shared();
    let mut sql = pg.create_db("status_outage");
    // Here the tables come from the shipped DDL (elsewhere the emperor creates them).
    sql.exec(include_str!("../deploy/pg/fleet.sql"));
    let proxy = Proxy::new(pg.port);
    let mut h = Harness::new();
    crate::common::put(&h.vassal("one.ini"), &uwsgi_ini(""));
    crate::common::put(&h.vassal("two.ini"), &uwsgi_ini(""));
    // The vassals come from a directory; the status goes through the proxy
    // with a pg source of its own that selects nothing.
    let status = format!(
        "pg://host=127.0.0.1 port={} user=postgres dbname=status_outage;SELECT name, config, ts FROM vassals WHERE false;{STATUS}",
        proxy.port
    );
    // The store is down at start: the emperor runs its vassals all the same.
    proxy.cut();
    h.start(&["--host", "solo", &h.dir_source(), &status]);
    h.wait_start("one.ini");
    h.wait_start("two.ini");
    proxy.restore();
    let rows = wait_rows_match(&mut sql, &h, "solo", &["one.ini", "two.ini"]);

    proxy.cut();
    let one = rows["one.ini"].1.expect("one.ini's pid");
    kill(one, libc::SIGKILL);
    std::fs::remove_file(h.vassal("two.ini")).expect("remove two.ini");
    crate::common::put(&h.vassal("three.ini"), &uwsgi_ini(""));
    h.wait_start("three.ini");
    wait_until(DEADLINE, "one.ini to run again during the outage", || {
        let listed = ctl_list(&h)?;
        cond(listed.get("one.ini").is_some_and(|(state, pid)| state == "running" && *pid != Some(one)))
    });
    assert!(h.emperor_running(), "the emperor runs on");
    assert_eq!(status_rows(&mut sql, "solo"), rows, "nothing could be written meanwhile");

    proxy.restore();
    let caught_up = wait_rows_match(&mut sql, &h, "solo", &["one.ini", "three.ini"]);
    assert_ne!(caught_up["one.ini"].1, Some(one), "the restarted process is written");
}

#[test]
fn a_clean_stop_shows_every_vassal_stopped_and_the_host_stopped() {
    let pg = Postgres::shared();
    let mut sql = pg.create_db("status_clean_stop");
    let mut h = Harness::new();
    start(&mut h, &pg, "status_clean_stop", "web-1");
    insert(&mut sql, "web-1", &["a.ini", "b.ini"]);
    wait_rows_match(&mut sql, &h, "web-1", &["a.ini", "b.ini"]);
    let stopped_at = |sql: &mut PgClient| -> Option<bool> {
        let rows = sql.query("SELECT stopped_at = heartbeat_at FROM emperor_status_hosts WHERE host = 'web-1'");
        rows.first().and_then(|r| r.get(0))
    };
    assert_eq!(stopped_at(&mut sql), None, "a running emperor has no stopped_at");

    h.signal_emperor(libc::SIGTERM);
    assert!(h.wait_emperor_exit(DEADLINE).success(), "a clean stop");
    // Written before the emperor exited: read at once, no waiting.
    let stopped = |name: &str| (name.to_owned(), ("stopped".to_owned(), None));
    assert_eq!(status_rows(&mut sql, "web-1"), Seen::from([stopped("a.ini"), stopped("b.ini")]));
    assert_eq!(stopped_at(&mut sql), Some(true), "stopped_at is set with the last heartbeat");
    let (_, _, counts) = heartbeat(&mut sql, "web-1").expect("the host row");
    assert_eq!((counts["stopped"].as_u64(), counts["running"].as_u64()), (Some(2), Some(0)), "{counts}");

    // Started again, the host runs again: stopped_at is cleared.
    let again = h.spawn(&["--host", "web-1", "--resync", "600", &source(&pg, "status_clean_stop", "web-1")], &[]);
    wait_until(DEADLINE, "the host row to show a running emperor again", || {
        let rows = sql.query("SELECT stopped_at IS NULL, pid FROM emperor_status_hosts WHERE host = 'web-1'");
        cond(rows[0].get::<_, bool>(0) && rows[0].get::<_, Option<i32>>(1) == Some(again.pid()))
    });
    wait_rows_match(&mut sql, &h, "web-1", &["a.ini", "b.ini"]);
}

#[test]
fn a_dead_status_store_does_not_hold_up_a_clean_stop() {
    let pg = Postgres::shared();
    let mut sql = pg.create_db("status_dead_stop");
    let proxy = Proxy::new(pg.port);
    let mut h = Harness::new();
    crate::common::put(&h.vassal("one.ini"), &uwsgi_ini(""));
    let status = format!(
        "pg://host=127.0.0.1 port={} user=postgres dbname=status_dead_stop;SELECT name, config, ts FROM vassals WHERE false;{STATUS}",
        proxy.port
    );
    h.start(&["--host", "solo", &h.dir_source(), &status]);
    let rows = wait_rows_match(&mut sql, &h, "solo", &["one.ini"]);

    // The store stops answering (no FIN, no RST): each statement would wait
    // for its own timeout (10 s), the final status gets a second in all.
    proxy.blackhole();
    let asked = std::time::Instant::now();
    h.signal_emperor(libc::SIGTERM);
    assert!(h.wait_emperor_exit(DEADLINE).success(), "a clean stop, not held up by the store");
    eprintln!("clean stop with a dead status store: {:?}", asked.elapsed());
    let log = h.log_text();
    assert!(log.contains("final status could not be written"), "{log}");
    proxy.restore();
    assert_eq!(status_rows(&mut sql, "solo"), rows, "nothing was written");
}

/// The rows inserted, updated and deleted in `table` so far, by the statistics collector.
fn writes(sql: &mut PgClient, table: &str) -> (i64, i64, i64) {
    let r = &sql.query(&format!(
        "SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables WHERE relname = {}",
        lit(table)
    ))[0];
    (r.get(0), r.get(1), r.get(2))
}

#[test]
fn an_idle_host_writes_only_its_heartbeat() {
    const VASSALS: usize = 200;
    const WINDOW: Duration = Duration::from_secs(5);
    let pg = Postgres::shared();
    let mut sql = pg.create_db("status_idle");
    let mut h = Harness::new();
    let uri = format!(
        "pg://{};SELECT name, config, ts FROM vassals WHERE host = 'idle';listen=emperor_vassals;\
         status=emperor_status;status-heartbeat=1",
        pg.conninfo("status_idle")
    );
    h.start(&["--host", "idle", "--resync", "600", &uri]);
    sql.exec(&format!(
        "INSERT INTO vassals (name, config, host) SELECT 'v' || i || '.ini', {}, 'idle' FROM generate_series(1, {VASSALS}) i",
        lit(&uwsgi_ini("# idle"))
    ));
    wait_until(Duration::from_secs(60), "200 status rows matching ctl list", || {
        let listed = ctl_list(&h)?;
        let all_running = listed.len() == VASSALS && listed.values().all(|(state, _)| state == "running");
        cond(all_running && status_rows(&mut sql, "idle") == listed)
    });
    // The statistics lag the writes (a backend reports them at most once a
    // second, at the end of a later transaction): the counts are settled
    // once a heartbeat was reported (so the writer reported what it had
    // pending) without any new status write.
    let mut last = (writes(&mut sql, "emperor_status"), writes(&mut sql, "emperor_status_hosts").1);
    wait_every(DEADLINE * 3, Duration::from_millis(1500), "the status table's counters to settle", || {
        let now = (writes(&mut sql, "emperor_status"), writes(&mut sql, "emperor_status_hosts").1);
        let (status, beats) = std::mem::replace(&mut last, now);
        cond(status == now.0 && beats < now.1)
    });
    let status_before = writes(&mut sql, "emperor_status");
    let hosts_before = writes(&mut sql, "emperor_status_hosts");
    let xmins = |sql: &mut PgClient| -> Vec<String> {
        let rows = sql.query("SELECT name || ':' || xmin::text FROM emperor_status WHERE host = 'idle' ORDER BY name");
        rows.iter().map(|r| r.get(0)).collect()
    };
    let versions = xmins(&mut sql);
    let opened = std::time::Instant::now();
    // The window: the heartbeat period (1 s) five times over.
    wait_every(WINDOW * 2, Duration::from_millis(100), "the idle window", || cond(opened.elapsed() >= WINDOW));
    let status_after = writes(&mut sql, "emperor_status");
    let hosts_after = writes(&mut sql, "emperor_status_hosts");
    assert_eq!(status_after, status_before, "no status row is written while idle (ins, upd, del)");
    assert_eq!(xmins(&mut sql), versions, "no status row has a new version");
    let beats = hosts_after.1 - hosts_before.1;
    // One per period, plus one for where the window cuts a period, plus one
    // that the statistics may report late.
    let bound = (WINDOW.as_secs() + 2) as i64;
    eprintln!(
        "idle budget: {VASSALS} vassals, {WINDOW:?}: status rows written 0, heartbeat updates {beats} (bound {bound})"
    );
    assert!(beats <= bound, "at most one heartbeat update per period: {beats} in {WINDOW:?}");
    assert_eq!((hosts_after.0, hosts_after.2), (hosts_before.0, hosts_before.2), "heartbeats only update");
}
