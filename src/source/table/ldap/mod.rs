//! `ldap[s]://HOST[:PORT]/BASEDN[?ATTRIBUTES[?SCOPE[?FILTER[?EXTENSIONS]]]]`
//! (RFC 4516): every entry the search matches is a vassal (see [`uri`] for
//! the defaults and extensions, [`entry`] for how an entry becomes a row).
//!
//! On a server that offers RFC 4533 content synchronization (OpenLDAP
//! syncprov, 389-DS, …; checked in the root DSE) the source runs one
//! refreshAndPersist search: the refresh stage gives the complete set, then
//! every add / modify / delete arrives as it happens, deletes keyed by
//! entryUUID. After a lost connection it resumes with the last sync cookie,
//! so the server sends only what changed; a stale or foreign cookie
//! (result 4096 or 53) means a full refresh, never a mass stop. Other
//! servers are searched every `x-interval` seconds; a search that failed or
//! hit a size or time limit never removes a vassal.

mod entry;
mod sync;
mod uri;

use crate::source::table::rows::Row;
use crate::source::table::{self, Backend, Change, Failure};
use crate::source::{Built, Source, SourceContext, SourceError, SourceTask};
use entry::Entry;
use ldap3::controls::{ControlType, EntryState, MakeCritical, RefreshMode, SyncDone, SyncRequest, SyncState};
use ldap3::exop::WhoAmI;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, ResultEntry, Scope, SearchEntry, SearchStream};
use reconciler::SourceId;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use sync::Replica;
use uri::{LdapUri, Transport};

/// The RFC 4533 content synchronization control.
const SYNC_CONTROL: &str = "1.3.6.1.4.1.4203.1.9.1.1";
/// The environment variable holding the bind password (when no
/// `x-password-file` is given).
pub const PASSWORD_ENV: &str = "EMPEROR_LDAP_PASSWORD";
/// e-syncRefreshRequired (RFC 4533 §3.8).
const REFRESH_REQUIRED: u32 = 4096;
/// unwillingToPerform: syncprov's answer to a cookie it cannot use.
const UNWILLING: u32 = 53;
/// How long the server may take to answer the liveness check of a quiet
/// sync search.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// An LDAP search whose entries are vassals.
pub struct LdapSource {
    uri: LdapUri,
}

/// The running source: the search and what syncrepl has told so far (kept
/// across connections, for resuming).
pub struct Directory {
    uri: LdapUri,
    id: SourceId,
    replica: Mutex<Replica>,
    /// Where the replica is kept between runs (none in unit tests).
    cursors: Option<state::Cursors>,
}

impl LdapSource {
    /// Builds the source from the part after `ldap://`.
    pub fn from_uri(rest: &str) -> Result<Box<dyn Source>, SourceError> {
        Self::parse(rest, false)
    }

    /// Builds the source from the part after `ldaps://`.
    pub fn from_ldaps_uri(rest: &str) -> Result<Box<dyn Source>, SourceError> {
        Self::parse(rest, true)
    }

    fn parse(rest: &str, ldaps: bool) -> Result<Box<dyn Source>, SourceError> {
        let scheme = if ldaps { "ldaps" } else { "ldap" };
        let invalid = |message: String| SourceError::Invalid { uri: format!("{scheme}://{}", masked(rest)), message };
        let uri = LdapUri::parse(rest, ldaps).map_err(invalid)?;
        if uri.bind_dn.is_some() && uri.password_file.is_none() && std::env::var_os(PASSWORD_ENV).is_none() {
            return Err(invalid(format!("bindname needs a password: x-password-file=PATH or ${PASSWORD_ENV}")));
        }
        Ok(Box::new(LdapSource { uri }))
    }
}

