//! Status write-back to MongoDB (`mongodb://…;status=COLLECTION`) against
//! the stand-in server: documents follow the vassals, a crash shows, a
//! removed vassal's document goes, the heartbeat advances, a second
//! emperor with the same host name is refused.

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
    wait_until(DEADLINE, "the status documents to match ctl list", || {
        let listed = ctl_list(h)?;
        let complete = names.iter().all(|n| listed.get(*n).is_some_and(|(state, _)| state == "running"));
        let docs = status_docs(client, coll, "m1");
        (complete && listed.len() == names.len() && docs == listed).then_some(docs)
    })
}

#[test]
fn mongodb_documents_follow_the_vassals() {
    let m = Mongo::shared();
    let client = m.client();
    let vassals = client.coll("fleet_status", "vassals");
    let status = client.coll("fleet_status", "emperor_status");
    let hosts = client.coll("fleet_status", "emperor_status_hosts");
    let mut h = Harness::new();
    let uri = format!(
        "mongodb://127.0.0.1:{}/?directConnection=true#fleet_status.vassals,{{host:'m1'}};\
         status=emperor_status;status-heartbeat=0.5",
        m.port
    );
    h.start(&["--host", "m1", "--resync", "600", &uri]);
    for name in ["a.ini", "b.ini"] {
        let d = doc! { "name": name, "config": uwsgi_ini("# m1"), "ts": DateTime::now(), "host": "m1" };
        client.run(vassals.insert_one(d)).expect("insert");
    }
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
