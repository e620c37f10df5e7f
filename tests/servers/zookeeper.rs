//! A private standalone ZooKeeper (the Debian `zookeeper` jar under Java)
//! and a blocking client to change it.

use super::{free_port, runtime, shared, wait_for, SERVER_DEADLINE};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use zookeeper_client as zk;

/// The server's classpath: the Debian jar (its manifest pulls in netty and
/// the rest) plus a console logger.
const CLASSPATH: &str = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar";

/// A private standalone ZooKeeper server.
pub struct ZooKeeper {
    dir: tempfile::TempDir,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    tick_ms: u32,
    child: Option<Child>,
}

static SHARED_ZK: Mutex<Weak<ZooKeeper>> = Mutex::new(Weak::new());

fn require_server() {
    let jar = Path::new("/usr/share/java/zookeeper.jar");
    assert!(
        jar.exists() && Path::new("/usr/bin/java").exists(),
        "{} or /usr/bin/java not found: run deploy/install-test-deps.sh (it installs the Debian package zookeeper)",
        jar.display()
    );
}

impl ZooKeeper {
    /// The server shared by this test binary (each test uses its own base path).
    pub fn shared() -> Arc<ZooKeeper> {
        shared(&SHARED_ZK, || ZooKeeper::private(2000))
    }

