//! `pg://CONNINFO[;QUERY][;listen=CHANNEL][;interval=SECS][;status=TABLE]`:
//! every row of a PostgreSQL query is a vassal with an inline config.
//!
//! The query returns 3 to 6 columns `name, config, ts[, uid, gid[, socket]]`
//! (default `SELECT name,config,ts FROM vassals`). One persistent connection:
//! with `listen=CHANNEL` the source runs `LISTEN CHANNEL`; a notification
//! whose payload names rows (the shipped trigger's) re-reads only those
//! ([`narrow`]), any other re-runs the whole query (bursts coalesce into one
//! fetch), plus a safety-net whole query every `--resync` seconds (or
//! `interval`); without it, it polls every `interval` seconds (default 3,
//! as upstream). A lost connection or a
//! failing query keeps the last snapshot (nothing is stopped) and is retried
//! with exponential backoff. With `status=TABLE` (and optionally
//! `status-heartbeat=SECS`) the emperor writes what runs on its host back to
//! `TABLE` and `TABLE_hosts` ([`crate::fleet::status`]).

use crate::fleet::status;
use crate::source::table::dirty::Dirty;
use crate::source::table::rows::{Field, Row};
use crate::source::table::{self, Backend, Change, Failure};
use crate::source::util::seconds;
use crate::source::util::secret::mask;
use crate::source::{Built, Source, SourceContext, SourceError, SourceTask};
use value::{self as pgvalue, Raw};

mod lease;
pub mod narrow;
mod value;
pub use lease::PgLeases;
use reconciler::SourceId;
use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::{channel, error::TrySendError, Receiver};
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

/// The query upstream runs when the URI has none.
pub const DEFAULT_QUERY: &str = "SELECT name,config,ts FROM vassals";
/// Polling interval without `listen` (upstream's `--emperor-freq`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3);

/// A PostgreSQL table (or any query) of vassals.
#[derive(Debug, Clone)]
pub struct PgSource {
    /// The URI with any password masked.
    id: String,
    config: tokio_postgres::Config,
    query: String,
    listen: Option<String>,
    interval: Option<Duration>,
    status: status::Options,
    /// The table of the singletons' leases (`;leases=TABLE`).
    leases: String,
}

impl PgSource {
    /// Builds the source from the part after `pg://`.
    pub fn from_uri(rest: &str) -> Result<Box<dyn Source>, SourceError> {
        Self::parse(rest).map(|s| Box::new(s) as Box<dyn Source>)
    }

    /// Parses `CONNINFO[;QUERY][;listen=CHANNEL][;interval=SECS][;status=TABLE[;status-heartbeat=SECS]]`.
    fn parse(rest: &str) -> Result<Self, SourceError> {
        let invalid = |message: String| SourceError::Invalid { uri: format!("pg://{}", mask(rest)), message };
        let (conninfo, tail) = rest.split_once(';').unwrap_or((rest, ""));
        let mut query = tail.trim();
        let (mut listen, mut interval, mut status, mut leases) = (None, None, status::Options::default(), None);
        // Options are trailing `;key=value` segments; the query keeps the rest.
        loop {
            let (head, last) = query.rsplit_once(';').unwrap_or(("", query));
            let last = last.trim();
            if let Some(channel) = last.strip_prefix("listen=") {
                if channel.is_empty() {
                    return Err(invalid("listen= needs a channel name".into()));
                }
                listen.get_or_insert_with(|| channel.to_owned());
            } else if let Some(secs) = last.strip_prefix("interval=") {
                let secs = seconds::parse_positive(secs).map_err(|e| invalid(format!("interval: {e}")))?;
                interval.get_or_insert(secs);
            } else if let Some(table) = last.strip_prefix("leases=") {
                if table.is_empty() {
                    return Err(invalid("leases= needs a table name".into()));
                }
                leases.get_or_insert_with(|| table.to_owned());
            } else if last
                .split_once('=')
                .map(|(k, v)| status.take(k, v))
                .transpose()
                .map_err(invalid)?
                .unwrap_or(false)
            {
                // A status option.
            } else if last.is_empty() && !query.is_empty() {
                // A trailing `;` ending the SQL.
            } else {
                break;
            }
            query = head.trim();
        }
        status.check().map_err(invalid)?;
        let query = if query.is_empty() { DEFAULT_QUERY.to_owned() } else { query.to_owned() };
        let mut config = tokio_postgres::Config::from_str(conninfo.trim())
            .map_err(|e| invalid(format!("bad connection string: {e}")))?;
        apply_defaults(&mut config);
        let leases = leases.unwrap_or_else(|| lease::DEFAULT_TABLE.to_owned());
        Ok(Self { id: format!("pg://{}", mask(rest)), config, query, listen, interval, status, leases })
    }

