//! Status write-back to ZooKeeper (`zoo://…?register=PATH&status=1`): one
//! persistent node per vassal under `PATH/<host>/` follows the vassals; a
//! second live emperor with the same host name is refused.

use super::{ctl_list, Seen};
use crate::common::*;
use crate::servers::{ZkClient, ZooKeeper};

const DIR: &str = "/zs/hosts/z1";

/// The status nodes of host z1, as name → (state, pid), and each node's JSON.
fn status_nodes(c: &mut ZkClient) -> (Seen, Vec<serde_json::Value>) {
    let mut seen = Seen::new();
    let mut all = Vec::new();
    for name in c.children(DIR) {
        let Some(data) = c.get(&format!("{DIR}/{name}")) else { continue };
        let v: serde_json::Value = serde_json::from_slice(&data).expect("a status node holds JSON");
        seen.insert(name, (v["state"].as_str().unwrap_or_default().to_owned(), v["pid"].as_i64().map(|p| p as i32)));
        all.push(v);
    }
    (seen, all)
}

fn wait_nodes_match(c: &mut ZkClient, h: &Harness, names: &[&str]) -> Seen {
    wait_until(DEADLINE, "the status nodes to match ctl list", || {
        let listed = ctl_list(h)?;
        let complete = names.iter().all(|n| listed.get(*n).is_some_and(|(state, _)| state == "running"));
        let (nodes, _) = status_nodes(c);
        (complete && listed.len() == names.len() && nodes == listed).then_some(nodes)
    })
}

#[test]
fn zookeeper_nodes_follow_the_vassals() {
    let zk = ZooKeeper::shared();
    let mut c = zk.client();
    c.mkdir("/zs/vassals");
    let mut h = Harness::new();
    let uri = format!("zoo://127.0.0.1:{}/zs/vassals?register=/zs/hosts&status=1", zk.port);
    h.start(&["--host", "z1", &uri]);
    for name in ["a.ini", "b.ini"] {
        c.create(&format!("/zs/vassals/{name}"), uwsgi_ini("# z1").as_bytes());
    }
    let nodes = wait_nodes_match(&mut c, &h, &["a.ini", "b.ini"]);

    let pid = nodes["a.ini"].1.expect("a.ini's pid");
    kill(pid, libc::SIGKILL);
    wait_until(DEADLINE, "a.ini's crash in its status node", || {
        let (_, all) = status_nodes(&mut c);
        cond(all.iter().any(|v| v["last_exit"] == "signal SIGKILL"))
    });
    let nodes = wait_nodes_match(&mut c, &h, &["a.ini", "b.ini"]);
    assert_ne!(nodes["a.ini"].1, Some(pid));

    c.delete("/zs/vassals/b.ini");
    wait_nodes_match(&mut c, &h, &["a.ini"]);

    // The registration node is named by --host.
    let id = std::fs::read_to_string(h.state.join("emperor-id")).expect("the emperor id");
    wait_until(DEADLINE, "the registration node", || cond(c.get(&format!("/zs/hosts/z1-{}", id.trim())).is_some()));
    // A second live emperor as z1 is refused.
    let twin = Harness::new();
    let mut run = twin.spawn(&["--host", "z1", &uri], &[]);
    assert!(!run.wait_exit_within(DEADLINE).success(), "a second emperor as z1 must not start");
    let log = twin.log_text();
    assert!(log.contains("another emperor") && log.contains("\"z1\""), "the refusal names the host: {log}");
}
