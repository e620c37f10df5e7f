//! Singleton leases in ZooKeeper: the lock recipe on a session of their own.
//!
//! Each singleton has a persistent node `LEASES/<name>` (`leases=PATH`,
//! default `<base>.leases`). Every candidate queues an
//! `EPHEMERAL_SEQUENTIAL` child `<session id>-lease-<sequence>` holding its
//! holder name (`host/id`); the lowest sequence holds the lease. The node
//! lives as long as the session, whose timeout is `--lease`: the server
//! deletes a silent holder's node no earlier than `--lease` after it last
//! heard from it, which is the expiry the holder's own deadlines are
//! counted against. A server that grants less than `--lease` is refused.
//!
//! * **Token**: the holder node's `czxid`, which grows with every change of
//!   holder (a later holder's node was created later).
//! * **Renewal**: one `multi` of version checks on our own nodes, which the
//!   leader answers only while the session and the nodes are alive.
//! * **Waking**: a candidate watches the node just ahead of its own and
//!   tries again as soon as that one goes.
//! * **Release**: deleting our node (a candidate that no longer wants the
//!   lease leaves the queue the same way).
//! * **Restart**: the session cannot be resumed by a new process, so a
//!   restarted emperor never renews an old lease (its singleton is killed at
//!   once); when it queues again, it deletes the nodes an earlier session of
//!   the same holder left, so the next candidate need not wait for them to
//!   expire.
//!
//! The session is detached: should the lease task end while a singleton
//! still runs, the server keeps its node until the session expires, never
//! less.

use crate::fleet::lease::{LeaseStore, StoreFuture};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use zookeeper_client as zk;

/// Why a lease call failed; each names the source.
#[derive(Debug, thiserror::Error)]
pub enum ZooLeaseError {
    /// The server failed a request.
    #[error("leases of {source_id}: {error}")]
    Server {
        /// The source.
        source_id: String,
        /// What the server said.
        error: zk::Error,
    },
    /// The server grants a session shorter than the lease.
    #[error(
        "{source_id} grants sessions of at most {granted:?}, less than --lease ({lease:?}): a singleton could \
         outlive its node; give a --lease of at most {granted:?}, or raise the server's maxSessionTimeout \
         (20 × tickTime by default)"
    )]
    Refused {
        /// The source.
        source_id: String,
        /// The session timeout the server granted.
        granted: Duration,
        /// `--lease`.
        lease: Duration,
    },
}

/// Our node in one singleton's queue.
#[derive(Debug, Clone)]
struct Own {
    path: String,
    czxid: i64,
}

/// A session of the lease store, with our node per singleton.
struct Session {
    client: zk::Client,
    nodes: HashMap<String, Own>,
    /// The node ahead of ours watched per singleton (one watch each).
    watched: HashMap<String, String>,
}

impl Session {
    /// The name prefix of this session's nodes: its id, so that a node
    /// whose create answer was lost is found again.
    fn prefix(&self) -> String {
        format!("{:016x}-lease-", self.client.session_id().0)
    }
}

/// The leases of one emperor in one ZooKeeper ensemble.
pub struct ZooLeases {
    source: String,
    hosts: String,
    auth: Option<String>,
    dir: String,
    holder: String,
    lease: Duration,
    session: Option<Session>,
    /// Notified when a node ahead of ours goes.
    wakeup: Arc<Notify>,
}

/// The sequence number of a queued node, from its name.
fn sequence(child: &str) -> Option<i64> {
    child.rsplit_once("-lease-")?.1.parse().ok()
}

impl ZooLeases {
    /// Leases under `dir` for `holder`, each lasting `lease`, on the
    /// ensemble `hosts` (logging in with digest `auth`, `user:password`).
    pub fn new(source: &str, hosts: &str, auth: Option<String>, dir: &str, holder: &str, lease: Duration) -> Self {
        Self {
            source: source.to_owned(),
            hosts: hosts.to_owned(),
            auth,
            dir: dir.to_owned(),
            holder: holder.to_owned(),
            lease,
            session: None,
            wakeup: Arc::new(Notify::new()),
        }
    }

    fn error(&self, error: zk::Error) -> ZooLeaseError {
        ZooLeaseError::Server { source_id: self.source.clone(), error }
    }

