//! `amqp://` against the binary's RabbitMQ node (an exchange and a queue per
//! test; the outage check has the node to itself while it restarts it).
//! No unchanged-state check: a message source has nothing to re-read (see
//! `checks::unchanged_state_sends_nothing`).

use crate::checks::{Bad, BadItems, Driver, Family, Outage, Secret};
use crate::common::{uwsgi_ini, wait_until, DEADLINE};
use crate::harness::{log_lines, Running};
use crate::rabbitmq::{Node, Publisher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// How the test holds the node.
enum Hold {
    /// Steady, shared with other tests.
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    /// To restart it.
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// An exchange and a queue of its own.
pub struct Amqp {
    node: &'static Node,
    _hold: Hold,
    exchange: String,
    queue: String,
    publisher: Option<Publisher>,
}

impl Amqp {
    fn held(node: &'static Node, hold: Hold) -> Self {
        static EXCHANGES: AtomicUsize = AtomicUsize::new(0);
        let n = EXCHANGES.fetch_add(1, Ordering::Relaxed);
        let (exchange, queue) = (format!("conformance.{n}"), format!("q.conformance.{n}"));
        Amqp { node, _hold: hold, exchange, queue, publisher: None }
    }

    fn shared() -> Self {
        let (node, guard) = Node::shared();
        Self::held(node, Hold::Shared(guard))
    }

    fn exclusive() -> Self {
        let (node, guard) = Node::exclusive();
        Self::held(node, Hold::Exclusive(guard))
    }

    fn query(&self) -> String {
        format!("?exchange={}&queue={}", self.exchange, self.queue)
    }

    fn publish(&mut self, key: &str, body: &[u8]) {
        let (node, exchange) = (self.node, &self.exchange);
        let publisher = self.publisher.get_or_insert_with(|| Publisher::new(node, exchange));
        publisher.publish(exchange, key, body);
    }

    /// Waits until the source logged `what` (`n` times).
    fn wait_logged(&self, what: &str, n: usize, timeout: Duration) {
        let id = self.uri();
        wait_until(timeout, format!("{id}: {n} × {what:?}"), || {
            (log_lines(&id).iter().filter(|l| l.contains(what)).count() >= n).then_some(())
        });
    }
}

impl Driver for Amqp {
    const FAMILY: Family = Family::Message;

    fn uri(&self) -> String {
        self.node.uri(&self.query())
    }

    fn put(&mut self, base: &str, tag: &str) {
        self.publish(base, uwsgi_ini(&format!("# {tag}")).as_bytes());
    }

    /// An empty body.
    fn delete(&mut self, base: &str) {
        self.publish(base, b"");
    }

    /// Consuming: the queue is bound, nothing published from now on is lost.
    fn ready(&mut self, _: &Running) {
        self.wait_logged("consuming", 1, DEADLINE * 3);
    }
}

impl BadItems for Amqp {
    fn put_bad(&mut self) -> Bad {
        let cfg = uwsgi_ini("");
        let long_path = format!("/tmp/{}.ini", "x".repeat(300));
        let big = "x".repeat(70_000);
        let bad: Vec<(&str, &[u8])> = vec![
            ("../evil.ini", cfg.as_bytes()),
            ("a/b.ini", cfg.as_bytes()),
            ("nul\0.ini", cfg.as_bytes()),
            ("app.sh", cfg.as_bytes()),
            ("bin.ini", b"\xff\xfe[uwsgi]"),
            ("big.ini", big.as_bytes()),
            ("", b"relative.ini"),
            ("", b"/etc/../etc/evil.ini"),
            ("", long_path.as_bytes()),
            ("", b"https://127.0.0.1/x.ini"),
            ("", b"\xff/x.ini"),
        ];
        for (key, body) in &bad {
            self.publish(key, body);
        }
        let needles = ["../evil.ini", "a/b.ini", "app.sh", "not valid UTF-8", "65535", "relative.ini", "https://"];
        Bad {
            items: bad.len(),
            refused: "amqp message refused",
            warnings: needles.map(|n| (n.to_owned(), None)).into(),
        }
    }
}

impl Outage for Amqp {
    const NOTICE: &'static str = "amqp broker unreachable";
    const RECOVERED: Option<&'static str> = Some("broker reachable again");
    const RECOVERY: Duration = Duration::from_secs(60);

    fn stop(&mut self) {
        self.publisher = None;
        self.node.stop();
    }

    /// A stopped broker takes no messages: they are sent after the restart.
    fn cut_off(&mut self) -> bool {
        false
    }

    /// Until the source consumes again (it binds the queue again).
    fn restart(&mut self) {
        self.node.start();
        self.wait_logged("broker reachable again", 1, Self::RECOVERY);
    }
}

impl Secret for Amqp {
    fn uris_with(&self, secret: &str) -> Vec<String> {
        let port = self.node.port;
        vec![
            format!("amqp://guest:{secret}@127.0.0.1:{port}{}", self.query()),
            format!("amqp://emperor:{secret}@127.0.0.1:{port}/vhost?exchange=x"),
        ]
    }
}

// Named so that the steady tests are handed out first: the restart test
// waits for them and then holds the node alone.
mod steady {
    conformance!(super::Amqp::shared() =>
        first_events, ends_within_a_second_of_shutdown, create_change_delete, bad_item_reported_once, no_secret_in_ids_or_logs);
}

mod with_restart {
    conformance!(super::Amqp::exclusive() => outage_removes_nothing);
}
