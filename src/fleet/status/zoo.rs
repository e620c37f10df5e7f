//! The ZooKeeper status store (`zoo://…?register=PATH&status=1`): one
//! persistent node per vassal, `PATH/<host>/<name>`, holding JSON (`state,
//! pid, restarts, last_exit`); the node's mtime is the server's time of its
//! last write. Liveness is the registration node the source already keeps
//! (ephemeral, with the counts), so the heartbeat is a no-op here, and the
//! claim only checks that no other live emperor is registered with this
//! host name. Nodes are written one by one, only when they change.

use super::dirty::{state_name, Batch, Row};
use super::{Claim, Me, Store};
use std::collections::HashMap;
use std::time::Duration;
use zookeeper_client as zk;

/// A status subtree of a `zoo://` source.
#[derive(Debug, Clone)]
pub struct ZooStatus {
    /// The source's id (its URI, password masked).
    pub source: String,
    /// The connect string (`h1:2181,h2:2181`).
    pub hosts: String,
    /// Digest credentials, `user:password`.
    pub auth: Option<String>,
    /// The registration directory; the nodes go under `dir/<host>/`.
    pub dir: String,
    /// The session timeout asked for.
    pub session_timeout: Duration,
}

impl ZooStatus {
    fn host_dir(&self, host: &str) -> String {
        format!("{}/{host}", self.dir.trim_end_matches('/'))
    }

    fn options(&self) -> zk::CreateOptions<'static> {
        zk::CreateMode::Persistent.with_acls(crate::source::table::zoo::acls(self.auth.is_some()))
    }

    /// Writes one vassal's node, creating it (and its host's node) when missing.
    async fn put(&self, client: &zk::Client, host: &str, name: &str, row: &Row) -> Result<(), zk::Error> {
        let path = format!("{}/{name}", self.host_dir(host));
        let data = serde_json::json!({
            "state": row.state, "pid": row.pid, "restarts": row.restarts, "last_exit": row.last_exit,
        })
        .to_string();
        match client.set_data(&path, data.as_bytes(), None).await {
            Ok(_) => return Ok(()),
            Err(zk::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
        match client.mkdir(&self.host_dir(host), &self.options()).await {
            Ok(()) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(e),
        }
        client.create(&path, data.as_bytes(), &self.options()).await.map(drop)
    }
}

/// A node's JSON as a row (`since` unknown).
fn decode(data: &[u8]) -> Row {
    let value: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
    Row {
        state: state_name(value["state"].as_str().unwrap_or_default()),
        pid: value["pid"].as_i64().and_then(|p| i32::try_from(p).ok()),
        since: None,
        restarts: value["restarts"].as_i64().and_then(|r| i32::try_from(r).ok()).unwrap_or_default(),
        last_exit: value["last_exit"].as_str().map(str::to_owned),
    }
}

impl Store for ZooStatus {
    type Conn = zk::Client;

    fn source(&self) -> &str {
        &self.source
    }

    /// Nothing to renew: the registration node is the heartbeat.
    fn heartbeat(&self) -> Duration {
        super::DEFAULT_HEARTBEAT
    }

    async fn connect(&self) -> Result<zk::Client, String> {
        let mut connector = zk::Client::connector().with_session_timeout(self.session_timeout).with_fail_eagerly();
        if let Some(auth) = &self.auth {
            connector = connector.with_auth("digest", auth.as_bytes());
        }
        connector.connect(&self.hosts).await.map_err(|e| e.to_string())
    }

    async fn claim(&self, client: &mut zk::Client, me: &Me, _: Duration, _: &str) -> Result<Claim, String> {
        let taken = crate::source::table::zoo::taken_by(client, &self.dir, &me.host, &me.emperor_id).await;
        match taken.map_err(|e| e.to_string())? {
            None => Ok(Claim::Ours),
            Some((emperor_id, pid)) => Ok(Claim::Taken { emperor_id, pid: pid.parse().ok() }),
        }
    }

    async fn beat(&self, _: &mut zk::Client, _: &Me, _: &str) -> Result<bool, String> {
        Ok(true)
    }

    /// Nothing to mark: the registration node goes with the source's session.
    async fn stopped(&self, _: &mut zk::Client, _: &Me, _: &str) -> Result<bool, String> {
        Ok(true)
    }

    async fn read(&self, client: &mut zk::Client, host: &str) -> Result<HashMap<String, Row>, String> {
        let dir = self.host_dir(host);
        let names = match client.list_children(&dir).await {
            Ok(names) => names,
            Err(zk::Error::NoNode) => return Ok(HashMap::new()),
            Err(e) => return Err(e.to_string()),
        };
        let mut rows = HashMap::new();
        for name in names {
            match client.get_data(&format!("{dir}/{name}")).await {
                Ok((data, _)) => {
                    rows.insert(name, decode(&data));
                }
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(rows)
    }

    async fn write(&self, client: &mut zk::Client, host: &str, batch: &Batch) -> Result<(), String> {
        for upsert in &batch.upserts {
            self.put(client, host, &upsert.name, &upsert.row).await.map_err(|e| e.to_string())?;
        }
        for name in &batch.deletes {
            match client.delete(&format!("{}/{name}", self.host_dir(host)), None).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_decode() {
        let row = decode(br#"{"state":"crashed","pid":null,"restarts":2,"last_exit":"code 1"}"#);
        assert_eq!((row.state, row.pid, row.restarts, row.last_exit.as_deref()), ("crashed", None, 2, Some("code 1")));
        assert_eq!(decode(b"garbage").state, "unknown");
    }
}
