//! The consumer side of RFC 4533 content synchronization, without I/O: the
//! entries by entryUUID, the newest cookie, and the rules of the refresh
//! stage (an entry that a present phase did not mention is gone; a delete
//! phase names what is gone).

use super::entry::Entry;
use ldap3::controls::{EntryState, SyncInfo};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// An entry's 16-byte entryUUID.
pub type Uuid = Vec<u8>;

/// What the consumer knows: the matching entries and the cookie that
/// describes them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Replica {
    /// The entries, by entryUUID.
    pub entries: BTreeMap<Uuid, Entry>,
    /// The newest cookie (RFC 4533 §3.4.2: the last one received).
    pub cookie: Option<Vec<u8>>,
    /// UUIDs added, changed or reported present in the current refresh
    /// phase.
    seen: HashSet<Uuid>,
    /// Whether the refresh stage is still running.
    refreshing: bool,
    /// What the current (or last) refresh stage carried.
    pub stats: RefreshStats,
}

/// What one refresh stage carried: with a usable cookie, only the changes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RefreshStats {
    /// Entries sent whole (added or changed).
    pub sent: usize,
    /// Entries reported present (unchanged, or listed in a present
    /// phase).
    pub present: usize,
    /// Entries removed.
    pub deleted: usize,
}

/// A replica as stored between runs: only valid for the same search.
#[derive(Serialize, Deserialize)]
struct Stored {
    search: String,
    cookie: Vec<u8>,
    entries: Vec<(Uuid, Entry)>,
}

impl Replica {
    /// A new search begins. Without a cookie the server sends the whole
    /// content and may end with a delete phase, which keeps unlisted
    /// entries: so the local entries are dropped first.
    pub fn begin(&mut self) {
        if self.cookie.is_none() {
            self.entries.clear();
        }
        self.seen.clear();
        self.refreshing = true;
        self.stats = RefreshStats::default();
    }

    /// The replica stored by [`Replica::store`] for the same `search`
    /// (empty if it was for another search, or unreadable).
    pub fn restore(search: &str, bytes: &[u8]) -> Replica {
        match serde_json::from_slice::<Stored>(bytes) {
            Ok(stored) if stored.search == search => Replica {
                entries: stored.entries.into_iter().collect(),
                cookie: Some(stored.cookie),
                ..Replica::default()
            },
            _ => Replica::default(),
        }
    }

    /// The complete replica with its cookie, for `search`; `None` while a
    /// refresh is running or without a cookie (nothing to resume from).
    pub fn store(&self, search: &str) -> Option<Vec<u8>> {
        let cookie = self.cookie.clone().filter(|_| !self.refreshing)?;
        let entries = self.entries.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        serde_json::to_vec(&Stored { search: search.to_owned(), cookie, entries }).ok()
    }

    /// Forgets the cookie (stale or foreign), for a full refresh.
    pub fn forget_cookie(&mut self) {
        self.cookie = None;
    }

    /// Whether the refresh stage is over (the entries are complete).
    pub fn refreshed(&self) -> bool {
        !self.refreshing
    }

    /// An entry with its Sync State control; `row` is its decoded content
    /// (`None` for present and delete markers, which carry no attributes).
    pub fn entry(&mut self, state: EntryState, uuid: Uuid, entry: Option<Entry>, cookie: Option<Vec<u8>>) {
        match (state, entry) {
            (EntryState::Delete, _) => {
                self.stats.deleted += usize::from(self.entries.remove(&uuid).is_some());
            }
            (EntryState::Add | EntryState::Modify, Some(entry)) => {
                self.entries.insert(uuid.clone(), entry);
                self.seen.insert(uuid);
                self.stats.sent += 1;
            }
            (_, _) => {
                self.seen.insert(uuid);
                self.stats.present += 1;
            }
        }
        self.take_cookie(cookie);
    }

