//! `register=PATH`: this emperor keeps an ephemeral node
//! `PATH/<host>-<emperor id>` (`<host>` is `--host`) while its session lives, so that an
//! operator sees from ZooKeeper which emperors are alive and how their
//! vassals fare. The node holds JSON: `host`, `pid`, `started` (Unix
//! seconds), `emperor_id` and `vassals`, the count of vassals per state
//! (`running`, `stopping`, `crashed`, `held`, `stopped`). The counts are
//! rewritten when they change, at most once per [`COUNTS_EVERY`], by a task
//! of the session (see [`Registration::keep_counts`]).
//!
//! Every new session registers again. A node left by an earlier session
//! (an emperor restarted before its old session expired, or an expired
//! session of this one) is taken over in one transaction (delete, create),
//! never left to vanish when that old session ends. A live node of another
//! emperor with the same host name refuses the registration ([`taken_by`]).

use crate::control::VassalCounts;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use zookeeper_client as zk;

/// The shortest interval between two writes of the counts.
pub const COUNTS_EVERY: Duration = Duration::from_secs(1);

/// Now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Full rights for the creator's credentials, reading for anyone.
static AUTHED: [zk::Acl; 2] =
    [zk::Acl::new_const(zk::Permission::ALL, "auth", ""), zk::Acl::new_const(zk::Permission::READ, "world", "anyone")];

/// What this emperor registers, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The registration node.
    pub path: String,
    /// This machine's host name.
    host: String,
    /// The emperor's id.
    emperor_id: String,
    /// When the emperor started, in Unix seconds.
    started: u64,
    /// Whether the session logs in (the node is then writable by those
    /// credentials only).
    pub authed: bool,
}

impl Registration {
    /// The node under `dir` for the emperor `emperor_id` named `host`,
    /// started at `started` (Unix seconds).
    pub fn new(dir: &str, host: &str, emperor_id: &str, started: u64, authed: bool) -> Self {
        let dir = dir.trim_end_matches('/');
        let path = format!("{dir}/{host}-{emperor_id}");
        Registration { path, host: host.to_owned(), emperor_id: emperor_id.to_owned(), started, authed }
    }

    /// The directory of the registration nodes.
    fn dir(&self) -> &str {
        self.path.rsplit_once('/').map_or("/", |(p, _)| if p.is_empty() { "/" } else { p })
    }

    /// The node's data with these vassal counts.
    pub fn data(&self, counts: &VassalCounts) -> Vec<u8> {
        let data = serde_json::json!({
            "host": self.host,
            "pid": std::process::id(),
            "started": self.started,
            "emperor_id": self.emperor_id,
            "vassals": counts,
        });
        data.to_string().into_bytes()
    }

    fn acls(&self) -> zk::Acls<'static> {
        acls(self.authed)
    }

    /// Creates the node for `client`'s session (and its parents), holding
    /// `counts`, taking over a node an earlier session left; refused while
    /// another emperor with this host name is registered.
    pub async fn register(&self, client: &zk::Client, counts: &VassalCounts) -> Result<(), RegisterError> {
        if let Some((emperor_id, pid)) = taken_by(client, self.dir(), &self.host, &self.emperor_id).await? {
            return Err(RegisterError::Taken { host: self.host.clone(), emperor_id, pid });
        }
        self.create(client, counts).await.map_err(RegisterError::Server)
    }

    async fn create(&self, client: &zk::Client, counts: &VassalCounts) -> Result<(), zk::Error> {
        let data = self.data(counts);
        let ephemeral = zk::CreateMode::Ephemeral.with_acls(self.acls());
        let parent = self.dir();
        if parent != "/" {
            match client.mkdir(parent, &zk::CreateMode::Persistent.with_acls(self.acls())).await {
                Ok(()) | Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(e),
            }
        }
        let ours = client.session_id().0;
        for _ in 0..3 {
            match client.create(&self.path, &data, &ephemeral).await {
                Ok(_) => return Ok(()),
                Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(e),
            }
            let stat = match client.check_stat(&self.path).await? {
                Some(stat) => stat,
                None => continue,
            };
            if stat.ephemeral_owner == ours {
                return client.set_data(&self.path, &data, None).await.map(drop);
            }
            let mut swap = client.new_multi_writer();
            swap.add_delete(&self.path, Some(stat.version))?;
            swap.add_create(&self.path, &data, &ephemeral)?;
            match swap.commit().await.map_err(zk::Error::from) {
                Ok(_) => return Ok(()),
                Err(zk::Error::NoNode | zk::Error::BadVersion | zk::Error::NodeExists) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(zk::Error::NodeExists)
    }

    /// Rewrites the node whenever `counts` change, at most once per
    /// [`COUNTS_EVERY`], until the session ends or the emperor stops
    /// publishing counts. Runs as a task of its own so that a slow server
    /// never holds up the source's reads; a failed write is tried again.
    pub async fn keep_counts(self, client: zk::Client, mut counts: watch::Receiver<VassalCounts>, source: String) {
        let mut retry = false;
        loop {
            if !retry && counts.changed().await.is_err() {
                return;
            }
            let data = self.data(&counts.borrow_and_update());
            retry = match client.set_data(&self.path, &data, None).await {
                Ok(_) => false,
                Err(e @ (zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::NoNode)) => {
                    tracing::debug!(%source, node = %self.path, error = %e, "vassal counts no longer written for this session");
                    return;
                }
                Err(e) => {
                    tracing::debug!(%source, node = %self.path, error = %e, "writing the vassal counts failed; retrying");
                    true
                }
            };
            tokio::time::sleep(COUNTS_EVERY).await;
        }
    }
}

/// Why this emperor could not register.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Another live emperor is registered under this host name.
    #[error(
        "another emperor (id {emperor_id}, pid {pid}) is registered as host {host:?}: give this one another \
         --host, or stop that one (its node goes when its session expires)"
    )]
    Taken {
        /// The host name both use.
        host: String,
        /// The other emperor's id.
        emperor_id: String,
        /// Its pid, or `?`.
        pid: String,
    },
    /// The server failed a request.
    #[error("{0}")]
    Server(#[from] zk::Error),
}

