//! The sled-backed state store of emperor.
//!
//! It keeps, per state directory: an emperor id generated once, the next
//! generation number, one [`VassalRecord`] per managed vassal, the last
//! complete snapshot of each source, a cursor per source that has one
//! ([`Cursors`]) and the last events the emperor published ([`Events`]).
//! Writes are buffered by sled and made durable by [`Store::flush`];
//! [`Store::flush_if_written`] skips the sync when no handle wrote anything
//! since the last one. A [`Store`] is a cheap handle:
//! clones share the same database.
#![forbid(unsafe_code)]

mod cursors;
mod events;
mod integrity;
mod leases;
mod record;
mod room;
mod stopped;

pub use cursors::Cursors;
pub use events::{EventTail, Events};
pub use record::{Intent, Mode, VassalRecord};
pub use room::MIN_FREE;

use reconciler::{SourceId, VassalName, VassalSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The schema this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Why the state store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another emperor holds the state directory.
    #[error("state dir {0} is in use by another emperor")]
    Locked(PathBuf),
    /// The database cannot be opened or read.
    #[error("state dir {dir} is unreadable: {source}")]
    Open {
        /// The state directory.
        dir: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
    /// The state dir was written by an incompatible version.
    #[error("state dir {dir} has schema version {found}, this emperor reads {SCHEMA_VERSION}")]
    Schema {
        /// The state directory.
        dir: PathBuf,
        /// The version found.
        found: u32,
    },
    /// A read or write failed.
    #[error("state store: {0}")]
    Io(#[from] sled::Error),
    /// The database opened, but what it holds is damaged (see the
    /// `integrity` module).
    #[error("state store {path} is damaged: {reason}")]
    Damaged {
        /// The database directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The state dir's filesystem is (nearly) full: nothing was written.
    #[error("state dir {dir} is full: {free} bytes free, {MIN_FREE} needed to write")]
    Full {
        /// The state directory.
        dir: PathBuf,
        /// The bytes free.
        free: u64,
    },
    /// A record could not be decoded.
    #[error("state store: corrupt record {key}: {message}")]
    Corrupt {
        /// The key of the record.
        key: String,
        /// What was wrong.
        message: String,
    },
}

/// A source's last complete desired set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSnapshot {
    /// Whether the source had finished a full listing.
    pub complete: bool,
    /// The vassals it wanted.
    pub specs: Vec<VassalSpec>,
}

/// The open state store of one state directory; clones are handles on the
/// same database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    meta: sled::Tree,
    vassals: sled::Tree,
    specs: sled::Tree,
    sources: sled::Tree,
    cursors: sled::Tree,
    /// Vassals an operator stopped (see [`Store::set_stopped`]).
    stopped: sled::Tree,
    /// The last events, by sequence number (see [`Events`]).
    events: sled::Tree,
    /// The singletons' fencing tokens (see [`Store::set_lease_token`]).
    leases: sled::Tree,
    emperor_id: Arc<str>,
    /// The flush count that tells a damaged log (see the `integrity` module).
    seal: Arc<integrity::Seal>,
    /// Whether any handle wrote since the last flush.
    written: Arc<AtomicBool>,
    /// Free space, checked before each write.
    room: room::Room,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join("state.sled");
        let db = sled::Config::new()
            .path(&path)
            .mode(sled::Mode::LowSpace)
            // What the emperor keeps of the store in memory: records and
            // snapshots are read back only on a restart, and a write needs
            // only the pages it touches (8 MiB held ~8 MiB at 10 000 vassals).
            .cache_capacity(2 << 20)
            // Flushed explicitly once per reconcile round; no background wake-ups.
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StateError::Locked(dir.to_owned())
                }
                sled::Error::Io(ref io) if io.to_string().contains("lock") => StateError::Locked(dir.to_owned()),
                other => StateError::Open { dir: dir.to_owned(), source: other },
            })?;
        let meta = db.open_tree("meta")?;
        let found = match meta.get("schema")? {
            Some(v) => decode::<u32>("schema", &v)?,
            None => {
                meta.insert("schema", encode(&SCHEMA_VERSION))?;
                SCHEMA_VERSION
            }
        };
        if found != SCHEMA_VERSION {
            return Err(StateError::Schema { dir: dir.to_owned(), found });
        }
        let seal = integrity::Seal::check(dir, &meta)?;
        let emperor_id = emperor_id(dir, &meta)?;
        let store = Self {
            vassals: db.open_tree("vassals")?,
            specs: db.open_tree("specs")?,
            sources: db.open_tree("sources")?,
            cursors: db.open_tree("cursors")?,
            stopped: db.open_tree("stopped")?,
            events: db.open_tree("events")?,
            leases: db.open_tree("leases")?,
            meta,
            db,
            emperor_id: emperor_id.into(),
            seal: Arc::new(seal),
            written: Arc::default(),
            room: room::Room::new(dir),
        };
        store.verify(dir)?;
        store.flush()?;
        Ok(store)
    }

    /// Moves an unusable store aside (`state.sled.broken-<unix time>`) so a
    /// fresh one can be created; the emperor id file stays, so running
    /// vassals are still recognised. Returns where it went.
    pub fn move_aside(dir: &Path) -> std::io::Result<PathBuf> {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let aside = dir.join(format!("state.sled.broken-{secs}"));
        std::fs::rename(dir.join("state.sled"), &aside)?;
        // The seal file counted the flushes of the store moved aside.
        match std::fs::remove_file(integrity::Seal::file_of(dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(aside)
    }

    /// The id generated once for this state directory.
    pub fn emperor_id(&self) -> &str {
        &self.emperor_id
    }

    /// The next unused generation number (1 for a new store).
    pub fn next_generation(&self) -> Result<u64, StateError> {
        match self.meta.get("next_generation")? {
            Some(v) => decode("next_generation", &v),
            None => Ok(1),
        }
    }

    /// Records the next unused generation number.
    pub fn set_next_generation(&self, next: u64) -> Result<(), StateError> {
        self.room.check()?;
        self.meta.insert("next_generation", encode(&next))?;
        self.wrote();
        Ok(())
    }

    /// Writes (or replaces) a vassal's record.
    pub fn put_vassal(&self, record: &VassalRecord) -> Result<(), StateError> {
        self.room.check()?;
        self.vassals.insert(record.name.as_str(), encode(record))?;
        self.wrote();
        Ok(())
    }

    /// A vassal's record.
    pub fn vassal(&self, name: &VassalName) -> Result<Option<VassalRecord>, StateError> {
        self.vassals.get(name.as_str())?.map(|v| decode(name.as_str(), &v)).transpose()
    }

    /// Deletes a vassal's record.
    pub fn remove_vassal(&self, name: &VassalName) -> Result<(), StateError> {
        self.room.check()?;
        self.vassals.remove(name.as_str())?;
        self.wrote();
        Ok(())
    }

    /// Every vassal record.
    pub fn vassals(&self) -> Result<Vec<VassalRecord>, StateError> {
        self.vassals
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(&String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }

    /// Records one vassal a source wants (message sources, single-file changes).
    pub fn put_spec(&self, spec: &VassalSpec) -> Result<(), StateError> {
        self.room.check()?;
        self.specs.insert(spec_key(&spec.source, &spec.name), encode(spec))?;
        self.mark_known(&spec.source, true)
    }

    /// Forgets one vassal a source wanted.
    pub fn remove_spec(&self, source: &SourceId, name: &VassalName) -> Result<(), StateError> {
        self.room.check()?;
        self.specs.remove(spec_key(source, name))?;
        self.mark_known(source, true)
    }

    /// Replaces everything a source wants, atomically.
    pub fn replace_specs(&self, source: &SourceId, specs: &[VassalSpec], complete: bool) -> Result<(), StateError> {
        self.room.check()?;
        let mut batch = sled::Batch::default();
        for key in self.specs.scan_prefix(source_prefix(source)).keys() {
            batch.remove(key?);
        }
        for spec in specs {
            batch.insert(spec_key(source, &spec.name), encode(spec));
        }
        self.specs.apply_batch(batch)?;
        self.mark_known(source, complete)
    }

    /// The last desired set recorded for a source; `None` if it never reported.
    pub fn snapshot(&self, source: &SourceId) -> Result<Option<SourceSnapshot>, StateError> {
        let Some(flag) = self.sources.get(source.0.as_str())? else { return Ok(None) };
        let complete = decode::<bool>(&source.0, &flag)?;
        let specs = self
            .specs
            .scan_prefix(source_prefix(source))
            .values()
            .map(|v| decode::<VassalSpec>(&source.0, &v?))
            .collect::<Result<_, _>>()?;
        Ok(Some(SourceSnapshot { complete, specs }))
    }

    fn mark_known(&self, source: &SourceId, complete: bool) -> Result<(), StateError> {
        self.sources.insert(source.0.as_str(), encode(&complete))?;
        self.wrote();
        Ok(())
    }

    /// Notes that the database holds writes not yet flushed.
    fn wrote(&self) {
        self.written.store(true, Ordering::Release);
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), StateError> {
        self.written.store(false, Ordering::Release);
        let flushed = self.seal.stage(&self.meta).and_then(|next| Ok((next, self.db.flush()?)));
        match flushed {
            Ok((next, _)) => {
                self.seal.sealed(next);
                Ok(())
            }
            Err(e) => {
                self.wrote();
                Err(e)
            }
        }
    }

    /// Makes every write so far durable, if any handle wrote since the last
    /// flush; returns whether it flushed.
    pub fn flush_if_written(&self) -> Result<bool, StateError> {
        if !self.written.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.flush().map(|()| true)
    }
}

/// The emperor id of `dir`: kept in the file `emperor-id` (so that it
/// survives a reset of the database) and mirrored in the database.
fn emperor_id(dir: &Path, meta: &sled::Tree) -> Result<String, StateError> {
    let file = dir.join("emperor-id");
    let id = match std::fs::read_to_string(&file) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
        _ => match meta.get("emperor_id")? {
            Some(v) => decode::<String>("emperor_id", &v)?,
            None => new_id(),
        },
    };
    meta.insert("emperor_id", encode(&id))?;
    std::fs::write(&file, format!("{id}\n")).map_err(|e| StateError::Io(sled::Error::Io(e)))?;
    Ok(id)
}

/// Keys of the specs tree: the source id, a NUL, the vassal name.
fn spec_key(source: &SourceId, name: &VassalName) -> Vec<u8> {
    let mut key = source_prefix(source);
    key.extend_from_slice(name.as_str().as_bytes());
    key
}

fn source_prefix(source: &SourceId) -> Vec<u8> {
    let mut key = source.0.as_bytes().to_vec();
    key.push(0);
    key
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("state records always serialize")
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt { key: key.to_owned(), message: e.to_string() })
}

/// A random 128-bit id in hex, from the kernel's random source.
fn new_id() -> String {
    let mut buf = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf));
    if read.is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        buf[..16].copy_from_slice(&(t.as_nanos() ^ u128::from(std::process::id())).to_le_bytes());
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
