//! The PostgreSQL status store: `TABLE` and `TABLE_hosts` (the DDL is
//! [`DDL`], also shipped as `deploy/pg/fleet.sql`), written with one
//! `INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE` per batch and
//! timestamps from `now()`. The tables carry no trigger: a status write
//! never wakes a `LISTEN`ing emperor.

use super::dirty::{Batch, Row};
use super::{Claim, Me, Store};
use crate::source::table::pg::{error_message, plain_client};
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::{Client, Statement};

/// The tables, for `TABLE` = `{status}` and `TABLE_hosts` = `{hosts}`.
pub const DDL: &str = "\
CREATE TABLE IF NOT EXISTS {status} (
    host text NOT NULL,
    name text NOT NULL,
    state text NOT NULL,
    pid integer,
    since timestamptz,
    restarts integer NOT NULL DEFAULT 0,
    last_exit text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host, name)
) WITH (fillfactor = 80);
CREATE TABLE IF NOT EXISTS {hosts} (
    host text PRIMARY KEY,
    emperor_id text NOT NULL,
    pid integer,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    vassals jsonb NOT NULL DEFAULT '{}',
    stopped_at timestamptz
);";

/// Adds the column a table made by an earlier version lacks.
const UPGRADE: &str = "ALTER TABLE {hosts} ADD COLUMN IF NOT EXISTS stopped_at timestamptz";

/// A status table of a `pg://` source (`;status=TABLE`).
#[derive(Debug, Clone)]
pub struct PgStatus {
    /// The source's id (its URI, password masked).
    pub source: String,
    /// How to connect (the source's own conninfo).
    pub config: tokio_postgres::Config,
    /// The vassal status table; the heartbeats go to `TABLE_hosts`.
    pub table: String,
    /// How often the heartbeat is renewed.
    pub heartbeat: Duration,
}

/// One connection and its prepared statements.
pub struct Conn {
    client: Client,
    claim: Statement,
    owner: Statement,
    beat: Statement,
    stopped: Statement,
    read: Statement,
    upsert: Statement,
    delete: Statement,
}

/// `name` as a quoted SQL identifier, each dot-separated part on its own
/// (`schema.table`).
fn quote(name: &str) -> String {
    name.split('.').map(|part| format!("\"{}\"", part.replace('"', "\"\""))).collect::<Vec<_>>().join(".")
}

impl PgStatus {
    fn hosts_table(&self) -> String {
        format!("{}_hosts", self.table)
    }

    /// Creates the tables that are missing, and the `stopped_at` column a
    /// table of an earlier version lacks (both checked first, so that an
    /// emperor without the right to change tables works with shipped ones).
    async fn ensure_tables(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        let hosts = quote(&self.hosts_table());
        let found = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL, \
                 EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($2) \
                         AND attname = 'stopped_at' AND NOT attisdropped)",
                &[&quote(&self.table), &hosts],
            )
            .await?;
        if !found.get::<_, bool>(0) {
            let ddl = DDL.replace("{status}", &quote(&self.table)).replace("{hosts}", &hosts);
            client.batch_execute(&ddl).await?;
        } else if !found.get::<_, bool>(1) {
            client.batch_execute(&UPGRADE.replace("{hosts}", &hosts)).await?;
        }
        Ok(())
    }

    async fn prepare(&self, client: Client) -> Result<Conn, tokio_postgres::Error> {
        let (status, hosts) = (quote(&self.table), quote(&self.hosts_table()));
        let claim = client
            .prepare(&format!(
                "INSERT INTO {hosts} AS h (host, emperor_id, pid, started_at, heartbeat_at, vassals) \
                 VALUES ($1, $2, $3, now(), now(), $4::text::jsonb) \
                 ON CONFLICT (host) DO UPDATE SET emperor_id = EXCLUDED.emperor_id, pid = EXCLUDED.pid, \
                   started_at = CASE WHEN h.emperor_id = EXCLUDED.emperor_id AND h.pid IS NOT DISTINCT FROM EXCLUDED.pid \
                                THEN h.started_at ELSE now() END, \
                   heartbeat_at = now(), vassals = EXCLUDED.vassals, stopped_at = NULL \
                 WHERE h.emperor_id = EXCLUDED.emperor_id OR h.heartbeat_at < now() - $5::float8 * interval '1 second' \
                 RETURNING 1"
            ))
            .await?;
        let owner = client.prepare(&format!("SELECT emperor_id, pid FROM {hosts} WHERE host = $1")).await?;
        let beat = client
            .prepare(&format!(
                "UPDATE {hosts} SET heartbeat_at = now(), vassals = $3::text::jsonb WHERE host = $1 AND emperor_id = $2"
            ))
            .await?;
        let stopped = client
            .prepare(&format!(
                "UPDATE {hosts} SET heartbeat_at = now(), stopped_at = now(), vassals = $3::text::jsonb \
                 WHERE host = $1 AND emperor_id = $2"
            ))
            .await?;
        let read = client
            .prepare(&format!("SELECT name, state, pid, restarts, last_exit FROM {status} WHERE host = $1"))
            .await?;
        let upsert = client
            .prepare(&format!(
                "INSERT INTO {status} AS s (host, name, state, pid, since, restarts, last_exit, updated_at) \
                 SELECT $1, u.name, u.state, u.pid, now() - u.age * interval '1 second', u.restarts, u.last_exit, now() \
                 FROM unnest($2::text[], $3::text[], $4::int4[], $5::float8[], $6::int4[], $7::text[]) \
                   AS u(name, state, pid, age, restarts, last_exit) \
                 ON CONFLICT (host, name) DO UPDATE SET state = EXCLUDED.state, pid = EXCLUDED.pid, \
                   since = COALESCE(EXCLUDED.since, s.since), restarts = EXCLUDED.restarts, \
                   last_exit = EXCLUDED.last_exit, updated_at = now()"
            ))
            .await?;
        let delete =
            client.prepare(&format!("DELETE FROM {status} WHERE host = $1 AND name = ANY($2::text[])")).await?;
        Ok(Conn { client, claim, owner, beat, stopped, read, upsert, delete })
    }
}