    /// Seconds between two queries when no notification comes.
    fn poll_period(&self, resync: Duration) -> Duration {
        match (&self.listen, self.interval) {
            (_, Some(interval)) => interval,
            (Some(_), None) => resync,
            (None, None) => DEFAULT_INTERVAL,
        }
    }
}

/// The variable that gives the password when the conninfo has none (libpq's).
pub const PASSWORD_ENV: &str = "PGPASSWORD";

/// libpq's defaults: `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
/// `PGDATABASE`, then the local socket directory; plus timeouts so that a
/// dead server is noticed.
fn apply_defaults(config: &mut tokio_postgres::Config) {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        match env("PGHOST") {
            Some(host) => config.host(host),
            None if std::path::Path::new("/var/run/postgresql").is_dir() => config.host("/var/run/postgresql"),
            None => config.host("localhost"),
        };
    }
    if config.get_ports().is_empty() {
        if let Some(port) = env("PGPORT").and_then(|p| p.parse().ok()) {
            config.port(port);
        }
    }
    if config.get_user().is_none() {
        if let Some(user) = env("PGUSER") {
            config.user(user);
        }
    }
    if config.get_password().is_none() {
        if let Some(password) = env(PASSWORD_ENV) {
            config.password(password);
        }
    }
    if config.get_dbname().is_none() {
        if let Some(db) = env("PGDATABASE") {
            config.dbname(db);
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_application_name().is_none() {
        config.application_name("emperor");
    }
    config.keepalives_idle(Duration::from_secs(30));
}

impl Source for PgSource {
    fn id(&self) -> SourceId {
        SourceId(self.id.clone())
    }

    fn build(&self, ctx: SourceContext) -> Built<'_> {
        let backend = self.clone();
        Box::pin(async move { Ok(Box::pin(table::run(backend, ctx)) as SourceTask) })
    }

    fn status(&self) -> Option<status::Target> {
        let table = self.status.name.clone()?;
        let store = status::pg::PgStatus {
            source: self.id.clone(),
            config: self.config.clone(),
            table,
            heartbeat: self.status.heartbeat(),
        };
        Some(status::Target::Pg(store))
    }

    fn lease_store(&self, holder: &str, lease: Duration) -> Option<Box<dyn crate::fleet::lease::LeaseStore>> {
        Some(Box::new(PgLeases::new(self.config.clone(), &self.leases, holder, lease)))
    }
}

/// One connection: the client, and the notifications its connection task
/// forwards (a wake-up, `Err` once the connection has ended; the rows they
/// named wait in `dirty`).
pub struct Conn {
    client: Client,
    notes: Receiver<Result<(), String>>,
    dirty: Arc<Mutex<Dirty>>,
    /// The lookup of a few rows, prepared on first use after each whole
    /// query; `None` inside when the query cannot be narrowed.
    lookup: Option<Option<Statement>>,
    /// The column count of the last whole query.
    columns: usize,
}

impl Backend for PgSource {
    type Conn = Conn;
    const NAME: &'static str = "PostgreSQL";

