//! `pg://` against a real PostgreSQL, end to end: LISTEN/NOTIFY and
//! polling, spawn / reload / stop from row changes, filters and fleets.
//! Each test uses its own database of a shared server. Bad rows and server
//! outages are checked at the source by the conformance suite
//! (`tests/conformance/pg.rs`).

mod common;
mod servers;

use common::*;
use servers::{lit, PgClient, Postgres};
use std::time::{Duration, Instant};

fn config(tag: &str) -> String {
    uwsgi_ini(&format!("# {tag}"))
}

fn uri(pg: &Postgres, db: &str, tail: &str) -> String {
    format!("pg://{};{tail}", pg.conninfo(db))
}

fn listen_uri(pg: &Postgres, db: &str, filter: &str) -> String {
    uri(pg, db, &format!("SELECT name, config, ts FROM vassals {filter};listen=emperor_vassals"))
}

fn insert(sql: &mut PgClient, name: &str, config: &str, host: &str) {
    sql.exec(&format!(
        "INSERT INTO vassals (name, config, host) VALUES ({}, {}, {})",
        lit(name),
        lit(config),
        lit(host)
    ));
}

#[test]
fn listen_insert_update_delete() {
    let pg = Postgres::shared();
    let mut sql = pg.create_db("listen_crud");
    let mut h = Harness::new();
    h.start(&[listen_uri(&pg, "listen_crud", "").as_str()]);

    insert(&mut sql, "app.ini", &config("v1"), "");
    let pid = h.wait_start("app.ini").pid;
    assert_eq!(h.wait_start("app.ini").argv(), "--ini emperor://app.ini");
    wait_config(&h, "app.ini", &config("v1"));

    // New config (the shipped trigger bumps ts) → reload with the new config.
    sql.exec(&format!("UPDATE vassals SET config = {} WHERE name = 'app.ini'", lit(&config("v2"))));
    wait_recvs(&h, "app.ini", 1, 1);
    wait_config(&h, "app.ini", &config("v2"));
    h.wait_event("app.ini", "reloaded", |e| e.kind == "reloaded");

    // A ts change of one microsecond alone → reload again.
    sql.exec("UPDATE vassals SET ts = ts + interval '1 microsecond' WHERE name = 'app.ini'");
    wait_recvs(&h, "app.ini", 1, 2);
    assert!(alive(pid), "reloads keep the process");
    assert_eq!(h.starts("app.ini").len(), 1, "graceful reloads must not respawn");

    sql.exec("DELETE FROM vassals WHERE name = 'app.ini'");
    h.wait_event("app.ini", "recv 0 (stop)", |e| e.is_recv(0));
    h.wait_reaped(pid, "deleted vassal");
}

#[test]
fn filter_change_stops_and_fleet_runs_only_its_rows() {
    let pg = Postgres::shared();
    let mut sql = pg.create_db("fleet");
    let mut a = Harness::new();
    let mut b = Harness::new();
    a.start(&[listen_uri(&pg, "fleet", "WHERE host = 'a'").as_str()]);
    b.start(&[listen_uri(&pg, "fleet", "WHERE host = 'b'").as_str()]);

    insert(&mut sql, "one.ini", &config("1"), "a");
    insert(&mut sql, "two.ini", &config("2"), "b");
    insert(&mut sql, "three.ini", &config("3"), "a");
    let one = a.wait_start("one.ini").pid;
    a.wait_start("three.ini");
    b.wait_start("two.ini");

    // The row moves to host b: a stops it, b starts it.
    sql.exec("UPDATE vassals SET host = 'b' WHERE name = 'one.ini'");
    a.wait_event("one.ini", "recv 0 (stop) after the row left the filter", |e| e.is_recv(0));
    a.wait_reaped(one, "vassal moved to the other host");
    b.wait_start("one.ini");
    wait_config(&b, "one.ini", &config("1"));

    assert_eq!(a.recorded_names(), ["one.ini", "three.ini"]);
    assert_eq!(b.recorded_names(), ["one.ini", "two.ini"]);
    assert_eq!(a.starts("one.ini").len(), 1, "host a never restarted one.ini");
    assert!(a.starts("two.ini").is_empty() && b.starts("three.ini").is_empty());
}

#[test]
fn polling_upstream_uri_and_numeric_ts() {
    let pg = Postgres::shared();
    let mut sql = pg.create_db("polling");
    insert(&mut sql, "early.ini", &config("e"), "");

    // Plain upstream URI: no query, default 3 s polling.
    let mut plain = Harness::new();
    plain.start(&[format!("pg://{}", pg.conninfo("polling")).as_str()]);
    // Upstream-style epoch query (numeric ts) polled every 0.2 s.
    let mut epoch = Harness::new();
    epoch.start(&[
        uri(&pg, "polling", "SELECT name, config, extract(epoch from ts) FROM vassals;interval=0.2").as_str()
    ]);

    plain.wait_start("early.ini");
    epoch.wait_start("early.ini");
    insert(&mut sql, "late.ini", &config("l"), "");
    plain.wait_start("late.ini");
    wait_config(&epoch, "late.ini", &config("l"));

    sql.exec("UPDATE vassals SET ts = ts + interval '1 microsecond' WHERE name = 'late.ini'");
    wait_recvs(&epoch, "late.ini", 1, 1);
}

#[test]
fn listen_latency() {
    let pg = Postgres::shared();
    let mut sql = pg.create_db("latency");
    let mut h = Harness::new();
    h.start(&[listen_uri(&pg, "latency", "").as_str()]);
    insert(&mut sql, "sentinel.ini", &config("s"), "");
    h.wait_start("sentinel.ini");

    let mut samples = Vec::new();
    for i in 0..20 {
        let name = format!("lat{i}.ini");
        let t = Instant::now();
        insert(&mut sql, &name, &config("x"), "");
        wait_every(DEADLINE, Duration::from_millis(1), format!("{name}: start"), || h.starts(&name).first().cloned());
        samples.push(t.elapsed());
    }
    samples.sort();
    eprintln!("latency pg listen insert→spawn: n={} p50={:?} max={:?}", samples.len(), samples[10], samples[19]);
}
