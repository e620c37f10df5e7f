//! `mongodb://` and `mongodb2://` against a real MongoDB-wire server
//! (SecantusDB), end to end: change streams, spawn / reload / stop from
//! document changes, the three URI forms, filters and fleets. Each test
//! uses its own database of a shared server. Bad documents and server
//! outages are checked at the source by the conformance suite
//! (`tests/conformance/mongodb.rs`).

mod common;
mod servers;

use common::*;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::Collection;
use servers::{Mongo, MongoClient};
use std::time::{Duration, Instant};

fn config(tag: &str) -> String {
    uwsgi_ini(&format!("# {tag}"))
}

/// The upstream form: `mongodb://HOST:PORT,DB.COLLECTION[,FILTER]`.
fn upstream_uri(m: &Mongo, db: &str, filter: &str) -> String {
    let filter = if filter.is_empty() { String::new() } else { format!(",{filter}") };
    format!("mongodb://127.0.0.1:{},{db}.vassals{filter}", m.port)
}

fn vassal(name: &str, config: &str, host: &str) -> Document {
    doc! { "name": name, "config": config, "ts": DateTime::now(), "host": host }
}

fn insert(client: &MongoClient, coll: &Collection<Document>, doc: Document) {
    client.run(coll.insert_one(doc)).expect("insert_one");
}

fn update(client: &MongoClient, coll: &Collection<Document>, name: &str, set: Document) {
    let r = client.run(coll.update_one(doc! { "name": name }, doc! { "$set": set })).expect("update_one");
    assert_eq!(r.matched_count, 1, "update of {name}");
}

#[test]
fn change_stream_insert_update_delete() {
    let m = Mongo::shared();
    let client = m.client();
    let coll = client.coll("crud", "vassals");
    let mut h = Harness::new();
    h.start(&[upstream_uri(&m, "crud", "").as_str()]);

    insert(&client, &coll, vassal("app.ini", &config("v1"), ""));
    let start = h.wait_start("app.ini");
    assert_eq!(start.argv(), "--ini emperor://app.ini");
    wait_config(&h, "app.ini", &config("v1"));

    update(&client, &coll, "app.ini", doc! { "config": config("v2"), "ts": DateTime::now() });
    wait_recvs(&h, "app.ini", 1, 1);
    wait_config(&h, "app.ini", &config("v2"));
    h.wait_event("app.ini", "reloaded", |e| e.kind == "reloaded");

    // A ts one millisecond later, config unchanged → reload.
    let current = client.run(coll.find_one(doc! { "name": "app.ini" })).unwrap().unwrap();
    let ts = current.get_datetime("ts").unwrap().timestamp_millis();
    update(&client, &coll, "app.ini", doc! { "ts": DateTime::from_millis(ts + 1) });
    wait_recvs(&h, "app.ini", 1, 2);
    assert!(alive(start.pid));
    assert_eq!(h.starts("app.ini").len(), 1, "graceful reloads must not respawn");

    client.run(coll.delete_one(doc! { "name": "app.ini" })).unwrap();
    h.wait_event("app.ini", "recv 0 (stop)", |e| e.is_recv(0));
    h.wait_reaped(start.pid, "deleted vassal");
}

#[test]
fn uri_forms_filters_and_fleet() {
    let m = Mongo::shared();
    let client = m.client();
    let coll = client.coll("fleet", "vassals");
    // Host a: a standard connection string plus `#DB.COLLECTION,FILTER` in relaxed JSON.
    let mut a = Harness::new();
    a.start(&[format!("{}#fleet.vassals,{{host:'a', enabled:1}}", m.uri()).as_str()]);
    // Host b: the upstream key=value form.
    let mut b = Harness::new();
    b.start(&[format!("mongodb2://addr=127.0.0.1:{},collection=fleet.vassals,json={{host:'b'}}", m.port).as_str()]);
    // Everything enabled, upstream form with its relaxed filter.
    let mut all = Harness::new();
    all.start(&[upstream_uri(&m, "fleet", "{enabled:1}").as_str()]);

    let mut one = vassal("one.ini", &config("1"), "a");
    one.insert("enabled", 1);
    insert(&client, &coll, one);
    insert(&client, &coll, vassal("two.ini", &config("2"), "b"));
    let mut three = vassal("three.ini", &config("3"), "a");
    three.insert("enabled", 0);
    insert(&client, &coll, three);

    let one_pid = a.wait_start("one.ini").pid;
    b.wait_start("two.ini");
    all.wait_start("one.ini");

    // one.ini moves to host b: a stops it, b starts it with its config.
    update(&client, &coll, "one.ini", doc! { "host": "b" });
    a.wait_event("one.ini", "recv 0 (stop) after the document left the filter", |e| e.is_recv(0));
    a.wait_reaped(one_pid, "vassal moved to the other host");
    b.wait_start("one.ini");
    wait_config(&b, "one.ini", &config("1"));
    // three.ini enabled → the {enabled:1} emperor starts it; a still does not (host a but was disabled).
    update(&client, &coll, "three.ini", doc! { "enabled": 1 });
    all.wait_start("three.ini");
    a.wait_start("three.ini");

    assert_eq!(a.recorded_names(), ["one.ini", "three.ini"]);
    assert_eq!(b.recorded_names(), ["one.ini", "two.ini"]);
    assert_eq!(all.recorded_names(), ["one.ini", "three.ini"]);
    assert_eq!(all.starts("one.ini").len(), 1, "a host change is no change for the unfiltered emperor");
}

#[test]
fn change_stream_latency() {
    let m = Mongo::shared();
    let client = m.client();
    let coll = client.coll("latency", "vassals");
    let mut h = Harness::new();
    h.start(&[upstream_uri(&m, "latency", "").as_str()]);
    insert(&client, &coll, vassal("sentinel.ini", &config("s"), ""));
    h.wait_start("sentinel.ini");

    let mut samples = Vec::new();
    for i in 0..20 {
        let name = format!("lat{i}.ini");
        let t = Instant::now();
        insert(&client, &coll, vassal(&name, &config("x"), ""));
        wait_every(DEADLINE, Duration::from_millis(1), format!("{name}: start"), || h.starts(&name).first().cloned());
        samples.push(t.elapsed());
    }
    samples.sort();
    eprintln!(
        "latency mongodb change stream insert→spawn: n={} p50={:?} max={:?}",
        samples.len(),
        samples[10],
        samples[19]
    );
}
