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

/// A database whose query counts the rows it reads: `counted()` (costed
/// so that PostgreSQL calls it last, on rows every other condition kept)
/// bumps the sequence `reads` once per row.
fn counted_db(pg: &Postgres, db: &str, rows: usize) -> (PgClient, String) {
    let mut sql = pg.create_db(db);
    sql.exec(
        "CREATE SEQUENCE reads;
         CREATE FUNCTION counted(text) RETURNS boolean LANGUAGE plpgsql VOLATILE COST 10000
             AS $$ BEGIN PERFORM nextval('reads'); RETURN true; END $$;",
    );
    sql.exec(&format!(
        "INSERT INTO vassals (name, config) SELECT 'row' || i || '.ini', {} FROM generate_series(1, {rows}) AS i",
        lit(&config("r"))
    ));
    (sql, uri(pg, db, "SELECT name, config, ts FROM vassals WHERE counted(name);listen=emperor_vassals"))
}

/// How many rows the source's queries have read so far.
fn reads(sql: &mut PgClient) -> usize {
    let rows = sql.rows("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM reads");
    rows[0][0].as_deref().and_then(|n| n.parse().ok()).expect("the read count")
}

/// The rows read between `before` and when `done` holds.
fn reads_until(sql: &mut PgClient, before: usize, what: &str, done: impl Fn() -> bool) -> usize {
    wait_until(DEADLINE, what, || cond(done()));
    reads(sql) - before
}

const ROWS: usize = 30;

/// A counted table of [`ROWS`] rows (see [`counted_db`]) in database `db`,
/// and an emperor running every one of them.
fn counted_emperor(db: &str) -> (std::sync::Arc<Postgres>, PgClient, Harness) {
    let pg = Postgres::shared();
    let (sql, uri) = counted_db(&pg, db, ROWS);
    let mut h = Harness::new();
    h.start(&[uri.as_str()]);
    wait_until(DEADLINE, "every row started", || cond(h.recorded_names().len() == ROWS));
    (pg, sql, h)
}

#[test]
fn a_notified_row_is_read_alone() {
    let (_pg, mut sql, h) = counted_emperor("narrow_update");
    let pid = h.wait_start("row7.ini").pid;
    let before = reads(&mut sql);

    sql.exec(&format!("UPDATE vassals SET config = {} WHERE name = 'row7.ini'", lit(&config("v2"))));
    let read =
        reads_until(&mut sql, before, "row7.ini reloaded", || received_config(&h, "row7.ini") == Some(config("v2")));
    assert_eq!(read, 1, "only the notified row is read again");
    assert_eq!(recvs(&h, "row7.ini", 1), 1);
    assert!(alive(pid) && recvs(&h, "row8.ini", 1) == 0, "the other rows are left alone");

    // A new row and the row that moved out of the query, one read each.
    let before = reads(&mut sql);
    insert(&mut sql, "new.ini", &config("n"), "");
    sql.exec("DELETE FROM vassals WHERE name = 'row8.ini'");
    let read = reads_until(&mut sql, before, "new.ini started, row8.ini stopped", || {
        !h.starts("new.ini").is_empty() && h.events("row8.ini").iter().any(|e| e.is_recv(0))
    });
    assert_eq!(read, 1, "a deleted row is not found, so not read; the new one is");
}

#[test]
fn a_rename_stops_the_old_name_and_starts_the_new_one() {
    let (_pg, mut sql, h) = counted_emperor("narrow_rename");
    let old = h.wait_start("row3.ini").pid;
    let before = reads(&mut sql);

    sql.exec("UPDATE vassals SET name = 'renamed.ini' WHERE name = 'row3.ini'");
    h.wait_reaped(old, "the old name");
    let read = reads_until(&mut sql, before, "renamed.ini started", || !h.starts("renamed.ini").is_empty());
    assert_eq!(read, 1, "both names are looked up; only the new one exists");
    wait_config(&h, "renamed.ini", &config("r"));
}

#[test]
fn unnamed_notifications_and_truncate_run_the_whole_query() {
    let (_pg, mut sql, h) = counted_emperor("narrow_full");

    // An older trigger's payload, or none: the whole query, once.
    for payload in ["", ", 'UPDATE'"] {
        let before = reads(&mut sql);
        sql.exec(&format!("NOTIFY emperor_vassals{payload}"));
        wait_until(DEADLINE, format!("the whole query after NOTIFY{payload}"), || {
            cond(reads(&mut sql) >= before + ROWS)
        });
    }
    // A statement naming more rows than the source keeps apart: one whole query.
    let before = reads(&mut sql);
    sql.exec(&format!("UPDATE vassals SET config = {}", lit(&config("all"))));
    let read = reads_until(&mut sql, before, "every row reloaded", || {
        (1..=ROWS).all(|i| received_config(&h, &format!("row{i}.ini")) == Some(config("all")))
    });
    assert!(read < 3 * ROWS, "{ROWS} notifications coalesce: {read} rows read");

    let pids: Vec<i32> = (1..=ROWS).map(|i| h.starts(&format!("row{i}.ini"))[0].pid).collect();
    sql.exec("TRUNCATE vassals");
    pids.into_iter().for_each(|pid| h.wait_reaped(pid, "truncated row"));
}

#[test]
fn a_query_whose_rows_depend_on_each_other_is_never_narrowed() {
    let pg = Postgres::shared();
    let mut sql = pg.create_db("narrow_limit");
    insert(&mut sql, "a.ini", &config("a"), "");
    let mut h = Harness::new();
    h.start(&[uri(
        &pg,
        "narrow_limit",
        "SELECT name, config, ts FROM vassals ORDER BY ts DESC LIMIT 1;listen=emperor_vassals",
    )
    .as_str()]);
    let a = h.wait_start("a.ini").pid;
    // The newer row pushes a.ini out of the query without a.ini's notification.
    insert(&mut sql, "b.ini", &config("b"), "");
    h.wait_start("b.ini");
    h.wait_reaped(a, "the row pushed out by the limit");
}
