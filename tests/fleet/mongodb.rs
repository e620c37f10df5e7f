//! Status write-back to MongoDB (`mongodb://…;status=COLLECTION`) against
//! the stand-in server: documents follow the vassals, a crash shows, a
//! removed vassal's document goes, the heartbeat advances, a second
//! emperor with the same host name is refused, a clean stop shows.

use super::{ctl_list, Seen};
use crate::common::*;
use crate::servers::{Mongo, MongoClient};
use mongodb::bson::{doc, DateTime, Document};
use mongodb::Collection;

/// The status documents of `host`, as name → (state, pid).
fn status_docs(client: &MongoClient, coll: &Collection<Document>, host: &str) -> Seen {
    let cursor = client.run(coll.find(doc! { "host": host })).expect("find status");
    let docs: Vec<Document> = client.run(futures::TryStreamExt::try_collect(cursor)).expect("read status");
    docs.iter()
        .map(|d| {
            let name = d.get_str("name").expect("name").to_owned();
            assert_eq!(d.get_str("_id").expect("_id"), format!("{host}/{name}"));
            (name, (d.get_str("state").expect("state").to_owned(), d.get_i32("pid").ok()))
        })
        .collect()
}

fn wait_docs_match(client: &MongoClient, coll: &Collection<Document>, h: &Harness, names: &[&str]) -> Seen {
    wait_host_docs_match(client, coll, h, "m1", names)
}

fn wait_host_docs_match(
    client: &MongoClient,
    coll: &Collection<Document>,
    h: &Harness,
    host: &str,
    names: &[&str],
) -> Seen {
    wait_until(DEADLINE, format!("the status documents of {host} to match ctl list"), || {
        let listed = ctl_list(h)?;
        let complete = names.iter().all(|n| listed.get(*n).is_some_and(|(state, _)| state == "running"));
        let docs = status_docs(client, coll, host);
        (complete && listed.len() == names.len() && docs == listed).then_some(docs)
    })
}

/// An emperor as `host` on `db.vassals`, writing status to
/// `db.emperor_status` with a short heartbeat, and two vassals `a.ini` and
/// `b.ini` for it; returns its harness and its source URI.
fn start_host(m: &Mongo, client: &MongoClient, db: &str, host: &str) -> (Harness, String) {
    let mut h = Harness::new();
    let uri = format!(
        "mongodb://127.0.0.1:{}/?directConnection=true#{db}.vassals,{{host:'{host}'}};\
         status=emperor_status;status-heartbeat=0.5",
        m.port
    );
    h.start(&["--host", host, "--resync", "600", &uri]);
    for name in ["a.ini", "b.ini"] {
        let d = doc! { "name": name, "config": uwsgi_ini(&format!("# {host}")), "ts": DateTime::now(), "host": host };
        client.run(client.coll(db, "vassals").insert_one(d)).expect("insert");
    }
    (h, uri)
}

#[test]
fn mongodb_documents_follow_the_vassals() {
    let m = Mongo::shared();
    let client = m.client();
    let (h, uri) = start_host(&m, &client, "fleet_status", "m1");
    let (vassals, status) = (client.coll("fleet_status", "vassals"), client.coll("fleet_status", "emperor_status"));
    let hosts = client.coll("fleet_status", "emperor_status_hosts");
    let docs = wait_docs_match(&client, &status, &h, &["a.ini", "b.ini"]);

    let pid = docs["a.ini"].1.expect("a.ini's pid");
    kill(pid, libc::SIGKILL);
    wait_until(DEADLINE, "a.ini's crash in its status document", || {
        let d = client.run(status.find_one(doc! { "_id": "m1/a.ini" })).ok()??;
        cond(d.get_str("last_exit").ok() == Some("signal SIGKILL") && d.get_datetime("since").is_ok())
    });
    let docs = wait_docs_match(&client, &status, &h, &["a.ini", "b.ini"]);
    assert_ne!(docs["a.ini"].1, Some(pid));

    client.run(vassals.delete_one(doc! { "name": "b.ini" })).expect("delete");
    wait_docs_match(&client, &status, &h, &["a.ini"]);

    let beat = |client: &MongoClient| -> Option<(i64, Document)> {
        let d = client.run(hosts.find_one(doc! { "_id": "m1" })).ok()??;
        Some((d.get_datetime("heartbeat_at").ok()?.timestamp_millis(), d.get_document("vassals").ok()?.clone()))
    };
    let (first, _) = wait_until(DEADLINE, "a heartbeat document", || beat(&client));
    let (_, counts) = wait_until(DEADLINE, "the heartbeat to advance", || beat(&client).filter(|(at, _)| *at > first));
    assert!(counts.contains_key("running"), "the counts: {counts}");

    // A second live emperor as m1 is refused.
    let twin = Harness::new();
    let mut run = twin.spawn(&["--host", "m1", &uri], &[]);
    assert!(!run.wait_exit_within(DEADLINE).success(), "a second emperor as m1 must not start");
    let log = twin.log_text();
    assert!(log.contains("another emperor") && log.contains("\"m1\""), "the refusal names the host: {log}");
}

#[test]
fn mongodb_a_clean_stop_shows_every_vassal_stopped_and_the_host_stopped() {
    let m = Mongo::shared();
    let client = m.client();
    let (mut h, _) = start_host(&m, &client, "fleet_clean_stop", "m2");
    let status = client.coll("fleet_clean_stop", "emperor_status");
    let hosts = client.coll("fleet_clean_stop", "emperor_status_hosts");
    wait_host_docs_match(&client, &status, &h, "m2", &["a.ini", "b.ini"]);
    let host_doc =
        || client.run(hosts.find_one(doc! { "_id": "m2" })).expect("find the host").expect("a host document");
    assert!(host_doc().get_datetime("stopped_at").is_err(), "a running emperor has no stopped_at");

    h.signal_emperor(libc::SIGTERM);
    assert!(h.wait_emperor_exit(DEADLINE).success(), "a clean stop");
    // Written before the emperor exited: read at once, no waiting.
    let stopped = |name: &str| (name.to_owned(), ("stopped".to_owned(), None));
    assert_eq!(status_docs(&client, &status, "m2"), Seen::from([stopped("a.ini"), stopped("b.ini")]));
    let host = host_doc();
    assert!(host.get_datetime("stopped_at").is_ok(), "stopped_at is set: {host}");
    let counts = host.get_document("vassals").expect("the counts");
    let count = |state: &str| counts.get(state).and_then(|n| n.as_i64().or(n.as_i32().map(i64::from)));
    assert_eq!((count("stopped"), count("running")), (Some(2), Some(0)), "{counts}");
}
