//! Singleton leases in PostgreSQL: one row per singleton in a table of the
//! source's database (`;leases=TABLE`, default `emperor_leases`, created if
//! missing; `deploy/pg/fleet.sql` holds the same DDL).
//!
//! Expiry is decided by the server's clock alone (`now()`), and every
//! change is one conditional `UPDATE`: a lease is taken only when it has
//! expired or is already ours, and renewed only while it still names us
//! under the same token. Advisory locks are not used: they vanish with a
//! crashed emperor's session while its vassal survives, and outlive a
//! partitioned one until the server's keepalive notices.

use super::error_message;
use crate::fleet::lease::{LeaseStore, StoreFuture};
use std::time::Duration;
use tokio_postgres::Client;

/// The lease table when the URI names none.
pub const DEFAULT_TABLE: &str = "emperor_leases";

/// The leases of one emperor in one PostgreSQL database, over a connection
/// of their own (never the source's, so a slow listing never delays a renewal).
pub struct PgLeases {
    config: tokio_postgres::Config,
    /// The table, quoted.
    table: String,
    holder: String,
    lease: Duration,
    client: Option<Client>,
}

impl PgLeases {
    /// Leases for `holder` in `table`, each lasting `lease` after its last renewal.
    pub fn new(config: tokio_postgres::Config, table: &str, holder: &str, lease: Duration) -> Self {
        let table = table.split('.').map(super::quote_ident).collect::<Vec<_>>().join(".");
        Self { config, table, holder: holder.to_owned(), lease, client: None }
    }

    /// The connection, made (and the table created) when there is none.
    async fn client(&mut self) -> Result<&Client, String> {
        if self.client.is_none() {
            let client = super::plain_client(&self.config, "lease store").await?;
            let ddl = format!(
                "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, holder text, token bigint NOT NULL DEFAULT 0, \
                 expires_at timestamptz NOT NULL DEFAULT '-infinity', acquired_at timestamptz)",
                self.table
            );
            // Two emperors creating it at once: one fails, and finds it next time.
            if let Err(e) = client.batch_execute(&ddl).await {
                tracing::debug!(table = %self.table, error = %e, "creating the lease table");
            }
            self.client = Some(client);
        }
        Ok(self.client.as_ref().expect("just connected"))
    }

    async fn acquire_rows(&mut self, names: &[String]) -> Result<Vec<(String, u64)>, String> {
        let (table, holder, secs) = (self.table.clone(), self.holder.clone(), self.lease.as_secs_f64());
        let client = self.client().await?;
        let create = format!("INSERT INTO {table} (name) SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING");
        client.execute(&create, &[&names]).await.map_err(error_message)?;
        let take = format!(
            "UPDATE {table} SET \
               token = CASE WHEN holder IS DISTINCT FROM $2 OR expires_at < now() THEN token + 1 ELSE token END, \
               acquired_at = CASE WHEN holder IS DISTINCT FROM $2 OR expires_at < now() THEN now() ELSE acquired_at END, \
               holder = $2, expires_at = now() + make_interval(secs => $3) \
             WHERE name = ANY($1) AND (expires_at < now() OR holder = $2) RETURNING name, token"
        );
        let rows = client.query(&take, &[&names, &holder, &secs]).await.map_err(error_message)?;
        Ok(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64)).collect())
    }

    async fn renew_rows(&mut self, held: &[(String, u64)]) -> Result<Vec<String>, String> {
        let (table, holder, secs) = (self.table.clone(), self.holder.clone(), self.lease.as_secs_f64());
        let names: Vec<&str> = held.iter().map(|(n, _)| n.as_str()).collect();
        let tokens: Vec<i64> = held.iter().map(|(_, t)| *t as i64).collect();
        let client = self.client().await?;
        let renew = format!(
            "UPDATE {table} AS l SET expires_at = now() + make_interval(secs => $3) \
             FROM unnest($1::text[], $4::int8[]) AS u(name, token) \
             WHERE l.name = u.name AND l.token = u.token AND l.holder = $2 RETURNING l.name"
        );
        let rows = client.query(&renew, &[&names, &holder, &secs, &tokens]).await.map_err(error_message)?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    async fn release_rows(&mut self, names: &[String]) -> Result<(), String> {
        let (table, holder) = (self.table.clone(), self.holder.clone());
        let client = self.client().await?;
        let release =
            format!("UPDATE {table} SET holder = NULL, expires_at = now() WHERE name = ANY($1) AND holder = $2");
        client.execute(&release, &[&names, &holder]).await.map_err(error_message)?;
        Ok(())
    }
}

impl LeaseStore for PgLeases {
    fn acquire<'a>(&'a mut self, names: &'a [String]) -> StoreFuture<'a, Vec<(String, u64)>> {
        Box::pin(self.acquire_rows(names))
    }

    fn renew<'a>(&'a mut self, held: &'a [(String, u64)]) -> StoreFuture<'a, Vec<String>> {
        Box::pin(self.renew_rows(held))
    }

    fn release<'a>(&'a mut self, names: &'a [String]) -> StoreFuture<'a, ()> {
        Box::pin(self.release_rows(names))
    }

    fn reset(&mut self) {
        self.client = None;
    }
}
