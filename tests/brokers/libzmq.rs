//! A libzmq PUSH sender (Debian `python3-zmq` under `/usr/bin/python3`,
//! not the pyenv one) for the `zmq://` tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The system Python that has Debian's python3-zmq.
const PYTHON: &str = "/usr/bin/python3";

/// Sends each message (hex-encoded parts) with a libzmq PUSH socket; close
/// waits up to LINGER ms for delivery.
const SENDER: &str = r#"
import json, sys, zmq
endpoint, path, linger = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = zmq.Context()
s = ctx.socket(zmq.PUSH)
s.setsockopt(zmq.LINGER, linger)
s.connect(endpoint)
for parts in json.load(open(path)):
    s.send_multipart([bytes.fromhex(p) for p in parts])
s.close()
ctx.term()
"#;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts the libzmq sender for `messages` to `endpoint`, its files in `dir`.
pub fn spawn_sender(dir: &Path, endpoint: &str, messages: &[Vec<&[u8]>], linger_ms: u32) -> Child {
    let ok = Command::new(PYTHON).args(["-c", "import zmq"]).stderr(Stdio::null()).status();
    assert!(
        ok.is_ok_and(|s| s.success()),
        "{PYTHON} cannot import zmq: install the Debian package python3-zmq (deploy/install-test-deps.sh)"
    );
    let script = dir.join("zmq_sender.py");
    std::fs::write(&script, SENDER).unwrap();
    let json: Vec<String> = messages
        .iter()
        .map(|m| format!("[{}]", m.iter().map(|p| format!("\"{}\"", hex(p))).collect::<Vec<_>>().join(",")))
        .collect();
    let file = tempfile::NamedTempFile::new_in(dir).unwrap().into_temp_path().keep().unwrap();
    std::fs::write(&file, format!("[{}]", json.join(","))).unwrap();
    Command::new(PYTHON)
        .arg(&script)
        .arg(endpoint)
        .arg(&file)
        .arg(linger_ms.to_string())
        .spawn()
        .expect("run the libzmq sender")
}

/// Sends `messages` and waits (up to `timeout`) until the sender has
/// delivered them.
pub fn send(dir: &Path, endpoint: &str, messages: &[Vec<&[u8]>], timeout: Duration) {
    let mut child = spawn_sender(dir, endpoint, messages, 10_000);
    let status = crate::common::wait_until(timeout, "the libzmq sender to finish", || child.try_wait().unwrap());
    assert!(status.success(), "libzmq sender failed: {status}");
}

/// A `tcp://` endpoint on a free loopback port.
pub fn tcp_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("tcp://127.0.0.1:{port}")
}