    fn options(&self, mode: zk::CreateMode) -> zk::CreateOptions<'static> {
        mode.with_acls(super::acls(self.auth.is_some()))
    }

    /// A session of `--lease`, checked to be granted in full; `detached`:
    /// kept by the server until it expires even when the client is dropped.
    async fn open(&self, detached: bool) -> Result<zk::Client, ZooLeaseError> {
        let mut connector = zk::Client::connector().with_session_timeout(self.lease).with_fail_eagerly();
        if detached {
            connector = connector.with_detached();
        }
        if let Some(auth) = &self.auth {
            connector = connector.with_auth("digest", auth.as_bytes());
        }
        let client = connector.connect(&self.hosts).await.map_err(|e| self.error(e))?;
        let granted = client.session_timeout();
        if granted < self.lease {
            return Err(ZooLeaseError::Refused { source_id: self.source.clone(), granted, lease: self.lease });
        }
        tracing::debug!(source = %self.source, session = ?client.session_id(), ?granted, "lease session open");
        Ok(client)
    }

    /// The session, opened when there is none (the first time a lease is
    /// wanted: an emperor without singletons keeps no lease session).
    async fn session(&mut self) -> Result<&mut Session, ZooLeaseError> {
        if self.session.is_none() {
            let client = self.open(true).await?;
            self.session = Some(Session { client, nodes: HashMap::new(), watched: HashMap::new() });
        }
        Ok(self.session.as_mut().expect("just opened"))
    }

    /// Queues this session for `name`'s lease, unless it already is.
    async fn enqueue(&mut self, name: &str) -> Result<Option<Own>, ZooLeaseError> {
        let dir = format!("{}/{name}", self.dir);
        let (holder, persistent, queued) = (
            self.holder.clone(),
            self.options(zk::CreateMode::Persistent),
            self.options(zk::CreateMode::EphemeralSequential),
        );
        let session = self.session().await?;
        if let Some(own) = session.nodes.get(name) {
            return Ok(Some(own.clone()));
        }
        let client = session.client.clone();
        let prefix = session.prefix();
        let result = async {
            match client.mkdir(&dir, &persistent).await {
                Ok(()) | Err(zk::Error::NodeExists) => {}
                Err(e) => return Err(e),
            }
            let children = client.list_children(&dir).await?;
            if let Some(mine) = children.iter().find(|c| c.starts_with(&prefix)) {
                let path = format!("{dir}/{mine}");
                return Ok(client.check_stat(&path).await?.map(|stat| Own { path, czxid: stat.czxid }));
            }
            for child in &children {
                let path = format!("{dir}/{child}");
                // An earlier session of this holder (before a restart): its
                // singleton was killed before this one queued again.
                if let Ok((data, stat)) = client.get_data(&path).await {
                    if data == holder.as_bytes() {
                        let _ = client.delete(&path, Some(stat.version)).await;
                        tracing::info!(vassal = %name, node = %path, "removed the lease node of an earlier session");
                    }
                }
            }
            let (stat, seq) = client.create(&format!("{dir}/{prefix}"), holder.as_bytes(), &queued).await?;
            Ok(Some(Own { path: format!("{dir}/{prefix}{seq}"), czxid: stat.czxid }))
        }
        .await;
        let own = result.map_err(|e| self.error(e))?;
        if let (Some(own), Some(session)) = (&own, self.session.as_mut()) {
            session.nodes.insert(name.to_owned(), own.clone());
        }
        Ok(own)
    }

    /// Whether our node is the lowest in `name`'s queue.
    async fn holds(&mut self, name: &str, own: &Own) -> Result<bool, ZooLeaseError> {
        let client = self.session().await?.client.clone();
        let dir = format!("{}/{name}", self.dir);
        let children = match client.list_children(&dir).await {
            Ok(children) => children,
            Err(zk::Error::NoNode) => Vec::new(),
            Err(e) => return Err(self.error(e)),
        };
        let mine = own.path.rsplit('/').next().unwrap_or_default();
        if !children.iter().any(|c| c == mine) {
            // Deleted by someone else: queue again next time.
            self.forget(name);
            return Ok(false);
        }
        let Some(seq) = sequence(mine) else { return Ok(false) };
        let ahead = children.iter().filter_map(|c| Some((sequence(c)?, c))).filter(|(s, _)| *s < seq).max();
        match ahead {
            None => Ok(true),
            Some((_, ahead)) => {
                self.watch(name, format!("{dir}/{ahead}")).await;
                Ok(false)
            }
        }
    }

    /// Watches the node just ahead of ours (as the lock recipe does, to
    /// wake only the next candidate), unless it already is.
    async fn watch(&mut self, name: &str, ahead: String) {
        let Some(session) = self.session.as_mut() else { return };
        if session.watched.get(name) == Some(&ahead) {
            return;
        }
        let Ok((stat, watcher)) = session.client.check_and_watch_stat(&ahead).await else { return };
        session.watched.insert(name.to_owned(), ahead);
        let wakeup = self.wakeup.clone();
        match stat {
            None => wakeup.notify_one(),
            Some(_) => drop(tokio::spawn(async move {
                watcher.changed().await;
                wakeup.notify_one();
            })),
        }
    }

    fn forget(&mut self, name: &str) {
        if let Some(session) = self.session.as_mut() {
            session.nodes.remove(name);
        }
    }

    async fn acquire_nodes(&mut self, names: &[String]) -> Result<Vec<(String, u64)>, ZooLeaseError> {
        let mut taken = Vec::new();
        for name in names {
            let Some(own) = self.enqueue(name).await? else { continue };
            if self.holds(name, &own).await? {
                taken.push((name.clone(), own.czxid as u64));
            }
        }
        Ok(taken)
    }

    /// Proves, in one round trip through the leader, that the session and
    /// our nodes are alive; a node that is gone drops out and the rest are
    /// checked again.
    async fn renew_nodes(&mut self, held: &[(String, u64)]) -> Result<Vec<String>, ZooLeaseError> {
        let session = self.session().await?;
        let mut alive: Vec<(String, Own)> = held
            .iter()
            .filter_map(|(name, token)| {
                let own = session.nodes.get(name)?;
                (own.czxid as u64 == *token).then(|| (name.clone(), own.clone()))
            })
            .collect();
        let client = session.client.clone();
        while !alive.is_empty() {
            let mut multi = client.new_multi_writer();
            for (_, own) in &alive {
                multi.add_check_version(&own.path, 0).map_err(|e| self.error(e))?;
            }
            match multi.commit().await {
                Ok(_) => break,
                Err(zk::MultiWriteError::OperationFailed { index, source }) => {
                    let (name, _) = alive.remove(index);
                    tracing::warn!(vassal = %name, source = %self.source, error = %source, "the singleton's lease node is gone");
                    self.forget(&name);
                }
                Err(zk::MultiWriteError::RequestFailed { source }) => return Err(self.error(source)),
            }
        }
        Ok(alive.into_iter().map(|(name, _)| name).collect())
    }

    async fn release_nodes(&mut self, names: &[String]) -> Result<(), ZooLeaseError> {
        let Some(session) = self.session.as_mut() else { return Ok(()) };
        let client = session.client.clone();
        let owned: Vec<(String, Own)> =
            names.iter().filter_map(|n| Some((n.clone(), session.nodes.remove(n)?))).collect();
        for (name, own) in owned {
            match client.delete(&own.path, None).await {
                Ok(()) | Err(zk::Error::NoNode) => tracing::debug!(vassal = %name, "singleton lease released"),
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(())
    }

    /// Checks the session timeout the server grants on a session that
    /// closes at once.
    async fn check_lease(&mut self) -> Result<Option<String>, String> {
        match self.open(false).await {
            Ok(_) => Ok(None),
            Err(e @ ZooLeaseError::Refused { .. }) => Ok(Some(e.to_string())),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The error as the lease task takes it; a refusal is logged as an error
/// (the task logs failed acquisitions at debug level only).
fn message(e: ZooLeaseError) -> String {
    if let ZooLeaseError::Refused { source_id, .. } = &e {
        tracing::error!(source = %source_id, error = %e, "no singleton can run from this source");
    }
    e.to_string()
}

impl LeaseStore for ZooLeases {
    fn acquire<'a>(&'a mut self, names: &'a [String]) -> StoreFuture<'a, Vec<(String, u64)>> {
        Box::pin(async move { self.acquire_nodes(names).await.map_err(message) })
    }

    fn renew<'a>(&'a mut self, held: &'a [(String, u64)]) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move { self.renew_nodes(held).await.map_err(message) })
    }

    fn release<'a>(&'a mut self, names: &'a [String]) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.release_nodes(names).await.map_err(message) })
    }

    fn refusal(&mut self) -> StoreFuture<'_, Option<String>> {
        Box::pin(self.check_lease())
    }

    fn wakeup(&self) -> Option<Arc<Notify>> {
        Some(self.wakeup.clone())
    }

    /// Keeps a live session (its nodes are the leases; the client
    /// reconnects by itself); drops only one the server ended.
    fn reset(&mut self) {
        if self.session.as_ref().is_some_and(|s| s.client.state().is_terminated()) {
            self.session = None;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sequences_come_from_the_name() {
        assert_eq!(super::sequence("00000000deadbeef-lease-0000000042"), Some(42));
        assert_eq!(super::sequence("other"), None);
    }
}
