//! `register=PATH`: this emperor keeps an ephemeral node
//! `PATH/<hostname>-<emperor id>` while its session lives, so that an
//! operator sees from ZooKeeper which emperors are alive. The node holds
//! JSON: `host`, `pid`, `started` (Unix seconds) and `emperor_id`.
//!
//! Every new session registers again. A node left by an earlier session
//! (an emperor restarted before its old session expired, or an expired
//! session of this one) is taken over in one transaction (delete, create),
//! never left to vanish when that old session ends.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
use zookeeper_client as zk;

/// Full rights for the creator's credentials, reading for anyone.
static AUTHED: [zk::Acl; 2] =
    [zk::Acl::new_const(zk::Permission::ALL, "auth", ""), zk::Acl::new_const(zk::Permission::READ, "world", "anyone")];

/// What this emperor registers, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The registration node.
    pub path: String,
    /// Its data.
    pub data: Vec<u8>,
    /// Whether the session logs in (the node is then writable by those
    /// credentials only).
    pub authed: bool,
}

impl Registration {
    /// The node under `dir` for this emperor, started at `started` (Unix seconds).
    pub fn new(dir: &str, emperor_id: &str, started: u64, authed: bool) -> Self {
        let host = hostname();
        let data = serde_json::json!({
            "host": host,
            "pid": std::process::id(),
            "started": started,
            "emperor_id": emperor_id,
        });
        let dir = dir.trim_end_matches('/');
        Registration { path: format!("{dir}/{host}-{emperor_id}"), data: data.to_string().into_bytes(), authed }
    }

    fn acls(&self) -> zk::Acls<'static> {
        match self.authed {
            true => zk::Acls::new(&AUTHED),
            false => zk::Acls::anyone_all(),
        }
    }

    /// Creates the node for `client`'s session (and its parents), taking
    /// over a node an earlier session left.
    pub async fn register(&self, client: &zk::Client) -> Result<(), zk::Error> {
        let ephemeral = zk::CreateMode::Ephemeral.with_acls(self.acls());
        let parent = self.path.rsplit_once('/').map_or("/", |(p, _)| if p.is_empty() { "/" } else { p });
        if parent != "/" {
            match client.mkdir(parent, &zk::CreateMode::Persistent.with_acls(self.acls())).await {
                Ok(()) | Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(e),
            }
        }
        let ours = client.session_id().0;
        for _ in 0..3 {
            match client.create(&self.path, &self.data, &ephemeral).await {
                Ok(_) => return Ok(()),
                Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(e),
            }
            let stat = match client.check_stat(&self.path).await? {
                Some(stat) => stat,
                None => continue,
            };
            if stat.ephemeral_owner == ours {
                return client.set_data(&self.path, &self.data, None).await.map(drop);
            }
            let mut swap = client.new_multi_writer();
            swap.add_delete(&self.path, Some(stat.version))?;
            swap.add_create(&self.path, &self.data, &ephemeral)?;
            match swap.commit().await.map_err(zk::Error::from) {
                Ok(_) => return Ok(()),
                Err(zk::Error::NoNode | zk::Error::BadVersion | zk::Error::NodeExists) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(zk::Error::NodeExists)
    }
}

/// This machine's host name.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_path_and_data() {
        let r = Registration::new("/emperor/hosts/", "abc123", now(), false);
        let host = hostname();
        assert_eq!(r.path, format!("/emperor/hosts/{host}-abc123"));
        let data: serde_json::Value = serde_json::from_slice(&r.data).unwrap();
        assert_eq!(data["pid"], std::process::id());
        assert_eq!(data["host"], host);
        assert_eq!(data["emperor_id"], "abc123");
        assert!(data["started"].as_u64().unwrap() > 1_600_000_000);
        assert_eq!(r.acls(), zk::Acls::anyone_all());
        assert_eq!(Registration::new("/h", "x", 0, true).acls().len(), 2);
    }
}