    /// Connects, spawns the task that drives the connection and forwards
    /// notifications, and runs `LISTEN` when asked to.
    async fn connect(&self) -> Result<Conn, String> {
        let (client, mut connection) = self.config.connect(NoTls).await.map_err(|e| e.to_string())?;
        // One pending wake-up is enough, and the names coalesce in a small
        // set: a flood of NOTIFY costs no memory.
        let (tx, notes) = channel(1);
        let dirty = Arc::new(Mutex::new(Dirty::default()));
        let marked = dirty.clone();
        tokio::spawn(async move {
            let end = loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(note))) => {
                        narrow::note(note.payload(), &mut marked.lock().unwrap_or_else(|e| e.into_inner()));
                        if let Err(TrySendError::Closed(_)) = tx.try_send(Ok(())) {
                            return;
                        }
                    }
                    Some(Ok(AsyncMessage::Notice(n))) => tracing::debug!(notice = %n, "PostgreSQL notice"),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e.to_string(),
                    None => break "connection closed".to_owned(),
                }
            };
            let _ = tx.send(Err(end)).await;
        });
        if let Some(channel) = &self.listen {
            client.batch_execute(&format!("LISTEN {}", quote_ident(channel))).await.map_err(|e| e.to_string())?;
        }
        Ok(Conn { client, notes, dirty, lookup: None, columns: 0 })
    }

    /// Runs the query once and decodes every row.
    async fn fetch(&self, conn: &mut Conn) -> Result<Vec<Row>, Failure> {
        let statement = conn.client.prepare(&self.query).await.map_err(fail)?;
        let columns = statement.columns().len();
        if !(3..=6).contains(&columns) {
            return Err(Failure::Query(format!(
                "the query returns {columns} column(s); expected 3 to 6: name, config, ts[, uid, gid[, socket]]"
            )));
        }
        if columns != conn.columns {
            (conn.lookup, conn.columns) = (None, columns);
        }
        let result = conn.client.query(&statement, &[]).await.map_err(fail)?;
        Ok(result.iter().enumerate().map(|(i, row)| decode(i + 1, row)).collect())
    }

    /// Looks up the rows named `names` through the wrapped query.
    async fn fetch_rows(&self, conn: &mut Conn, names: &BTreeSet<String>) -> Result<Option<Vec<Row>>, Failure> {
        if conn.lookup.is_none() {
            conn.lookup = Some(self.prepare_lookup(conn).await?);
        }
        let Some(Some(statement)) = &conn.lookup else { return Ok(None) };
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        match conn.client.query(statement, &[&names]).await {
            Ok(result) => Ok(Some(result.iter().enumerate().map(|(i, row)| decode(i + 1, row)).collect())),
            Err(e) => {
                // Prepared again next time (the table may have changed).
                conn.lookup = None;
                Err(fail(e))
            }
        }
    }

    async fn changed(&self, conn: &mut Conn, wait: Duration) -> Change {
        tokio::select! {
            biased;
            note = conn.notes.recv() => match note {
                Some(Ok(())) => Change::Rows(conn.dirty.lock().unwrap_or_else(|e| e.into_inner()).take()),
                Some(Err(e)) => Change::Lost(e),
                None => Change::Lost("connection task ended".into()),
            },
            () = tokio::time::sleep(wait) => Change::Quiet,
        }
    }

    fn period(&self, _conn: &Conn, resync: Duration) -> Duration {
        self.poll_period(resync)
    }
}

impl PgSource {
    /// Prepares the lookup of a few rows by name: `None` when the query
    /// cannot be wrapped, or PostgreSQL refuses the wrapped query (its name
    /// column is not text, say): the whole query is then all there is, for
    /// this connection.
    async fn prepare_lookup(&self, conn: &Conn) -> Result<Option<Statement>, Failure> {
        let Some(sql) = narrow::lookup(&self.query, conn.columns) else { return Ok(None) };
        match conn.client.prepare(&sql).await {
            Ok(statement) => Ok(Some(statement)),
            Err(e) if e.is_closed() => Err(fail(e)),
            Err(e) => {
                let error = error_message(e);
                tracing::debug!(source = %self.id, %error, "the query cannot look up single rows; every change re-runs it");
                Ok(None)
            }
        }
    }
}

/// One result row (1-based `number`) as a vassal row.
fn decode(number: usize, row: &tokio_postgres::Row) -> Row {
    let col = |i| -> Field<Raw<'_>> { pgvalue::raw(row, i) };
    Row {
        position: format!("row {number}"),
        name: pgvalue::text(col(0)),
        config: pgvalue::text(col(1)),
        ts: pgvalue::ts(col(2)),
        uid: pgvalue::int(col(3)),
        gid: pgvalue::int(col(4)),
        socket: pgvalue::text(col(5)),
    }
}

/// A failed query: the connection is gone, or the server refused it.
fn fail(e: tokio_postgres::Error) -> Failure {
    match e.is_closed() {
        true => Failure::Lost(e.to_string()),
        false => Failure::Query(error_message(e)),
    }
}

