//! Real database servers for the source tests, each in its own temp dir on
//! a free loopback port, stopped by PID when dropped:
//!
//! * [`Postgres`]: a private PostgreSQL cluster (initdb + pg_ctl as user
//!   `postgres` when run as root), with [`PgClient`] to change it;
//! * [`Mongo`]: a SecantusDB server (`secantusd-py`, MongoDB wire protocol
//!   with change streams) from `target/test-venv`, with [`MongoClient`].
//!
//! `shared()` gives one server per test binary (each test then uses its own
//! database); `private()` gives a server of its own to a test that stops and
//! restarts it. Missing binaries fail the test naming
//! `deploy/install-test-deps.sh`.
#![allow(dead_code, unsafe_code)]

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a server may take to start or stop.
const SERVER_DEADLINE: Duration = Duration::from_secs(60);

/// A free TCP port on 127.0.0.1 (free when asked; servers retry on a clash).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind an ephemeral port").port()
}

fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn pid_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    !matches!(stat.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next()), Some('Z' | 'X'))
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    crate::common::wait_until(SERVER_DEADLINE, what, || crate::common::cond(ok()));
}

/// A current-thread runtime for the test-side clients.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

fn shared<T>(slot: &Mutex<Weak<T>>, start: impl FnOnce() -> T) -> Arc<T> {
    let mut guard = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(server) = guard.upgrade() {
        return server;
    }
    let server = Arc::new(start());
    *guard = Arc::downgrade(&server);
    server
}

// ---------------------------------------------------------------- PostgreSQL

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
            let start = Instant::now();
            while pid_alive(pid) && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
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

/// `text` as an SQL string literal.
pub fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

// ---------------------------------------------------------------- MongoDB

/// A SecantusDB server (MongoDB wire protocol, change streams).
pub struct Mongo {
    dir: tempfile::TempDir,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

static SHARED_MONGO: Mutex<Weak<Mongo>> = Mutex::new(Weak::new());

fn secantusd() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/secantusd-py");
    assert!(
        bin.exists(),
        "{} not found: run deploy/install-test-deps.sh (it installs SecantusDB==0.7.0b3 into target/test-venv)",
        bin.display()
    );
    bin
}

impl Mongo {
    /// The server shared by this test binary.
    pub fn shared() -> Arc<Mongo> {
        shared(&SHARED_MONGO, Mongo::private)
    }

    /// A server of the caller's own.
    pub fn private() -> Mongo {
        let dir = tempfile::Builder::new().prefix("emperor-mongo-").tempdir().expect("tempdir");
        let mut m = Mongo { dir, port: 0, child: None };
        for _ in 0..5 {
            m.port = free_port();
            if m.try_start(m.port) {
                return m;
            }
        }
        panic!("SecantusDB did not start; log:\n{}", m.log());
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn try_start(&mut self, port: u16) -> bool {
        let log =
            fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("server.log")).expect("log");
        let mut child = Command::new(secantusd())
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "WARNING", "--storage-path"])
            .arg(self.dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn secantusd-py");
        let start = Instant::now();
        while start.elapsed() < SERVER_DEADLINE {
            if port_open(port) {
                self.child = Some(child);
                return true;
            }
            if child.try_wait().expect("try_wait").is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Kills the server with SIGTERM (SIGKILL loses SecantusDB's latest
    /// writes) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            wait_for("SecantusDB to exit", || child.try_wait().ok().flatten().is_some());
        }
    }

    /// Starts it again on `port` (its own port, or another one to change
    /// data while the emperor cannot reach it), on the same storage.
    pub fn restart_on(&mut self, port: u16) {
        assert!(self.try_start(port), "SecantusDB did not restart; log:\n{}", self.log());
    }

    /// Connection string for the test side and the emperor.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// A client on `port`.
    pub fn client_on(&self, port: u16) -> MongoClient {
        MongoClient::connect(&format!("mongodb://127.0.0.1:{port}/?directConnection=true"))
    }

    /// A client on the server's port.
    pub fn client(&self) -> MongoClient {
        self.client_on(self.port)
    }
}

impl Drop for Mongo {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A blocking MongoDB client for the test side.
pub struct MongoClient {
    rt: tokio::runtime::Runtime,
    /// The driver's client.
    pub client: mongodb::Client,
}

impl MongoClient {
    fn connect(uri: &str) -> MongoClient {
        let rt = runtime();
        let client = rt.block_on(async {
            let mut opts = mongodb::options::ClientOptions::parse(uri).await.expect("parse mongodb uri");
            opts.server_selection_timeout = Some(Duration::from_secs(10));
            mongodb::Client::with_options(opts).expect("mongodb client")
        });
        MongoClient { rt, client }
    }

    /// Collection `coll` of database `db`.
    pub fn coll(&self, db: &str, coll: &str) -> mongodb::Collection<mongodb::bson::Document> {
        self.client.database(db).collection(coll)
    }

    /// Runs a driver future to completion.
    pub fn run<F: std::future::IntoFuture>(&self, f: F) -> F::Output {
        self.rt.block_on(f.into_future())
    }
}
