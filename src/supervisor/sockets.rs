//! Listening sockets held for vassals: the on-demand socket and a native
//! config's `socket = ADDR` keys.
//!
//! The emperor binds them once and keeps them open while the vassal is
//! wanted, across restarts of its process, so a restart drops no
//! connection: clients wait in the kernel's backlog. The fd holder gets a
//! copy of each (key `socket/<vassal>/<address>`), so an emperor crash does
//! not close them either; the next emperor takes them back.

use super::address::{AddressError, SocketAddress};
use super::holder_link::HolderLink;
use reconciler::VassalName;
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};

/// One held listening socket.
#[derive(Debug)]
pub(super) struct Held {
    /// The address as written (the key it is held under).
    pub(super) address: String,
    /// The listening socket.
    pub(super) fd: OwnedFd,
}

/// Every socket held for the vassals; see the module docs.
#[derive(Default)]
pub(super) struct HeldSockets {
    by_vassal: HashMap<VassalName, Vec<Held>>,
    /// Taken back from the fd holder after a restart, not yet claimed, by
    /// vassal name and address.
    pool: HashMap<(String, String), OwnedFd>,
    /// Vassals no longer managed: their sockets close at the next
    /// [`HeldSockets::close_orphans`] unless they are started again first.
    orphans: HashSet<VassalName>,
}

/// The fd holder key of `vassal`'s socket on `address`.
pub(super) fn key(vassal: &str, address: &str) -> String {
    format!("socket/{vassal}/{address}")
}

/// The vassal and the address of a socket key (vassal names hold no `/`).
pub(super) fn parse_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix("socket/")?.split_once('/')
}

