//! `mongodb://` against the binary's SecantusDB (a database per test; the
//! outage check has a server of its own), in the upstream URI form.

use crate::checks::{Bad, BadItems, Driver, Family, Outage, Secret};
use crate::common::uwsgi_ini;
use crate::servers::{free_port, Mongo, MongoClient};
use mongodb::bson::{doc, Bson, DateTime, Document};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A database of its own on a server, and a client on it.
pub struct Mongodb {
    server: Arc<Mongo>,
    db: String,
    client: MongoClient,
    /// The next `_id` (integers: the source lists in `_id` order).
    next_id: i64,
}

impl Mongodb {
    fn on(server: Arc<Mongo>) -> Self {
        static DATABASES: AtomicUsize = AtomicUsize::new(0);
        let db = format!("conformance_{}", DATABASES.fetch_add(1, Ordering::Relaxed));
        let client = server.client();
        Mongodb { server, db, client, next_id: 1 }
    }

    fn shared() -> Self {
        Self::on(Mongo::shared())
    }

    fn private() -> Self {
        Self::on(Arc::new(Mongo::private()))
    }

    fn coll(&self) -> mongodb::Collection<Document> {
        self.client.coll(&self.db, "vassals")
    }

    fn mongo(&mut self) -> &mut Mongo {
        Arc::get_mut(&mut self.server).expect("the outage check has a server of its own")
    }
}

impl Driver for Mongodb {
    const FAMILY: Family = Family::Snapshot;

    fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{},{}.vassals", self.server.port, self.db)
    }

    fn put(&mut self, base: &str, tag: &str) {
        let set = doc! { "config": uwsgi_ini(&format!("# {tag}")), "ts": DateTime::now() };
        let update = doc! { "$set": set, "$setOnInsert": { "_id": self.next_id } };
        self.next_id += 1;
        self.client.run(self.coll().update_one(doc! { "name": base }, update).upsert(true)).expect("upsert");
    }

    fn delete(&mut self, base: &str) {
        self.client.run(self.coll().delete_one(doc! { "name": base })).expect("delete_one");
    }

    /// A change to a field the source does not read.
    fn noop(&mut self) {
        let update = doc! { "$inc": { "noop": 1 } };
        self.client.run(self.coll().update_many(doc! {}, update)).expect("update_many");
    }
}

impl BadItems for Mongodb {
    /// Documents 2 to 7 after `good.ini`: one bad document of each kind, a
    /// duplicate, and a good JSON one among them.
    fn put_bad(&mut self) -> Bad {
        let (good, now) = (uwsgi_ini("# good"), DateTime::now());
        let docs = vec![
            doc! { "_id": 2, "name": Bson::Null, "config": &good, "ts": now },
            doc! { "_id": 3, "name": "../evil.ini", "config": &good, "ts": now },
            doc! { "_id": 4, "name": "noconf.ini", "ts": now },
            doc! { "_id": 5, "name": "good.ini", "config": uwsgi_ini("# dup"), "ts": now },
            doc! { "_id": 6, "name": "badts.ini", "config": &good, "ts": "yesterday" },
            doc! { "_id": 7, "name": "also-good.json", "config": "{\"uwsgi\": {\"master\": true}}", "ts": 17 },
        ];
        self.next_id = 8;
        self.client.run(self.coll().insert_many(docs)).expect("insert_many");
        let warnings = [
            ("_id=2", Some("NULL")),
            ("../evil.ini", Some("path separator")),
            ("noconf.ini", Some("config is NULL or missing")),
            ("_id=5", Some("duplicate")),
            ("badts.ini", Some("ts is not")),
        ];
        Bad { items: 5, refused: "", warnings: warnings.map(|(n, s)| (n.to_owned(), s)).into() }
    }

    fn good_config(&self) -> Option<String> {
        Some(uwsgi_ini("# good"))
    }

    fn also_good(&self) -> Vec<String> {
        vec!["also-good.json".into()]
    }
}

impl Outage for Mongodb {
    const NOTICE: &'static str = "failed; running vassals are kept";
    const RECOVERED: Option<&'static str> = Some("source recovered");

    fn stop(&mut self) {
        self.mongo().kill();
    }

    /// Back on another port, out of the source's reach.
    fn cut_off(&mut self) -> bool {
        let side = free_port();
        self.mongo().restart_on(side);
        self.client = self.server.client_on(side);
        true
    }

    fn restart(&mut self) {
        let port = self.server.port;
        self.mongo().restart_on(port);
        self.client = self.server.client();
    }
}

impl Secret for Mongodb {
    fn uris_with(&self, secret: &str) -> Vec<String> {
        let (port, db) = (self.server.port, &self.db);
        vec![
            format!("mongodb://emperor:{secret}@127.0.0.1:{port}/?directConnection=true#{db}.vassals"),
            format!("mongodb2://addr=127.0.0.1:{port},collection={db}.vassals,username=emperor,password={secret}"),
        ]
    }
}

mod shared {
    conformance!(super::Mongodb::shared() =>
        first_events, ends_within_a_second_of_shutdown, create_change_delete, unchanged_state_sends_nothing, bad_item_reported_once,
        no_secret_in_ids_or_logs);
}

mod private {
    conformance!(super::Mongodb::private() => outage_removes_nothing);
}