    /// A server of the caller's own; `tick_ms` bounds the session timeouts
    /// it grants to [2, 20] ticks (500 allows sessions of 1 s).
    pub fn private(tick_ms: u32) -> ZooKeeper {
        require_server();
        let dir = tempfile::Builder::new().prefix("emperor-zk-").tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("data")).expect("zk data dir");
        let mut z = ZooKeeper { dir, port: 0, tick_ms, child: None };
        for _ in 0..5 {
            z.port = free_port();
            if z.try_start() {
                return z;
            }
        }
        panic!("ZooKeeper did not start; log:\n{}", z.log());
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("zk.log")).unwrap_or_default()
    }

    fn write_config(&self) -> std::path::PathBuf {
        let cfg = self.dir.path().join("zoo.cfg");
        let text = format!(
            "tickTime={}\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
             4lw.commands.whitelist=srvr,ruok,dump\nmaxClientCnxns=0\nforceSync=no\n",
            self.tick_ms,
            self.dir.path().join("data").display(),
            self.port
        );
        fs::write(&cfg, text).expect("write zoo.cfg");
        cfg
    }

    fn try_start(&mut self) -> bool {
        let cfg = self.write_config();
        let log = fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("zk.log")).expect("log");
        let child = Command::new("/usr/bin/java")
            .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Dzookeeper.jmx.log4j.disable=true"])
            .args(["-cp", CLASSPATH, "org.apache.zookeeper.server.ZooKeeperServerMain"])
            .arg(cfg)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn java (ZooKeeper)");
        let port = self.port;
        super::started(&mut self.child, child, || standalone(port))
    }

    /// Kills the server at once (SIGKILL: committed transactions are in its
    /// log already) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            wait_for("ZooKeeper to exit", || child.try_wait().ok().flatten().is_some());
        }
    }

    /// Starts it again on the same port and data after [`ZooKeeper::kill`].
    pub fn restart(&mut self) {
        assert!(self.try_start(), "ZooKeeper did not restart; log:\n{}", self.log());
    }

    /// The ids of the sessions the server holds (expired ones are gone).
    pub fn sessions(&self) -> Vec<String> {
        let dump = four_letters(self.port, "dump").unwrap_or_default();
        let tracker = dump.split("ephemeral nodes dump:").next().unwrap_or_default();
        tracker
            .lines()
            .filter_map(|l| l.strip_prefix('\t'))
            .filter(|l| l.starts_with("0x"))
            .map(str::to_owned)
            .collect()
    }

    /// `127.0.0.1:PORT`, the connect string.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client of the test side.
    pub fn client(&self) -> ZkClient {
        ZkClient::connect(&self.address(), None)
    }

    /// A client logged in with digest `user:password`; the nodes it
    /// creates are readable and writable by those credentials only.
    pub fn client_as(&self, user_password: &str) -> ZkClient {
        ZkClient::connect(&self.address(), Some(user_password.to_owned()))
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The answer to a four-letter word, `None` if the server does not answer.
fn four_letters(port: u16, word: &str) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut out = String::new();
    s.write_all(word.as_bytes()).ok()?;
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Whether the four-letter word `srvr` says a standalone server is serving.
fn standalone(port: u16) -> bool {
    four_letters(port, "srvr").is_some_and(|out| out.contains("Mode: standalone"))
}

/// A blocking ZooKeeper client for the test side. Its session lives on a
/// runtime driven by a thread of its own, so it keeps pinging while the test
/// waits; it reconnects when the server was restarted meanwhile.
pub struct ZkClient {
    address: String,
    auth: Option<String>,
    rt: Arc<tokio::runtime::Runtime>,
    client: zk::Client,
    _driver: Driver,
}

/// Drives the client's runtime until dropped.
struct Driver(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

/// Persistent nodes open to everyone, or to the creator's credentials only.
fn persistent(authed: bool) -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(if authed { zk::Acls::creator_all() } else { zk::Acls::anyone_all() })
}

impl ZkClient {
    fn connect(address: &str, auth: Option<String>) -> ZkClient {
        let rt = Arc::new(runtime());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let driver_rt = rt.clone();
        std::thread::spawn(move || driver_rt.block_on(async { stopped.await.ok() }));
        let client = Self::session(&rt, address, auth.as_deref());
        ZkClient { address: address.to_owned(), auth, rt, client, _driver: Driver(Some(stop)) }
    }

    fn session(rt: &tokio::runtime::Runtime, address: &str, auth: Option<&str>) -> zk::Client {
        let mut connector = zk::Client::connector().with_session_timeout(Duration::from_secs(30));
        if let Some(auth) = auth {
            connector = connector.with_auth("digest", auth.as_bytes());
        }
        let connect = connector.connect(address);
        rt.handle().block_on(connect).unwrap_or_else(|e| panic!("connect to ZooKeeper {address}: {e}"))
    }

    /// Runs `op` on the client; after a lost or expired session (the server
    /// was restarted) reconnects once and runs it again.
    fn run<T, F, Fut>(&mut self, what: &str, op: F) -> T
    where
        F: Fn(zk::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, zk::Error>>,
    {
        let mut last = None;
        // A lost connection is retried until the server answers again; an
        // expired session is replaced by a new one.
        let done = crate::common::poll_until(SERVER_DEADLINE, Duration::from_millis(50), || {
            match self.rt.handle().block_on(op(self.client.clone())) {
                Ok(v) => Some(Ok(v)),
                Err(e @ zk::Error::ConnectionLoss) => {
                    last = Some(e);
                    None
                }
                Err(e @ (zk::Error::SessionExpired | zk::Error::ClientClosed)) => {
                    self.client = Self::session(&self.rt, &self.address, self.auth.as_deref());
                    last = Some(e);
                    None
                }
                Err(e) => Some(Err(e)),
            }
        });
        match done {
            Some(Ok(v)) => v,
            Some(Err(e)) => panic!("ZooKeeper {what}: {e}"),
            None => panic!("ZooKeeper {what}: {}", last.map_or("timed out".to_owned(), |e| e.to_string())),
        }
    }

    /// Creates `path` and any missing parents (`mkdir -p`), with no data.
    pub fn mkdir(&mut self, path: &str) {
        let (path, authed) = (path.to_owned(), self.auth.is_some());
        self.run("mkdir", |c| {
            let path = path.clone();
            async move { c.mkdir(&path, &persistent(authed)).await }
        })
    }

    /// Creates node `path` with `data` (parents must exist).
    pub fn create(&mut self, path: &str, data: &[u8]) {
        let (path, data, authed) = (path.to_owned(), data.to_vec(), self.auth.is_some());
        self.run(&format!("create {path}"), |c| {
            let (path, data) = (path.clone(), data.clone());
            async move { c.create(&path, &data, &persistent(authed)).await.map(drop) }
        })
    }

    /// Sets the data of node `path`.
    pub fn set(&mut self, path: &str, data: &[u8]) {
        let (path, data) = (path.to_owned(), data.to_vec());
        self.run(&format!("set {path}"), |c| {
            let (path, data) = (path.clone(), data.clone());
            async move { c.set_data(&path, &data, None).await.map(drop) }
        })
    }

    /// Deletes node `path` (it must have no children).
    pub fn delete(&mut self, path: &str) {
        let path = path.to_owned();
        self.run(&format!("delete {path}"), |c| {
            let path = path.clone();
            async move { c.delete(&path, None).await }
        })
    }

    /// Deletes `path` and everything under it.
    pub fn delete_tree(&mut self, path: &str) {
        for child in self.children(path) {
            self.delete_tree(&format!("{path}/{child}"));
        }
        self.delete(path);
    }

    /// Deletes `path` and everything under it in one transaction (as
    /// `deleteall` does for a small tree).
    pub fn delete_tree_at_once(&mut self, path: &str) {
        let mut order = Vec::new();
        self.post_order(path, &mut order);
        self.run(&format!("delete the tree {path} at once"), |c| {
            let order = order.clone();
            async move {
                let mut multi = c.new_multi_writer();
                for node in &order {
                    multi.add_delete(node, None).expect("a valid delete");
                }
                multi.commit().await.map(drop).map_err(zk::Error::from)
            }
        })
    }

    /// Creates the nodes `(path, data)` in one transaction, in order.
    pub fn create_at_once(&mut self, nodes: &[(&str, &[u8])]) {
        let nodes: Vec<(String, Vec<u8>)> = nodes.iter().map(|(p, d)| (p.to_string(), d.to_vec())).collect();
        let authed = self.auth.is_some();
        self.run("create nodes at once", |c| {
            let nodes = nodes.clone();
            async move {
                let mut multi = c.new_multi_writer();
                for (path, data) in &nodes {
                    multi.add_create(path, data, &persistent(authed)).expect("a valid create");
                }
                multi.commit().await.map(drop).map_err(zk::Error::from)
            }
        })
    }

    fn post_order(&mut self, path: &str, out: &mut Vec<String>) {
        for child in self.children(path) {
            self.post_order(&format!("{path}/{child}"), out);
        }
        out.push(path.to_owned());
    }

    /// The names of `path`'s children (empty if `path` does not exist).
    pub fn children(&mut self, path: &str) -> Vec<String> {
        let path = path.to_owned();
        self.run(&format!("list {path}"), |c| {
            let path = path.clone();
            async move {
                match c.list_children(&path).await {
                    Err(zk::Error::NoNode) => Ok(Vec::new()),
                    other => other,
                }
            }
        })
    }

    /// The data and stat of `path`, `None` if it does not exist.
    pub fn get_stat(&mut self, path: &str) -> Option<(Vec<u8>, zk::Stat)> {
        let path = path.to_owned();
        self.run(&format!("get {path}"), |c| {
            let path = path.clone();
            async move {
                match c.get_data(&path).await {
                    Ok(found) => Ok(Some(found)),
                    Err(zk::Error::NoNode) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
    }

    /// The data of `path`, `None` if it does not exist.
    pub fn get(&mut self, path: &str) -> Option<Vec<u8>> {
        self.get_stat(path).map(|(data, _)| data)
    }
}