impl HeldSockets {
    /// Makes `vassal` hold exactly `addresses`, in that order: sockets it
    /// holds already on the same address are kept, the fd holder's are
    /// taken back, others are bound (and a copy given to the holder);
    /// sockets it no longer asks for are closed.
    pub(super) fn acquire(
        &mut self,
        vassal: &VassalName,
        addresses: &[String],
        holder: &mut HolderLink,
    ) -> Result<&[Held], AddressError> {
        if addresses.is_empty() && !self.by_vassal.contains_key(vassal) && self.pool.is_empty() {
            return Ok(&[]);
        }
        let parsed: Vec<SocketAddress> =
            addresses.iter().map(|a| SocketAddress::parse(vassal, a)).collect::<Result<_, _>>()?;
        self.orphans.remove(vassal);
        let mut old = self.by_vassal.remove(vassal).unwrap_or_default();
        // What is held already, first; what it no longer asks for is closed
        // before anything is bound, so that a moved socket frees its address.
        let mut slots: Vec<Option<OwnedFd>> = addresses
            .iter()
            .map(|text| match old.iter().position(|h| h.address == *text) {
                Some(i) => Some(old.swap_remove(i).fd),
                None => self.pool.remove(&(vassal.to_string(), text.clone())),
            })
            .collect();
        close(vassal, old, holder);
        self.close_pooled(vassal, holder);
        let mut failure = None;
        for ((slot, text), address) in slots.iter_mut().zip(addresses).zip(&parsed) {
            if slot.is_some() {
                continue;
            }
            match address.listen(vassal, text) {
                Ok(fd) => {
                    hand_over(holder, vassal, text, &fd);
                    tracing::info!(vassal = %vassal, address = %text, "listening for the vassal");
                    *slot = Some(fd);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let now: Vec<Held> =
            addresses.iter().zip(slots).filter_map(|(a, fd)| Some(Held { address: a.clone(), fd: fd? })).collect();
        if let Some(e) = failure {
            self.by_vassal.insert(vassal.clone(), now);
            return Err(e);
        }
        // Vassals without sockets (most) leave no entry.
        match now.is_empty() {
            true => Ok(&[]),
            false => Ok(self.by_vassal.entry(vassal.clone()).insert_entry(now).into_mut()),
        }
    }

    /// The sockets `vassal` holds, in the order they were asked for.
    pub(super) fn of(&self, vassal: &VassalName) -> &[Held] {
        self.by_vassal.get(vassal).map_or(&[], Vec::as_slice)
    }

    /// Marks `vassal` as no longer managed; see [`HeldSockets::close_orphans`].
    pub(super) fn release(&mut self, vassal: &VassalName) {
        if self.by_vassal.contains_key(vassal) || self.pool.keys().any(|(name, _)| name == vassal.as_str()) {
            self.orphans.insert(vassal.clone());
        }
    }

    /// Closes what the fd holder kept for `vassal` that it did not claim.
    fn close_pooled(&mut self, vassal: &VassalName, holder: &mut HolderLink) {
        if self.pool.is_empty() {
            return;
        }
        let keys: Vec<(String, String)> =
            self.pool.keys().filter(|(name, _)| name == vassal.as_str()).cloned().collect();
        let unclaimed = keys.into_iter().filter_map(|key| {
            let fd = self.pool.remove(&key)?;
            Some(Held { address: key.1, fd })
        });
        close(vassal, unclaimed.collect(), holder);
    }

    /// Closes the sockets of the vassals released and not started again
    /// since (a restart releases, then starts in the same round: its
    /// sockets stay open all along).
    pub(super) fn close_orphans(&mut self, holder: &mut HolderLink) {
        for vassal in std::mem::take(&mut self.orphans) {
            if let Some(held) = self.by_vassal.remove(&vassal) {
                close(&vassal, held, holder);
            }
            self.close_pooled(&vassal, holder);
        }
    }

    /// Keeps the sockets among the fd holder's copies for the vassals that
    /// claim them (`wanted` says which vassal names may); the others are
    /// closed and dropped from the holder.
    pub(super) fn take_back(
        &mut self,
        listed: Vec<(String, OwnedFd)>,
        holder: &mut HolderLink,
        wanted: impl Fn(&str) -> bool,
    ) {
        for (key, fd) in listed {
            let Some((vassal, address)) = parse_key(&key) else { continue };
            if wanted(vassal) {
                if let Err(e) = holder.keep(&key, fd.as_fd()) {
                    tracing::warn!(vassal, address, error = %e, "cannot keep a copy of a held socket");
                }
                self.pool.insert((vassal.to_owned(), address.to_owned()), fd);
            } else {
                tracing::info!(vassal, address, "closing a held socket no vassal claims");
                holder.drop_key(&key);
            }
        }
    }
}

/// Gives the fd holder a copy of a new socket.
fn hand_over(holder: &mut HolderLink, vassal: &VassalName, address: &str, fd: &OwnedFd) {
    if let Err(e) = holder.put(&key(vassal.as_str(), address), fd.as_fd()) {
        tracing::warn!(vassal = %vassal, address, error = %e, "cannot hand the socket to the fd holder");
    }
}

/// Closes sockets, and the fd holder's copies of them; a unix socket's
/// file goes too, so that no client waits on a socket nobody serves.
fn close(vassal: &VassalName, held: Vec<Held>, holder: &mut HolderLink) {
    for Held { address, fd } in held {
        holder.drop_key(&key(vassal.as_str(), &address));
        drop(fd);
        if address.starts_with('/') {
            let _ = std::fs::remove_file(&address);
        }
        tracing::info!(vassal = %vassal, address = %address, "socket closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn name(s: &str) -> VassalName {
        VassalName::parse(s).unwrap()
    }

    #[test]
    fn keys_round_trip_with_paths_and_ports() {
        assert_eq!(parse_key(&key("a.ini", "/run/a/b.sock")), Some(("a.ini", "/run/a/b.sock")));
        assert_eq!(parse_key(&key("a.ini", ":80")), Some(("a.ini", ":80")));
        assert_eq!(parse_key("control:1:a.ini"), None);
    }

    #[test]
    fn sockets_survive_a_release_and_start_in_one_round() {
        let dir = tempfile::tempdir().unwrap();
        let path = format!("{}/a.sock", dir.path().display());
        let mut held = HeldSockets::default();
        let a = name("a.ini");
        let first =
            held.acquire(&a, std::slice::from_ref(&path), &mut HolderLink::detached()).unwrap()[0].fd.as_raw_fd();
        held.release(&a);
        let again =
            held.acquire(&a, std::slice::from_ref(&path), &mut HolderLink::detached()).unwrap()[0].fd.as_raw_fd();
        assert_eq!(first, again, "the same socket, never closed");
        held.close_orphans(&mut HolderLink::detached());
        assert_eq!(held.of(&a).len(), 1);
        held.release(&a);
        held.close_orphans(&mut HolderLink::detached());
        assert!(held.of(&a).is_empty());
    }

    #[test]
    fn a_new_address_closes_the_old_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (p1, p2) = (format!("{}/1.sock", dir.path().display()), format!("{}/2.sock", dir.path().display()));
        let mut held = HeldSockets::default();
        let a = name("a.ini");
        held.acquire(&a, std::slice::from_ref(&p1), &mut HolderLink::detached()).unwrap();
        assert!(std::os::unix::net::UnixStream::connect(&p1).is_ok());
        let now = held.acquire(&a, std::slice::from_ref(&p2), &mut HolderLink::detached()).unwrap();
        assert_eq!(now[0].address, p2);
        assert!(std::os::unix::net::UnixStream::connect(&p1).is_err(), "old socket closed");
        let err = held.acquire(&a, &["nope".to_owned()], &mut HolderLink::detached()).unwrap_err().to_string();
        assert!(err.contains("a.ini") && err.contains("nope"), "{err}");
    }

    #[test]
    fn sockets_taken_back_are_claimed_or_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (p1, p2) = (format!("{}/1.sock", dir.path().display()), format!("{}/2.sock", dir.path().display()));
        let listed = |path: &str, vassal: &str| {
            let fd = crate::sys::socket::listen_unix(std::path::Path::new(path)).unwrap();
            (key(vassal, path), fd)
        };
        let mut held = HeldSockets::default();
        let first = listed(&p1, "a.ini");
        let raw = first.1.as_raw_fd();
        held.take_back(
            vec![first, listed(&p2, "a.ini"), listed(&format!("{p1}.x"), "gone.ini")],
            &mut HolderLink::detached(),
            |v| v == "a.ini",
        );
        assert_eq!(held.pool.len(), 2, "the unrecorded vassal's socket is not kept");
        let a = name("a.ini");
        assert_eq!(
            held.acquire(&a, std::slice::from_ref(&p1), &mut HolderLink::detached()).unwrap()[0].fd.as_raw_fd(),
            raw
        );
        assert!(held.pool.is_empty(), "what a.ini no longer asks for is closed");
        assert!(std::os::unix::net::UnixStream::connect(&p2).is_err());
    }
}