/// `name` as a quoted SQL identifier (exact case, any characters).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The message of a PostgreSQL error: the server's own, when it sent one.
pub(crate) fn error_message(e: tokio_postgres::Error) -> String {
    e.as_db_error().map_or_else(|| e.to_string(), ToString::to_string)
}

/// A client without notifications (status and lease writers), its
/// connection driven by a task of its own; `what` names it in the debug
/// line when the connection ends.
pub(crate) async fn plain_client(config: &tokio_postgres::Config, what: &'static str) -> Result<Client, String> {
    let (client, connection) = config.connect(NoTls).await.map_err(error_message)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "{what} connection ended");
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rest: &str) -> PgSource {
        PgSource::parse(rest).unwrap_or_else(|e| panic!("{rest}: {e}"))
    }

    #[test]
    fn upstream_uris() {
        let s = parse("host=127.0.0.1 user=foobar dbname=emperor;SELECT name,config,ts FROM vassals");
        assert_eq!(s.query, "SELECT name,config,ts FROM vassals");
        assert_eq!(s.config.get_user(), Some("foobar"));
        assert_eq!(s.config.get_dbname(), Some("emperor"));
        assert_eq!((s.listen.as_deref(), s.interval), (None, None));
        assert_eq!(s.poll_period(Duration::from_secs(60)), DEFAULT_INTERVAL);
        let s = parse("host=db user=u");
        assert_eq!(s.query, DEFAULT_QUERY);
        let s = parse("postgresql://u@db:5433/emperor;SELECT a, b, c FROM t WHERE x = 'y;z';");
        assert_eq!(s.query, "SELECT a, b, c FROM t WHERE x = 'y;z'");
        assert_eq!(s.config.get_ports(), [5433]);
    }

    #[test]
    fn options_after_the_query() {
        let s =
            parse("host=db;SELECT name,config,ts FROM vassals WHERE host = 'a';listen=emperor_vassals;interval=0.5");
        assert_eq!(s.query, "SELECT name,config,ts FROM vassals WHERE host = 'a'");
        assert_eq!(s.listen.as_deref(), Some("emperor_vassals"));
        assert_eq!(s.interval, Some(Duration::from_millis(500)));
        assert_eq!(s.leases, lease::DEFAULT_TABLE);
        let s = parse("host=db;SELECT name,config,ts FROM vassals;leases=fleet.leases;listen=ch");
        assert_eq!((s.leases.as_str(), s.listen.as_deref()), ("fleet.leases", Some("ch")));
        assert!(PgSource::parse("host=db;SELECT 1;leases=").is_err());
        let s = parse("host=db;listen=ch");
        assert_eq!((s.query.as_str(), s.listen.as_deref()), (DEFAULT_QUERY, Some("ch")));
        assert_eq!(s.poll_period(Duration::from_secs(60)), Duration::from_secs(60));
        assert!(PgSource::parse("host=db;SELECT 1;interval=-1").is_err());
        assert!(PgSource::parse("host=db;SELECT 1;listen=").is_err());
        let s = parse("host=db;SELECT 1,2,3;listen=ch;status=emperor_status;status-heartbeat=2");
        assert_eq!((s.query.as_str(), s.status.name.as_deref()), ("SELECT 1,2,3", Some("emperor_status")));
        assert_eq!(s.status.heartbeat(), Duration::from_secs(2));
        assert!(PgSource::parse("host=db;status-heartbeat=2").is_err());
        assert!(PgSource::parse("bogus").is_err());
    }

    #[test]
    fn passwords_are_masked() {
        let s = parse("host=db password=s3cret user=u;SELECT 1,2,3");
        assert_eq!(s.id, "pg://host=db password=*** user=u;SELECT 1,2,3");
        assert_eq!(parse("postgresql://u:s3cret@db/x").id, "pg://postgresql://u:***@db/x");
        assert_eq!(parse(r"host=db password='a \' b' user=u").id, "pg://host=db password=*** user=u");
        assert_eq!(mask(r"password='open \'"), "password=***");
        assert!(!PgSource::parse("host=db password=s3cret bad").unwrap_err().to_string().contains("s3cret"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("Emperor\"x"), "\"Emperor\"\"x\"");
    }
}
