//! A private PostgreSQL cluster and a blocking client to change it.

use super::{free_port, pid_alive, runtime, shared, wait_for};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A private PostgreSQL cluster.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// The postmaster's pid while running.
    pub pid: Option<i32>,
    owner: Option<(u32, u32)>,
}

static SHARED_PG: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|b| b.join("pg_ctl").exists()).collect())
        .unwrap_or_default();
    dirs.sort_by_key(|d| d.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()));
    dirs.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin: \
             run deploy/install-test-deps.sh (it installs the Debian package postgresql)"
        )
    })
}

/// uid/gid of the `postgres` user when we are root (initdb refuses root).
fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    // SAFETY: a NUL-terminated name; the result is read at once, before any other getpw* call.
    let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    assert!(!pw.is_null(), "no 'postgres' user: run deploy/install-test-deps.sh (it installs postgresql)");
    // SAFETY: checked non-null above.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

impl Postgres {
    /// The server shared by this test binary.
    pub fn shared() -> Arc<Postgres> {
        shared(&SHARED_PG, Postgres::private)
    }

    /// A server of the caller's own.
    pub fn private() -> Postgres {
        let bin = pg_bin();
        let owner = postgres_user();
        let dir = tempfile::Builder::new().prefix("emperor-pg-").tempdir().expect("tempdir");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the pg dir");
        }
        let mut pg = Postgres { dir, bin, port: 0, pid: None, owner };
        let data = pg.data();
        let out = pg
            .command("initdb")
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        for _ in 0..5 {
            pg.port = free_port();
            if pg.try_start(true) {
                return pg;
            }
        }
        panic!(
            "PostgreSQL did not start; log:\n{}",
            fs::read_to_string(pg.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The unix socket directory (always open, also when TCP is off).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.stdin(Stdio::null()).current_dir(self.dir.path());
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Starts the server (`tcp`: also on 127.0.0.1:port, else only on the
    /// unix socket); `false` if it did not come up.
    fn try_start(&mut self, tcp: bool) -> bool {
        let listen = if tcp { "127.0.0.1" } else { "" };
        let opts = format!(
            "-p {} -c listen_addresses='{listen}' -k {} -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let status = self
            .command("pg_ctl")
            .args(["-w", "-t", "30", "-o", &opts, "-l"])
            .arg(self.dir.path().join("server.log"))
            .arg("-D")
            .arg(self.data())
            .arg("start")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_ctl start");
        if !status.success() {
            return false;
        }
        let pidfile = fs::read_to_string(self.data().join("postmaster.pid")).expect("postmaster.pid");
        self.pid = pidfile.lines().next().and_then(|l| l.trim().parse().ok());
        true
    }

    /// Starts it again after [`Postgres::kill`]; `tcp: false` keeps the
    /// emperor (which connects over TCP) out while the test changes data.
    pub fn restart(&mut self, tcp: bool) {
        assert!(self.try_start(tcp), "PostgreSQL did not restart");
    }

    /// Stops the server as an operator restarting it would (`pg_ctl stop -m
    /// fast`: sessions are ended, the data is written) and waits until it is
    /// gone; [`Postgres::restart`] starts it again on the same data and port.
    pub fn stop(&mut self) {
        let status = self
            .command("pg_ctl")
            .args(["-w", "-t", "30", "-m", "fast", "-D"])
            .arg(self.data())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run pg_ctl stop");
        assert!(status.success(), "pg_ctl stop failed");
        self.pid = None;
    }

    /// Kills the server at once (immediate shutdown: SIGQUIT, no clean
    /// disconnects) and waits until it is gone.
    pub fn kill(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
        wait_for("PostgreSQL to exit", || !pid_alive(pid) && !self.data().join("postmaster.pid").exists());
    }

    /// libpq conninfo for database `db` over TCP.
    pub fn conninfo(&self, db: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={db}", self.port)
    }

    /// A client over the unix socket (works while TCP is off).
    pub fn client(&self, db: &str) -> PgClient {
        let conninfo = format!("host={} port={} user=postgres dbname={db}", self.socket_dir().display(), self.port);
        PgClient::connect(conninfo)
    }

    /// Creates database `db` with the shipped `deploy/pg/vassals.sql`, and
    /// returns a client on it.
    pub fn create_db(&self, db: &str) -> PgClient {
        self.client("postgres").exec(&format!("CREATE DATABASE {db}"));
        let mut client = self.client(db);
        client.exec(include_str!("../../deploy/pg/vassals.sql"));
        client
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
            super::gone_within(Duration::from_secs(10), || !pid_alive(pid));
        }
    }
}

/// A blocking PostgreSQL client for the test side; reconnects after the
/// server restarted.
pub struct PgClient {
    rt: tokio::runtime::Runtime,
    conninfo: String,
    client: Option<tokio_postgres::Client>,
}

impl PgClient {
    fn connect(conninfo: String) -> PgClient {
        let mut c = PgClient { rt: runtime(), conninfo, client: None };
        c.reconnect();
        c
    }

    fn reconnect(&mut self) {
        let (client, connection) = self
            .rt
            .block_on(tokio_postgres::connect(&self.conninfo, tokio_postgres::NoTls))
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.conninfo));
        self.rt.spawn(connection);
        self.client = Some(client);
    }

    /// Runs SQL statements (reconnecting once if the server restarted).
    pub fn exec(&mut self, sql: &str) {
        for attempt in 0..2 {
            let client = self.client.as_ref().expect("connected");
            match self.rt.block_on(client.batch_execute(sql)) {
                Ok(()) => return,
                Err(e) if e.is_closed() && attempt == 0 => self.reconnect(),
                Err(e) => panic!("SQL failed: {e:?}\n{sql}"),
            }
        }
    }
}

impl PgClient {
    /// Runs one query and returns its rows (reconnecting once if the server restarted).
    pub fn query(&mut self, sql: &str) -> Vec<tokio_postgres::Row> {
        for attempt in 0..2 {
            let client = self.client.as_ref().expect("connected");
            match self.rt.block_on(client.query(sql, &[])) {
                Ok(rows) => return rows,
                Err(e) if e.is_closed() && attempt == 0 => self.reconnect(),
                Err(e) => panic!("SQL failed: {e:?}\n{sql}"),
            }
        }
        unreachable!("the second attempt returns or panics")
    }

    /// The rows of one query, every value as text (`None` for NULL;
    /// reconnecting once if the server restarted).
    pub fn rows(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        let mut messages = None;
        for attempt in 0..2 {
            let client = self.client.as_ref().expect("connected");
            match self.rt.block_on(client.simple_query(sql)) {
                Ok(m) => {
                    messages = Some(m);
                    break;
                }
                Err(e) if e.is_closed() && attempt == 0 => self.reconnect(),
                Err(e) => panic!("SQL failed: {e:?}\n{sql}"),
            }
        }
        let messages = messages.expect("the second attempt returns or panics");
        messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()
    }
}

/// `text` as an SQL string literal.
pub fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
