//! `zoo://` against the binary's ZooKeeper (a base path per test; the
//! outage check has a server of its own, behind a proxy it cuts), with the
//! vassals as child znodes of the base.

use crate::checks::{Bad, BadItems, Driver, Family, Outage, Secret};
use crate::common::uwsgi_ini;
use crate::servers::{Proxy, ZkClient, ZooKeeper};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A base path of its own on a server, and a client on it.
pub struct Zoo {
    server: Arc<ZooKeeper>,
    /// What the source connects to: the server, or the outage check's proxy.
    proxy: Option<Proxy>,
    /// `/conformance_N`: the base is its child `vassals`; `unrelated` lives beside it.
    root: String,
    client: ZkClient,
    /// Nodes put whose name is refused, set again by every no-op (a set
    /// of a node read as bad is a new write, reported again like a touch
    /// of a good one reloads it).
    badly_named: Vec<String>,
}

impl Zoo {
    fn on(server: Arc<ZooKeeper>, proxied: bool) -> Self {
        static BASES: AtomicUsize = AtomicUsize::new(0);
        let root = format!("/conformance_{}", BASES.fetch_add(1, Ordering::Relaxed));
        let mut client = server.client();
        client.mkdir(&format!("{root}/vassals"));
        client.create(&format!("{root}/unrelated"), b"0");
        let proxy = proxied.then(|| Proxy::new(server.port));
        Zoo { server, proxy, root, client, badly_named: Vec::new() }
    }

    fn shared() -> Self {
        Self::on(ZooKeeper::shared(), false)
    }

    fn private() -> Self {
        Self::on(Arc::new(ZooKeeper::private(2000)), true)
    }

    fn base(&self) -> String {
        format!("{}/vassals", self.root)
    }

    fn node(&self, base: &str) -> String {
        format!("{}/{base}", self.base())
    }

    /// Where the source connects.
    fn port(&self) -> u16 {
        self.proxy.as_ref().map_or(self.server.port, |p| p.port)
    }

    fn zk(&mut self) -> &mut ZooKeeper {
        Arc::get_mut(&mut self.server).expect("the outage check has a server of its own")
    }

    fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("the outage check has a proxy")
    }

    fn create(&mut self, base: &str, data: &[u8]) {
        let node = self.node(base);
        self.client.create(&node, data);
    }

    fn create_badly_named(&mut self, base: &str, data: &[u8]) {
        self.create(base, data);
        self.badly_named.push(self.node(base));
    }
}

impl Driver for Zoo {
    const FAMILY: Family = Family::Snapshot;

    fn uri(&self) -> String {
        format!("zoo://127.0.0.1:{}{}", self.port(), self.base())
    }

    fn put(&mut self, base: &str, tag: &str) {
        let (node, config) = (self.node(base), uwsgi_ini(&format!("# {tag}")));
        match self.client.get(&node) {
            Some(_) => self.client.set(&node, config.as_bytes()),
            None => self.client.create(&node, config.as_bytes()),
        }
    }

    fn delete(&mut self, base: &str) {
        let node = self.node(base);
        self.client.delete(&node);
    }

    /// A set of the base node itself (the source reads everything again),
    /// of every badly named node, and of a node outside the base.
    fn noop(&mut self) {
        let base = self.base();
        self.client.set(&base, b"");
        for node in self.badly_named.clone() {
            let data = self.client.get(&node).unwrap_or_default();
            self.client.set(&node, &data);
        }
        let unrelated = format!("{}/unrelated", self.root);
        self.client.set(&unrelated, b"1");
    }
}

impl BadItems for Zoo {
    /// One bad node of each kind after `good.ini`, and a good YAML node
    /// among them.
    fn put_bad(&mut self) -> Bad {
        let good = uwsgi_ini("# good");
        self.create_badly_named("run.sh", good.as_bytes());
        self.create_badly_named("noext", good.as_bytes());
        self.create_badly_named(&format!("{}.ini", "x".repeat(300)), good.as_bytes());
        self.create("empty.ini", b"");
        self.create("owned.ini", good.as_bytes());
        self.create("owned.ini/uid", b"www");
        self.create("also-good.yaml", b"uwsgi:\n  master: true\n");
        let warnings = [
            ("run.sh", Some("does not end in")),
            ("noext", None),
            ("empty.ini", Some("empty")),
            ("xxxxxxxx", None),
            ("owned.ini", Some("uid")),
        ];
        Bad { items: 5, refused: "", warnings: warnings.map(|(n, s)| (n.to_owned(), s)).into() }
    }

    fn good_config(&self) -> Option<String> {
        Some(uwsgi_ini("# good"))
    }

    fn also_good(&self) -> Vec<String> {
        vec!["also-good.yaml".into()]
    }
}

impl Outage for Zoo {
    const NOTICE: &'static str = "failed; running vassals are kept";
    const RECOVERED: Option<&'static str> = Some("source recovered");

    /// Cuts the source off and kills the server.
    fn stop(&mut self) {
        self.proxy().cut();
        self.zk().kill();
    }

    /// The server back, the source still cut off.
    fn cut_off(&mut self) -> bool {
        self.zk().restart();
        true
    }

    fn restart(&mut self) {
        self.zk().restart();
        self.proxy().restore();
    }
}

impl Secret for Zoo {
    /// Digest credentials, plain and percent-encoded, with the options.
    fn uris_with(&self, secret: &str) -> Vec<String> {
        let (port, base) = (self.server.port, self.base());
        vec![
            format!("zoo://ops:{secret}@127.0.0.1:{port}{base}"),
            format!("zoo://ops:{secret}%40x@127.0.0.1:{port},127.0.0.2:{port}{base}?session-timeout=5"),
        ]
    }
}

mod shared {
    conformance!(super::Zoo::shared() =>
        first_events, ends_within_a_second_of_shutdown, create_change_delete, unchanged_state_sends_nothing,
        bad_item_reported_once, no_secret_in_ids_or_logs);
}

mod private {
    conformance!(super::Zoo::private() => outage_removes_nothing);
}