/// The id and pid of another emperor whose registration node under `dir`
/// names `host`: its session is alive (or not yet expired), so the name is
/// taken. An earlier session of `emperor_id` itself does not count.
pub async fn taken_by(
    client: &zk::Client,
    dir: &str,
    host: &str,
    emperor_id: &str,
) -> Result<Option<(String, String)>, zk::Error> {
    let children = match client.list_children(dir).await {
        Ok(children) => children,
        Err(zk::Error::NoNode) => return Ok(None),
        Err(e) => return Err(e),
    };
    let prefix = format!("{host}-");
    for child in children.iter().filter(|c| c.starts_with(&prefix)) {
        let data = match client.get_data(&format!("{}/{child}", dir.trim_end_matches('/'))).await {
            Ok((data, _)) => data,
            Err(zk::Error::NoNode) => continue,
            Err(e) => return Err(e),
        };
        let node: serde_json::Value = serde_json::from_slice(&data).unwrap_or_default();
        let other = node["emperor_id"].as_str().unwrap_or_default();
        if node["host"] == host && other != emperor_id {
            let pid = node["pid"].as_i64().map_or_else(|| "?".to_owned(), |p| p.to_string());
            return Ok(Some((other.to_owned(), pid)));
        }
    }
    Ok(None)
}

/// The ACLs of the nodes an emperor creates: full rights for its
/// credentials and reading for anyone when it logs in, else open.
pub fn acls(authed: bool) -> zk::Acls<'static> {
    match authed {
        true => zk::Acls::new(&AUTHED),
        false => zk::Acls::anyone_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_path_and_data() {
        let r = Registration::new("/emperor/hosts/", "web-1", "abc123", now(), false);
        let host = "web-1";
        assert_eq!(r.path, format!("/emperor/hosts/{host}-abc123"));
        assert_eq!(r.dir(), "/emperor/hosts");
        let counts = VassalCounts { running: 2, held: 1, ..VassalCounts::default() };
        let data: serde_json::Value = serde_json::from_slice(&r.data(&counts)).unwrap();
        assert_eq!(data["pid"], std::process::id());
        assert_eq!(data["host"], host);
        assert_eq!(data["emperor_id"], "abc123");
        assert!(data["started"].as_u64().unwrap() > 1_600_000_000);
        let vassals = serde_json::json!({"running": 2, "waiting": 0, "starting": 0, "stopping": 0, "crashed": 0, "held": 1, "stopped": 0});
        assert_eq!(data["vassals"], vassals);
        assert_eq!(r.acls(), zk::Acls::anyone_all());
        assert_eq!(Registration::new("/h", "web-1", "x", 0, true).acls().len(), 2);
        assert_eq!(Registration::new("/h", "web-1", "x", 0, true).dir(), "/h");
    }
}
