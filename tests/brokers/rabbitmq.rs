//! A private RabbitMQ node for the `amqp://` tests: one per test binary,
//! started lazily on free loopback ports in a temp dir, with its own epmd
//! (env.md §3), and a [`Publisher`] to talk to it.
//!
//! The node runs under a small watchdog shell that reads commands from a
//! pipe held by the test process: `stop` and `start` restart the node (the
//! broker-restart test), and end-of-file — the test process exiting for any
//! reason, even SIGKILL — stops the node and epmd. A `libc::atexit` hook
//! also closes the pipe and waits for the watchdog, so no beam or epmd is
//! left when `cargo test` returns. Tests that need the node steady take
//! [`Node::shared`]; the restart test takes [`Node::exclusive`].
#![allow(dead_code, unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const START_DEADLINE: Duration = Duration::from_secs(90);

/// The watchdog script: epmd, then the node; `stop`/`start` lines restart
/// the node; EOF stops everything. The node's wrapper shell turns SIGTERM
/// into a graceful stop; beam is SIGKILLed if that takes over 20 s.
const WATCHDOG: &str = r#"
# Once the test process is gone, its end of our stdout is closed too: echo
# in a subshell, so a SIGPIPE there cannot kill the watchdog before cleanup.
say() { ( echo "$@" ) 2>/dev/null; }
epmd -port "$ERL_EPMD_PORT" -address 127.0.0.1 >"$D/epmd.log" 2>&1 </dev/null & E=$!
R=
start() { "$SERVER" >>"$D/stdout.log" 2>&1 </dev/null & R=$!; say "started $R"; }
stop() {
  if [ -n "$R" ]; then
    kill -TERM "$R" 2>/dev/null
    ( sleep 20; [ -f "$D/rabbit.pid" ] && kill -KILL "$(cat "$D/rabbit.pid")" ) >/dev/null 2>&1 </dev/null & T=$!
    wait "$R"; kill "$T" 2>/dev/null; wait "$T" 2>/dev/null
    R=
  fi
  say stopped
}
start
while read -r cmd; do
  case "$cmd" in stop) stop ;; start) start ;; esac
done
stop
kill -TERM "$E" 2>/dev/null; wait "$E"
rm -rf "$D"
"#;

/// The running node.
pub struct Node {
    /// AMQP port on 127.0.0.1.
    pub port: u16,
    /// The node's temp dir (logs, mnesia).
    pub dir: PathBuf,
    watchdog: Mutex<Watchdog>,
    lock: RwLock<()>,
}

struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

static NODE: OnceLock<Node> = OnceLock::new();

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind an ephemeral port").port()
}

/// Whether the AMQP listener answers the protocol header with Connection.Start.
fn amqp_ready(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut b = [0u8; 1];
    s.write_all(b"AMQP\x00\x00\x09\x01").is_ok() && s.read_exact(&mut b).is_ok() && b[0] == 1
}