impl Directory {
    /// The running source of `uri`, resuming from the replica kept in
    /// `cursors` when there is one for the same search.
    fn new(uri: LdapUri, cursors: Option<state::Cursors>) -> Directory {
        let id = SourceId(uri.id.clone());
        let stored = cursors.as_ref().and_then(|c| match c.get(&id) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(source = %id, error = %e, "cannot read the stored sync state; refreshing everything");
                None
            }
        });
        let replica = stored.map(|bytes| Replica::restore(&uri.search_key(), &bytes)).unwrap_or_default();
        if let Some(cookie) = &replica.cookie {
            tracing::info!(source = %id, entries = replica.entries.len(), cookie = %String::from_utf8_lossy(cookie),
                "resuming from the stored sync state");
        }
        Directory { uri, id, replica: Mutex::new(replica), cursors }
    }

    /// Stores a complete replica whose cookie moved since it was last
    /// stored, so that a restarted emperor asks only for what changed.
    fn keep(&self, replica: &Replica) {
        let Some(cursors) = &self.cursors else { return };
        let Some(bytes) = replica.store(&self.uri.search_key()) else { return };
        if cursors.get(&self.id).ok().flatten().as_deref() == Some(&bytes[..]) {
            return;
        }
        if let Err(e) = cursors.put(&self.id, &bytes) {
            tracing::warn!(source = %self.id, error = %e, "cannot store the sync state");
        }
    }

    fn replica(&self) -> MutexGuard<'_, Replica> {
        self.replica.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bind password, read at every connect (so a rotated file is used).
    fn password(&self) -> Result<String, String> {
        match &self.uri.password_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|p| p.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| format!("cannot read the password file {}: {e}", path.display())),
            None => std::env::var(PASSWORD_ENV).map_err(|_| format!("${PASSWORD_ENV} is not set")),
        }
    }

    /// Starts the refreshAndPersist search, resuming from the last cookie.
    async fn start_sync(&self, ldap: &mut Ldap) -> Result<SearchStream<'static, String, Vec<String>>, String> {
        let cookie = {
            let mut replica = self.replica();
            replica.begin();
            replica.cookie.clone()
        };
        let request = SyncRequest { mode: RefreshMode::RefreshAndPersist, cookie, reload_hint: false }.critical();
        let u = &self.uri;
        ldap.with_controls(request)
            .streaming_search(&u.base, u.scope, &u.filter, u.requested())
            .await
            .map_err(|e| format!("the sync search failed: {e}"))
    }

    /// Applies one message of the sync search.
    fn apply(&self, message: ResultEntry) -> Result<(), String> {
        if message.is_ref() {
            return Ok(());
        }
        catch_unwind(AssertUnwindSafe(|| self.apply_unchecked(message)))
            .map_err(|_| "the server sent a malformed sync message".to_owned())
    }

    fn apply_unchecked(&self, message: ResultEntry) {
        if message.is_intermediate() {
            let info = ldap3::controls::parse_syncinfo(message);
            self.replica().info(info);
            return;
        }
        let state = message.1.iter().find(|c| matches!(c.0, Some(ControlType::SyncState)));
        let Some(state) = state.map(|c| c.1.parse::<SyncState>()) else { return };
        let row = match state.state {
            EntryState::Add | EntryState::Modify => Some(Entry::from(SearchEntry::construct(message))),
            EntryState::Present | EntryState::Delete => None,
        };
        self.replica().entry(state.state, state.entry_uuid, row, state.cookie);
    }

    /// Reads the sync search until its refresh stage is over; restarts it
    /// without a cookie when the server cannot resume from ours.
    async fn refresh(&self, conn: &mut SyncConn) -> Result<(), Failure> {
        for _attempt in 0..3 {
            let stream = match &mut conn.stream {
                Some(stream) => stream,
                None => conn.stream.insert(self.start_sync(&mut conn.ldap).await.map_err(Failure::Lost)?),
            };
            loop {
                if self.replica().refreshed() {
                    return Ok(());
                }
                match stream.next().await {
                    Ok(Some(message)) => self.apply(message).map_err(Failure::Lost)?,
                    Ok(None) => break,
                    Err(e) => return Err(Failure::Lost(e.to_string())),
                }
            }
            self.search_ended(conn).await?;
        }
        Err(Failure::Query("the server keeps refusing to synchronize".into()))
    }

    /// The sync search ended: a refusal of the cookie means a full refresh
    /// on the next search; anything else is a lost connection.
    async fn search_ended(&self, conn: &mut SyncConn) -> Result<(), Failure> {
        let Some(mut stream) = conn.stream.take() else { return Ok(()) };
        let result = stream.finish().await;
        let had_cookie = self.replica().cookie.is_some();
        match result.rc {
            REFRESH_REQUIRED | UNWILLING if had_cookie => {
                tracing::info!(source = %self.uri.id, rc = result.rc, text = %result.text,
                    "the server cannot resume from the sync cookie; refreshing everything");
                self.replica().forget_cookie();
                Ok(())
            }
            0 => {
                // A refreshOnly-style end: take its Sync Done control.
                let done = result.ctrls.iter().find(|c| matches!(c.0, Some(ControlType::SyncDone)));
                if let Some(done) = done.map(|c| c.1.parse::<SyncDone>()) {
                    self.replica().done(done.cookie, done.refresh_deletes);
                }
                Err(Failure::Lost("the server ended the sync search".into()))
            }
            _ => Err(Failure::Query(format!("the sync search failed: {result}"))),
        }
    }

    /// One plain search (servers without syncrepl): only a complete,
    /// successful result is returned.
    async fn search(&self, ldap: &mut Ldap) -> Result<Vec<Row>, Failure> {
        let u = &self.uri;
        let result = ldap.search(&u.base, u.scope, &u.filter, u.requested()).await.map_err(lost)?;
        if result.1.rc != 0 {
            return Err(Failure::Query(format!("the search failed ({}); nothing is removed", result.1)));
        }
        let entries = catch_unwind(AssertUnwindSafe(|| {
            result.0.into_iter().filter(|e| !e.is_ref()).map(SearchEntry::construct).collect::<Vec<_>>()
        }))
        .map_err(|_| Failure::Lost("the server sent a malformed entry".into()))?;
        Ok(rows(entries.into_iter().map(Entry::from), u))
    }
}

