//! A source whose server stalls (a PostgreSQL cluster stopped with
//! SIGSTOP, not down: connections stay open, nothing answers): the other
//! sources and every vassal keep being served, the stall is detected by the
//! query timeout and reported (the source is down in `ctl sources`), and
//! once the server resumes the source resyncs by itself.

mod common;
mod servers;

use common::*;
use serde_json::Value;
use servers::{lit, Postgres};
use std::time::Duration;

/// Long enough for the query timeout (30 s) plus a reconnect.
const STALL_DEADLINE: Duration = Duration::from_secs(60);

/// The parent pid of `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// A whole PostgreSQL server (its postmaster and every backend) stopped
/// with SIGSTOP; continued when dropped.
struct Stalled(Vec<i32>);

impl Stalled {
    fn stop(postmaster: i32) -> Self {
        let mut pids = vec![postmaster];
        pids.extend(all_pids().into_iter().filter(|&pid| parent_of(pid) == Some(postmaster)));
        for &pid in &pids {
            kill(pid, libc::SIGSTOP);
        }
        Self(pids)
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        for &pid in &self.0 {
            kill(pid, libc::SIGCONT);
        }
    }
}

/// Whether `ctl sources` says the source whose id starts with `prefix` is up.
fn source_up(h: &Harness, prefix: &str) -> Option<bool> {
    let out = std::process::Command::new(EMPEROR)
        .args(["ctl", "--control-socket"])
        .arg(h.state.join("control.sock"))
        .args(["sources", "-o", "json"])
        .output()
        .ok()?;
    let sources: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
    let source = sources.iter().find(|s| s["source"].as_str().is_some_and(|id| id.starts_with(prefix)))?;
    source["up"].as_bool()
}

#[test]
fn a_stalled_postgres_is_reported_down_and_resynced_when_it_resumes() {
    let pg = Postgres::private();
    let mut sql = pg.create_db("stall");
    let insert = |sql: &mut servers::PgClient, name: &str| {
        sql.exec(&format!("INSERT INTO vassals (name, config) VALUES ({}, {})", lit(name), lit(&uwsgi_ini(""))));
    };
    insert(&mut sql, "app.ini");
    let mut h = Harness::new();
    put(&h.vassal("d.ini"), &uwsgi_ini(""));
    let pg_uri = format!("pg://{};SELECT name, config, ts FROM vassals;listen=emperor_vassals", pg.conninfo("stall"));
    let dir = h.dir_source();
    h.start(&["--resync", "1", &dir, &pg_uri]);
    let app = h.wait_start("app.ini").pid;
    let d = h.wait_start("d.ini").pid;
    wait_until(DEADLINE, "the pg source up", || cond(source_up(&h, "pg://") == Some(true)));

    let stalled = Stalled::stop(pg.pid.expect("postmaster pid"));
    // The directory source and the vassals are served meanwhile.
    touch(&h.vassal("d.ini"));
    assert_eq!(h.wait_event("d.ini", "recv 1 while pg is stalled", |e| e.is_recv(1)).pid, d);
    wait_until(STALL_DEADLINE, "the stalled pg source reported down", || cond(source_up(&h, "pg://") == Some(false)));
    assert!(alive(app), "the stalled source's vassal keeps running on the last snapshot");
    assert_eq!(source_up(&h, "dir://"), Some(true), "the other source is unaffected");

    drop(stalled);
    wait_until(STALL_DEADLINE, "the pg source up again", || cond(source_up(&h, "pg://") == Some(true)));
    insert(&mut sql, "new.ini");
    h.wait_start("new.ini");
    assert_eq!(h.starts("app.ini").len(), 1, "app.ini must not be restarted");
    assert!(alive(app));
}
