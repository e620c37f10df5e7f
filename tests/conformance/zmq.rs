//! `zmq://` fed by the real libzmq. No outage (the source is the server:
//! it binds, and a sender that goes away is no outage of it), no secret (an
//! endpoint has none), and no unchanged-state check (a message source has
//! nothing to re-read, see `checks::unchanged_state_sends_nothing`).

use crate::checks::{Bad, BadItems, Driver, Family};
use crate::common::{uwsgi_ini, DEADLINE};
use crate::libzmq;

/// A tcp endpoint and a temp dir for the sender's files.
pub struct Zmq {
    endpoint: String,
    tmp: tempfile::TempDir,
    /// Bad messages not sent yet: they go with the next message, from the
    /// same sender, so that they arrive first (two senders are two
    /// connections, which the socket reads in no set order).
    pending: Vec<Vec<Vec<u8>>>,
}

impl Zmq {
    fn new() -> Self {
        let tmp = tempfile::Builder::new().prefix("conformance-zmq-").tempdir().expect("tempdir");
        Zmq { endpoint: libzmq::tcp_endpoint(), tmp, pending: Vec::new() }
    }

    fn send(&mut self, messages: &[Vec<&[u8]>]) {
        let pending = std::mem::take(&mut self.pending);
        let mut all: Vec<Vec<&[u8]>> = pending.iter().map(|m| m.iter().map(Vec::as_slice).collect()).collect();
        all.extend(messages.iter().cloned());
        libzmq::send(self.tmp.path(), &self.endpoint, &all, DEADLINE * 2);
    }
}

impl Driver for Zmq {
    const FAMILY: Family = Family::Message;

    /// Starting returns once the socket is bound.
    fn uri(&self) -> String {
        format!("zmq://{}", self.endpoint)
    }

    fn put(&mut self, base: &str, tag: &str) {
        self.send(&[vec![b"touch", base.as_bytes(), uwsgi_ini(&format!("# {tag}")).as_bytes()]]);
    }

    fn delete(&mut self, base: &str) {
        self.send(&[vec![b"destroy", base.as_bytes()]]);
    }
}

impl BadItems for Zmq {
    fn put_bad(&mut self) -> Bad {
        let cfg = uwsgi_ini("");
        let long = format!("{}.ini", "n".repeat(300));
        let long_path = format!("/tmp/{long}");
        let big = "x".repeat(70_000);
        let bad: Vec<Vec<&[u8]>> = vec![
            vec![b"touch", b"../evil.ini", cfg.as_bytes()],
            vec![b"touch", b"a/b.ini", cfg.as_bytes()],
            vec![b"touch", b"nul\0.ini", cfg.as_bytes()],
            vec![b"touch", long.as_bytes(), cfg.as_bytes()],
            vec![b"touch", long_path.as_bytes()],
            vec![b"touch", b"app.sh", cfg.as_bytes()],
            vec![b"launch", b"x.ini", cfg.as_bytes()],
            vec![b"touch"],
            vec![b"touch", b"seven.ini", cfg.as_bytes(), b"", b"", b"", b"extra"],
            vec![b"touch", b"\xff.ini", cfg.as_bytes()],
            vec![b"touch", b"bin.ini", b"\xff\xfe"],
            vec![b"touch", b"big.ini", big.as_bytes()],
            vec![b"touch", b"relative.ini"],
            vec![b"touch", b"/etc/../etc/evil.ini"],
            vec![b"touch", b"uid.ini", cfg.as_bytes(), b"root"],
            vec![b"destroy", b"../../etc/passwd.ini"],
        ];
        self.pending = bad.iter().map(|m| m.iter().map(|p| p.to_vec()).collect()).collect();
        let needles =
            ["../evil.ini", "a/b.ini", "longer than 255", "unknown command", "1 part(s)", "7 part(s)", "65535"];
        Bad { items: bad.len(), refused: "zmq message refused", warnings: needles.map(|n| (n.to_owned(), None)).into() }
    }
}

conformance!(Zmq::new() => first_events, ends_within_a_second_of_shutdown, create_change_delete, bad_item_reported_once);