impl Store for PgStatus {
    type Conn = Conn;

    fn source(&self) -> &str {
        &self.source
    }

    fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    async fn connect(&self) -> Result<Conn, String> {
        let client = plain_client(&self.config, "status store").await?;
        self.ensure_tables(&client).await.map_err(error_message)?;
        self.prepare(client).await.map_err(error_message)
    }

    async fn claim(&self, conn: &mut Conn, me: &Me, lease: Duration, counts: &str) -> Result<Claim, String> {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&me.host, &me.emperor_id, &me.pid, &counts, &lease.as_secs_f64()];
        if !conn.client.query(&conn.claim, &params).await.map_err(error_message)?.is_empty() {
            return Ok(Claim::Ours);
        }
        let row = conn.client.query_opt(&conn.owner, &[&me.host]).await.map_err(error_message)?;
        Ok(match row {
            Some(row) => Claim::Taken { emperor_id: row.get(0), pid: row.get(1) },
            // Deleted meanwhile: the next claim takes it.
            None => Claim::Taken { emperor_id: "?".into(), pid: None },
        })
    }

    async fn beat(&self, conn: &mut Conn, me: &Me, counts: &str) -> Result<bool, String> {
        let updated =
            conn.client.execute(&conn.beat, &[&me.host, &me.emperor_id, &counts]).await.map_err(error_message)?;
        Ok(updated == 1)
    }

    async fn stopped(&self, conn: &mut Conn, me: &Me, counts: &str) -> Result<bool, String> {
        let updated =
            conn.client.execute(&conn.stopped, &[&me.host, &me.emperor_id, &counts]).await.map_err(error_message)?;
        Ok(updated == 1)
    }

    async fn read(&self, conn: &mut Conn, host: &str) -> Result<HashMap<String, Row>, String> {
        let rows = conn.client.query(&conn.read, &[&host]).await.map_err(error_message)?;
        Ok(rows
            .iter()
            .map(|r| {
                let state: String = r.get(1);
                let row = Row {
                    state: super::dirty::state_name(&state),
                    pid: r.get(2),
                    since: None,
                    restarts: r.get(3),
                    last_exit: r.get(4),
                };
                (r.get(0), row)
            })
            .collect())
    }

    async fn write(&self, conn: &mut Conn, host: &str, batch: &Batch) -> Result<(), String> {
        if !batch.upserts.is_empty() {
            let ups = &batch.upserts;
            let names: Vec<&str> = ups.iter().map(|u| u.name.as_str()).collect();
            let states: Vec<&str> = ups.iter().map(|u| u.row.state).collect();
            let pids: Vec<Option<i32>> = ups.iter().map(|u| u.row.pid).collect();
            let ages: Vec<Option<f64>> = ups.iter().map(|u| u.age).collect();
            let restarts: Vec<i32> = ups.iter().map(|u| u.row.restarts).collect();
            let exits: Vec<Option<&str>> = ups.iter().map(|u| u.row.last_exit.as_deref()).collect();
            conn.client
                .execute(&conn.upsert, &[&host, &names, &states, &pids, &ages, &restarts, &exits])
                .await
                .map_err(error_message)?;
        }
        if !batch.deletes.is_empty() {
            conn.client.execute(&conn.delete, &[&host, &batch.deletes]).await.map_err(error_message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn qualified_names_are_quoted_by_part() {
        assert_eq!(quote("emperor_status"), "\"emperor_status\"");
        assert_eq!(quote("fleet.St\"x"), "\"fleet\".\"St\"\"x\"");
    }
}