    /// A Sync Info message.
    pub fn info(&mut self, info: SyncInfo) {
        match info {
            SyncInfo::NewCookie(cookie) => self.take_cookie(Some(cookie)),
            SyncInfo::RefreshPresent { cookie, refresh_done } => {
                // End of a present phase: what was not mentioned is gone.
                let seen = std::mem::take(&mut self.seen);
                let before = self.entries.len();
                self.entries.retain(|uuid, _| seen.contains(uuid));
                self.stats.deleted += before - self.entries.len();
                self.end_phase(cookie, refresh_done);
            }
            SyncInfo::RefreshDelete { cookie, refresh_done } => {
                self.seen.clear();
                self.end_phase(cookie, refresh_done);
            }
            SyncInfo::SyncIdSet { cookie, refresh_deletes: true, sync_uuids } => {
                let before = self.entries.len();
                self.entries.retain(|uuid, _| !sync_uuids.contains(uuid));
                self.stats.deleted += before - self.entries.len();
                self.take_cookie(cookie);
            }
            SyncInfo::SyncIdSet { cookie, refresh_deletes: false, sync_uuids } => {
                self.stats.present += sync_uuids.len();
                self.seen.extend(sync_uuids);
                self.take_cookie(cookie);
            }
        }
    }

    /// The Sync Done control of a search that ended (refreshOnly, or a
    /// persist stage the server closed): with `refresh_deletes` false it
    /// closes a present phase.
    pub fn done(&mut self, cookie: Option<Vec<u8>>, refresh_deletes: bool) {
        if self.refreshing {
            let info = match refresh_deletes {
                true => SyncInfo::RefreshDelete { cookie, refresh_done: true },
                false => SyncInfo::RefreshPresent { cookie, refresh_done: true },
            };
            self.info(info);
        } else {
            self.take_cookie(cookie);
        }
    }

    fn end_phase(&mut self, cookie: Option<Vec<u8>>, refresh_done: bool) {
        self.take_cookie(cookie);
        if refresh_done {
            self.refreshing = false;
        }
    }

