//! A SecantusDB server (MongoDB wire protocol) and a blocking client.

use super::{free_port, port_open, runtime, shared, wait_for, SERVER_DEADLINE};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

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
        let child = Command::new(secantusd())
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--log-level", "WARNING", "--storage-path"])
            .arg(self.dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn secantusd-py");
        super::started(&mut self.child, child, || port_open(port))
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
            if !super::gone_within(Duration::from_secs(10), || child.try_wait().ok().flatten().is_some()) {
                let _ = child.kill();
                let _ = child.wait();
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