/// The URI with the values of password extensions and user info hidden
/// (they are refused, but must not be repeated in the error either).
fn masked(rest: &str) -> String {
    let rest = match rest.split_once('@') {
        Some((_, host)) if !rest[..rest.find('/').unwrap_or(rest.len())].is_empty() && !host.is_empty() => {
            format!("***@{host}")
        }
        _ => rest.to_owned(),
    };
    let mut out = String::with_capacity(rest.len());
    for (i, part) in rest.split(',').enumerate() {
        if i > 0 {
            out.push(',');
        }
        let lower = part.to_ascii_lowercase();
        let secret = ["x-bindpw=", "credentials=", "!x-bindpw=", "!credentials="]
            .iter()
            .find_map(|key| lower.rfind(key).map(|at| at + key.len()));
        match secret {
            Some(end) => {
                out.push_str(&part[..end]);
                out.push_str("***");
            }
            None => out.push_str(part),
        }
    }
    out
}

/// The rows of `entries`, in DN order (so that of two entries with the
/// same name the same one always wins).
fn rows(entries: impl Iterator<Item = Entry>, uri: &LdapUri) -> Vec<Row> {
    let mut rows: Vec<Row> = entries.map(|e| entry::decode(&e, uri)).collect();
    rows.sort_by(|a, b| a.position.cmp(&b.position));
    rows
}

/// A persist stage may stay silent for hours, and a connection that died
/// without a reset stays silent too: a quiet search is checked with a Who
/// Am I? operation (RFC 4532) on the same connection at every resync.
async fn probe(ldap: &mut Ldap) -> Result<(), Failure> {
    match ldap.with_timeout(PROBE_TIMEOUT).extended(WhoAmI).await {
        Ok(_) => Ok(()),
        Err(e) => Err(Failure::Lost(format!("the server did not answer a liveness check: {e}"))),
    }
}

fn lost(e: ldap3::LdapError) -> Failure {
    Failure::Lost(e.to_string())
}

impl Source for LdapSource {
    fn id(&self) -> SourceId {
        SourceId(self.uri.id.clone())
    }

    fn build(&self, ctx: SourceContext) -> Built<'_> {
        let directory = Directory::new(self.uri.clone(), ctx.cursors().cloned());
        Box::pin(async move { Ok(Box::pin(table::run(directory, ctx)) as SourceTask) })
    }
}

/// A syncrepl connection: the handle and the running search.
pub struct SyncConn {
    ldap: Ldap,
    stream: Option<SearchStream<'static, String, Vec<String>>>,
    /// Whether the search delivered something since the last fetch.
    heard: bool,
}

/// One connection.
pub enum Conn {
    /// The server offers syncrepl.
    Sync(Box<SyncConn>),
    /// It does not: search every `x-interval`.
    Poll(Ldap),
}

impl Backend for Directory {
    type Conn = Conn;
    const NAME: &'static str = "LDAP";