    fn take_cookie(&mut self, cookie: Option<Vec<u8>>) {
        if cookie.is_some() {
            self.cookie = cookie;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str) -> Entry {
        let attrs = [("cn".to_owned(), vec![name.to_owned()])].into();
        Entry { dn: format!("entry cn={name}"), attrs, binary: Default::default() }
    }

    fn id(n: u8) -> Uuid {
        vec![n; 16]
    }

    fn names(r: &Replica) -> Vec<String> {
        let mut dns: Vec<String> = r.entries.values().map(|e| e.dn.clone()).collect();
        dns.sort();
        dns
    }

    fn cookie(c: &str) -> Option<Vec<u8>> {
        Some(c.as_bytes().to_vec())
    }

    /// A replica after an initial content of entries `1..=n` (cookie c1).
    fn synced(n: u8) -> Replica {
        let mut r = Replica::default();
        r.begin();
        for i in 1..=n {
            r.entry(EntryState::Add, id(i), Some(row(&i.to_string())), None);
        }
        r.info(SyncInfo::RefreshDelete { cookie: cookie("c1"), refresh_done: true });
        r
    }

    #[test]
    fn initial_content_then_persist() {
        let mut r = Replica::default();
        r.begin();
        r.entry(EntryState::Add, id(1), Some(row("a")), None);
        r.entry(EntryState::Add, id(2), Some(row("b")), None);
        assert!(!r.refreshed());
        r.info(SyncInfo::RefreshDelete { cookie: cookie("c1"), refresh_done: true });
        assert!(r.refreshed());
        assert_eq!(names(&r), ["entry cn=a", "entry cn=b"]);
        r.entry(EntryState::Modify, id(1), Some(row("a2")), cookie("c2"));
        r.entry(EntryState::Delete, id(2), None, cookie("c3"));
        r.entry(EntryState::Add, id(3), Some(row("c")), None);
        r.info(SyncInfo::NewCookie(b"c4".to_vec()));
        assert_eq!(names(&r), ["entry cn=a2", "entry cn=c"]);
        assert_eq!(r.cookie, cookie("c4"));
    }

    #[test]
    fn present_phase_removes_what_it_did_not_mention() {
        let mut r = synced(4);
        // Resume: 1 changed, 2 present, 3 in an id set, 4 gone, 5 new.
        r.begin();
        assert_eq!(r.entries.len(), 4, "a resume keeps the entries");
        r.entry(EntryState::Modify, id(1), Some(row("1b")), None);
        r.entry(EntryState::Present, id(2), None, None);
        r.info(SyncInfo::SyncIdSet { cookie: None, refresh_deletes: false, sync_uuids: HashSet::from([id(3)]) });
        r.entry(EntryState::Add, id(5), Some(row("5")), None);
        assert_eq!(r.entries.len(), 5, "nothing is removed before the phase ends");
        r.info(SyncInfo::RefreshPresent { cookie: cookie("c2"), refresh_done: true });
        assert_eq!(names(&r), ["entry cn=1b", "entry cn=2", "entry cn=3", "entry cn=5"]);
        assert_eq!(r.cookie, cookie("c2"));
    }

    #[test]
    fn delete_phase_and_id_set_deletes_keep_the_rest() {
        let mut r = synced(3);
        r.begin();
        r.info(SyncInfo::SyncIdSet { cookie: None, refresh_deletes: true, sync_uuids: HashSet::from([id(1)]) });
        r.info(SyncInfo::RefreshDelete { cookie: None, refresh_done: true });
        assert_eq!(names(&r), ["entry cn=2", "entry cn=3"]);
        assert_eq!(r.cookie, cookie("c1"), "no newer cookie: the last one stays");
    }

    #[test]
    fn no_cookie_means_start_from_nothing() {
        let mut r = Replica::default();
        r.begin();
        r.entry(EntryState::Add, id(1), Some(row("old")), None);
        r.info(SyncInfo::RefreshDelete { cookie: cookie("c1"), refresh_done: true });
        r.forget_cookie();
        r.begin();
        assert!(r.entries.is_empty());
        r.entry(EntryState::Add, id(2), Some(row("new")), None);
        r.info(SyncInfo::RefreshDelete { cookie: cookie("c9"), refresh_done: true });
        assert_eq!(names(&r), ["entry cn=new"]);
    }

    #[test]
    fn a_present_phase_may_be_followed_by_a_delete_phase() {
        let mut r = synced(3);
        r.begin();
        r.entry(EntryState::Present, id(1), None, None);
        r.entry(EntryState::Present, id(2), None, None);
        r.info(SyncInfo::RefreshPresent { cookie: None, refresh_done: false });
        assert!(!r.refreshed());
        r.entry(EntryState::Delete, id(2), None, None);
        r.done(cookie("c2"), true);
        assert!(r.refreshed());
        assert_eq!(names(&r), ["entry cn=1"]);
    }

    #[test]
    fn stored_for_the_same_search_only_and_only_when_complete() {
        let mut r = Replica::default();
        r.begin();
        r.entry(EntryState::Add, id(1), Some(row("a")), None);
        assert_eq!(r.store("s"), None, "not while refreshing");
        r.info(SyncInfo::RefreshDelete { cookie: cookie("c1"), refresh_done: true });
        assert_eq!(r.stats, RefreshStats { sent: 1, present: 0, deleted: 0 });
        let bytes = r.store("s").unwrap();
        let back = Replica::restore("s", &bytes);
        assert_eq!((back.entries.clone(), back.cookie.clone()), (r.entries.clone(), cookie("c1")));
        assert_eq!(Replica::restore("other search", &bytes), Replica::default());
        assert_eq!(Replica::restore("s", b"garbage"), Replica::default());
    }
}