extern "C" fn stop_at_exit() {
    if let Some(node) = NODE.get() {
        if let Ok(mut w) = node.watchdog.try_lock() {
            w.stdin.take();
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(w.child.try_wait(), Ok(None)) {
                if Instant::now() > deadline {
                    // The watchdog hangs: kill its whole process group (node, epmd).
                    // SAFETY: kill(2) on the process group of our own, unreaped child.
                    unsafe { libc::kill(-(w.child.id() as i32), libc::SIGKILL) };
                    let _ = w.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&node.dir);
    }
}

impl Node {
    fn get() -> &'static Node {
        NODE.get_or_init(Node::launch)
    }

    /// The node, running, for a test that does not restart it.
    pub fn shared() -> (&'static Node, RwLockReadGuard<'static, ()>) {
        let node = Node::get();
        (node, node.lock.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The node, for a test that restarts it (no other test runs meanwhile).
    pub fn exclusive() -> (&'static Node, RwLockWriteGuard<'static, ()>) {
        let node = Node::get();
        (node, node.lock.write().unwrap_or_else(|e| e.into_inner()))
    }

    /// `amqp://127.0.0.1:PORT` plus `rest` (e.g. `?queue=q`).
    pub fn uri(&self, rest: &str) -> String {
        format!("amqp://127.0.0.1:{}{rest}", self.port)
    }

    fn launch() -> Node {
        for (bin, what) in
            [(SERVER, "rabbitmq-server"), ("/usr/bin/epmd", "erlang-base (a dependency of rabbitmq-server)")]
        {
            assert!(
                Path::new(bin).exists(),
                "{bin} not found: install the Debian package {what} (deploy/install-test-deps.sh)"
            );
        }
        let dir = tempfile::Builder::new().prefix("rabbittest.").tempdir().expect("tempdir").keep();
        std::fs::create_dir_all(dir.join("mnesia")).unwrap();
        std::fs::create_dir_all(dir.join("log")).unwrap();
        let (port, dist, epmd) = (free_port(), free_port(), free_port());
        std::fs::write(dir.join("rabbitmq-env.conf"), "").unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\n"),
        )
        .unwrap();
        let d = dir.to_str().unwrap().to_owned();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .env("D", &d)
            .env("SERVER", SERVER)
            .env("HOME", &d)
            .env("RABBITMQ_CONF_ENV_FILE", format!("{d}/rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", format!("{d}/rabbitmq.conf"))
            .env("RABBITMQ_NODENAME", format!("emperortest{port}@localhost"))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("ERL_EPMD_PORT", epmd.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_MNESIA_BASE", format!("{d}/mnesia"))
            .env("RABBITMQ_LOG_BASE", format!("{d}/log"))
            .env("RABBITMQ_LOGS", format!("{d}/log/rabbit.log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", format!("{d}/enabled_plugins"))
            .env("RABBITMQ_PID_FILE", format!("{d}/rabbit.pid"))
            .env("RABBITMQ_CTL_DIST_PORT_MIN", (dist.saturating_add(10)).to_string())
            .env("RABBITMQ_CTL_DIST_PORT_MAX", (dist.saturating_add(20)).to_string())
            .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = cmd.spawn().expect("spawn the rabbitmq watchdog shell");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("watchdog stdout"));
        let node = Node { port, dir, watchdog: Mutex::new(Watchdog { child, stdin, stdout }), lock: RwLock::new(()) };
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(stop_at_exit) };
        node.expect_line("started");
        node.wait_ready();
        node
    }

    fn expect_line(&self, prefix: &str) {
        let mut w = self.watchdog.lock().unwrap();
        let mut line = String::new();
        w.stdout.read_line(&mut line).expect("read the watchdog's output");
        assert!(line.starts_with(prefix), "rabbitmq watchdog said {line:?}, expected {prefix:?}");
    }

    fn wait_ready(&self) {
        let log = self.dir.join("stdout.log");
        let what = format!("rabbitmq to accept AMQP on port {} (its output: {})", self.port, log.display());
        crate::common::wait_every(START_DEADLINE, Duration::from_millis(50), what, || {
            crate::common::cond(amqp_ready(self.port))
        });
    }

    fn command(&self, cmd: &str) {
        let mut w = self.watchdog.lock().unwrap();
        let stdin = w.stdin.as_mut().expect("watchdog running");
        writeln!(stdin, "{cmd}").and_then(|()| stdin.flush()).expect("write to the watchdog");
    }

    /// Stops the node gracefully and waits until it is gone.
    pub fn stop(&self) {
        self.command("stop");
        self.expect_line("stopped");
        assert!(!amqp_ready(self.port), "rabbitmq still answers after stop");
    }

    /// Starts the node again (same dir: durable queues survive) and waits
    /// until it answers.
    pub fn start(&self) {
        self.command("start");
        self.expect_line("started");
        self.wait_ready();
    }
}

/// A test-side AMQP client.
pub struct Publisher {
    runtime: tokio::runtime::Runtime,
    conn: lapin::Connection,
    channel: lapin::Channel,
}

impl Publisher {
    /// Connects to `node` as guest and declares the exchange as upstream does.
    pub fn new(node: &Node, exchange: &str) -> Self {
        Self::declaring(node, exchange, false)
    }

    /// Connects to `node` as guest and declares a fanout `exchange`, durable or not.
    pub fn declaring(node: &Node, exchange: &str, durable: bool) -> Self {
        use lapin::options::ExchangeDeclareOptions;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", node.port);
        let (conn, channel) = runtime.block_on(async {
            let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await.expect("connect");
            let channel = conn.create_channel().await.expect("channel");
            let opts = ExchangeDeclareOptions { durable, ..Default::default() };
            let kind = lapin::ExchangeKind::Fanout;
            channel.exchange_declare(exchange.into(), kind, opts, Default::default()).await.expect("declare exchange");
            (conn, channel)
        });
        Self { runtime, conn, channel }
    }

    /// Publishes `body` with `routing_key` to `exchange`.
    pub fn publish(&self, exchange: &str, routing_key: &str, body: &[u8]) {
        use lapin::options::BasicPublishOptions;
        self.runtime.block_on(async {
            let props = lapin::BasicProperties::default().with_delivery_mode(2);
            let opts = BasicPublishOptions::default();
            let confirm = self.channel.basic_publish(exchange.into(), routing_key.into(), opts, body, props).await;
            confirm.expect("publish").await.expect("publish confirm");
        });
    }

    /// Consumers on `queue` (0 when it does not exist).
    pub fn consumers(&self, queue: &str) -> u32 {
        self.queue_counts(queue).map_or(0, |(_, consumers)| consumers)
    }

    /// Messages ready for delivery in `queue` (not counting those delivered
    /// and not yet acknowledged), `None` when it does not exist.
    pub fn ready(&self, queue: &str) -> Option<u32> {
        self.queue_counts(queue).map(|(ready, _)| ready)
    }

    /// `(ready messages, consumers)` of `queue` by a passive declare.
    fn queue_counts(&self, queue: &str) -> Option<(u32, u32)> {
        use lapin::options::QueueDeclareOptions;
        self.runtime.block_on(async {
            let ch = self.conn.create_channel().await.ok()?;
            let opts = QueueDeclareOptions { passive: true, ..Default::default() };
            let counts = ch.queue_declare(queue.into(), opts, Default::default()).await.ok();
            let _ = ch.close(200, "bye".into()).await;
            counts.map(|q| (q.message_count(), q.consumer_count()))
        })
    }
}
