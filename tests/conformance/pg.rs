//! `pg://` against the binary's PostgreSQL (a database per test; the
//! outage check has a server of its own), with `LISTEN` and the shipped
//! `deploy/pg/vassals.sql` table.

use crate::checks::{Bad, BadItems, Driver, Family, Outage, Secret};
use crate::common::uwsgi_ini;
use crate::servers::{lit, PgClient, Postgres};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A database of its own and the query the source runs on it.
pub struct Pg {
    pg: Arc<Postgres>,
    db: String,
    sql: PgClient,
    table: &'static str,
    /// What follows the conninfo in the URI: `;QUERY;options`.
    tail: String,
}

impl Pg {
    /// A fresh database on `pg`.
    fn on(pg: Arc<Postgres>) -> Self {
        static DATABASES: AtomicUsize = AtomicUsize::new(0);
        let db = format!("conformance_{}", DATABASES.fetch_add(1, Ordering::Relaxed));
        let sql = pg.create_db(&db);
        let tail = ";SELECT name, config, ts FROM vassals;listen=emperor_vassals".to_owned();
        Pg { pg, db, sql, table: "vassals", tail }
    }

    fn shared() -> Self {
        Self::on(Postgres::shared())
    }

    fn private() -> Self {
        Self::on(Arc::new(Postgres::private()))
    }

    /// A polled table without constraints (a hand-made schema), where bad
    /// rows can live.
    fn loose() -> Self {
        let mut d = Self::shared();
        d.sql.exec("CREATE TABLE loose (id serial, name text, config text, ts timestamptz DEFAULT now())");
        d.table = "loose";
        d.tail = ";SELECT name, config, ts FROM loose ORDER BY id;interval=0.1".to_owned();
        d
    }

    fn server(&mut self) -> &mut Postgres {
        Arc::get_mut(&mut self.pg).expect("the outage check has a server of its own")
    }
}

impl Driver for Pg {
    const FAMILY: Family = Family::Snapshot;

    fn uri(&self) -> String {
        format!("pg://{}{}", self.pg.conninfo(&self.db), self.tail)
    }

    fn put(&mut self, base: &str, tag: &str) {
        let (t, name, config) = (self.table, lit(base), lit(&uwsgi_ini(&format!("# {tag}"))));
        self.sql.exec(&format!(
            "UPDATE {t} SET config = {config}, ts = clock_timestamp() WHERE name = {name};
             INSERT INTO {t} (name, config) SELECT {name}, {config}
                WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE name = {name});"
        ));
    }

    fn delete(&mut self, base: &str) {
        self.sql.exec(&format!("DELETE FROM {} WHERE name = {}", self.table, lit(base)));
    }

    /// A notification without a change (the polled table re-reads anyway).
    fn noop(&mut self) {
        self.sql.exec("NOTIFY emperor_vassals");
    }
}

impl BadItems for Pg {
    /// Rows 2 to 8 after `good.ini`: one bad row of each kind, a duplicate,
    /// and a good YAML row among them.
    fn put_bad(&mut self) -> Bad {
        let good = lit(&uwsgi_ini("# good"));
        self.sql.exec(&format!(
            "INSERT INTO loose (name, config) VALUES
               (NULL, {good}), ('../evil.ini', {good}), ('noconf.ini', NULL), ('good.ini', {dup}),
               ('also-good.yaml', {yaml}), ('{long}.ini', {good}), ('run.sh', {good});",
            dup = lit(&uwsgi_ini("# dup")),
            yaml = lit("uwsgi:\n  master: true\n"),
            long = "x".repeat(300),
        ));
        let warnings = [
            ("row 2", Some("NULL")),
            ("../evil.ini", Some("path separator")),
            ("noconf.ini", Some("config is NULL")),
            ("row 5", Some("duplicate")),
            ("row 7", None),
            ("run.sh", Some("does not end in")),
        ];
        Bad { items: 7, refused: "", warnings: warnings.map(|(n, s)| (n.to_owned(), s)).into() }
    }

    fn good_config(&self) -> Option<String> {
        Some(uwsgi_ini("# good"))
    }

    fn also_good(&self) -> Vec<String> {
        vec!["also-good.yaml".into()]
    }
}

impl Outage for Pg {
    const NOTICE: &'static str = "failed; running vassals are kept";
    const RECOVERED: Option<&'static str> = Some("source recovered");

    fn stop(&mut self) {
        self.server().kill();
    }

    /// Back on the unix socket only: the source (TCP) still cannot connect.
    fn cut_off(&mut self) -> bool {
        self.server().restart(false);
        true
    }

    fn restart(&mut self) {
        self.server().restart(true);
    }
}

impl Secret for Pg {
    fn uris_with(&self, secret: &str) -> Vec<String> {
        let port = self.pg.port;
        vec![
            format!("pg://{} password={secret}{}", self.pg.conninfo(&self.db), self.tail),
            format!("pg://host=127.0.0.1 password='{secret} quoted' dbname={}", self.db),
            format!("pg://postgresql://postgres:{secret}@127.0.0.1:{port}/{}", self.db),
        ]
    }
}

mod listen {
    conformance!(super::Pg::shared() =>
        first_events, ends_within_a_second_of_shutdown, create_change_delete, unchanged_state_sends_nothing, no_secret_in_ids_or_logs);
}

mod private {
    conformance!(super::Pg::private() => outage_removes_nothing);
}

mod loose {
    conformance!(super::Pg::loose() => bad_item_reported_once);
}