    /// Connects (TLS as asked), binds, and reads the root DSE to choose
    /// between syncrepl and polling; a sync search starts at once.
    async fn connect(&self) -> Result<Conn, String> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(table::QUERY_TIMEOUT)
            .set_starttls(self.uri.tls == Transport::StartTls);
        let (conn, mut ldap) =
            LdapConnAsync::with_settings(settings, &self.uri.server).await.map_err(|e| e.to_string())?;
        ldap3::drive!(conn);
        if let Some(dn) = &self.uri.bind_dn {
            let password = self.password()?;
            let bound = ldap.simple_bind(dn, &password).await.map_err(|e| e.to_string())?;
            bound.success().map_err(|e| format!("bind as {dn} failed: {e}"))?;
        }
        if !self.offers_sync(&mut ldap).await? {
            return Ok(Conn::Poll(ldap));
        }
        let stream = self.start_sync(&mut ldap).await?;
        Ok(Conn::Sync(Box::new(SyncConn { ldap, stream: Some(stream), heard: false })))
    }

    async fn fetch(&self, conn: &mut Conn) -> Result<Vec<Row>, Failure> {
        match conn {
            Conn::Sync(sync) => {
                let refreshing = !self.replica().refreshed();
                if !refreshing && !std::mem::take(&mut sync.heard) {
                    probe(&mut sync.ldap).await?;
                }
                self.refresh(sync).await?;
                let replica = self.replica();
                if refreshing {
                    let s = replica.stats;
                    tracing::info!(source = %self.id, entries = replica.entries.len(), sent = s.sent,
                        present = s.present, deleted = s.deleted, "sync refresh done");
                }
                self.keep(&replica);
                Ok(rows(replica.entries.values().cloned(), &self.uri))
            }
            Conn::Poll(ldap) => self.search(ldap).await,
        }
    }

    async fn changed(&self, conn: &mut Conn, wait: Duration) -> Change {
        let Conn::Sync(sync) = conn else {
            tokio::time::sleep(wait).await;
            return Change::Quiet;
        };
        let Some(stream) = sync.stream.as_mut() else {
            // The search failed: the next fetch starts another one, after
            // the wait the driver chose (its backoff).
            tokio::time::sleep(wait).await;
            return Change::Quiet;
        };
        tokio::select! {
            biased;
            message = stream.next() => match message {
                Ok(Some(message)) => match self.apply(message) {
                    Ok(()) => {
                        sync.heard = true;
                        Change::Changed
                    }
                    Err(e) => Change::Lost(e),
                },
                Ok(None) => match self.search_ended(sync).await {
                    Ok(()) => Change::Changed,
                    Err(Failure::Lost(e) | Failure::Query(e)) => Change::Lost(e),
                },
                Err(e) => Change::Lost(e.to_string()),
            },
            () = tokio::time::sleep(wait) => Change::Quiet,
        }
    }

    fn period(&self, conn: &Conn, resync: Duration) -> Duration {
        match conn {
            Conn::Sync(_) => resync,
            Conn::Poll(_) => self.uri.interval,
        }
    }
}

impl Directory {
    /// Whether the root DSE lists the content synchronization control.
    async fn offers_sync(&self, ldap: &mut Ldap) -> Result<bool, String> {
        let (entries, _) = ldap
            .search("", Scope::Base, "(objectClass=*)", vec!["supportedControl"])
            .await
            .and_then(|r| r.success())
            .map_err(|e| format!("reading the root DSE failed: {e}"))?;
        let controls = catch_unwind(AssertUnwindSafe(|| {
            entries
                .into_iter()
                .map(SearchEntry::construct)
                .flat_map(|e| e.attrs.into_values().flatten())
                .collect::<Vec<_>>()
        }))
        .map_err(|_| "the server sent a malformed root DSE".to_owned())?;
        let sync = controls.iter().any(|c| c == SYNC_CONTROL);
        if !sync {
            tracing::info!(source = %self.uri.id, interval = ?self.uri.interval,
                "the server does not offer syncrepl; searching periodically");
        }
        Ok(sync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_errors_hold_no_secret() {
        std::env::remove_var(PASSWORD_ENV);
        let id = LdapSource::from_uri("h/dc=x????bindname=cn=r,x-password-file=/run/pw").unwrap().id();
        assert_eq!(id.0, "ldap://h/dc=x????bindname=cn=r,x-password-file=/run/pw");
        for rest in ["h/dc=x????x-bindpw=hunter2", "h/dc=x????!credentials=hunter2,x-name=a", "me:hunter2@h/dc=x"] {
            let err = LdapSource::from_uri(rest).err().unwrap().to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = LdapSource::from_uri("h/dc=x????bindname=cn=r").err().unwrap().to_string();
        assert!(err.contains("needs a password"), "{err}");
    }
}
