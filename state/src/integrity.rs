//! Telling a damaged store from a good one when it is opened.
//!
//! sled recovers a damaged log by cutting it at the first bad message: it
//! opens without complaint and silently forgets every write after it. Two
//! checks catch what it does not:
//!
//! * the seal: a count of durable flushes, kept both in the database and in
//!   the file `state.sled.seal` beside it (written after each flush). A
//!   database whose count is behind the file's lost writes it had made
//!   durable;
//! * every record is decoded (and each name validated) at open, so that a
//!   damaged record is a refusal then, not a surprise halfway through a
//!   recovery.

use crate::{decode, encode, StateError, Store, VassalRecord};
use reconciler::{VassalName, VassalSpec};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// The key of the flush count in the `meta` tree.
const SEAL_KEY: &str = "seal";

/// The flush count of one store; see the module docs.
#[derive(Debug)]
pub(crate) struct Seal {
    file: PathBuf,
    count: AtomicU64,
    /// The seal file, kept open: a flush rewrites it in place (a count of
    /// fixed width) instead of creating and truncating it each time.
    open: Mutex<Option<File>>,
}

impl Seal {
    /// The seal file of the store in `dir`.
    pub(crate) fn file_of(dir: &Path) -> PathBuf {
        dir.join("state.sled.seal")
    }

    /// Reads the count of the database in `dir` and refuses a database
    /// behind its seal file.
    pub(crate) fn check(dir: &Path, meta: &sled::Tree) -> Result<Self, StateError> {
        let file = Self::file_of(dir);
        let stored = match meta.get(SEAL_KEY)? {
            Some(v) => decode::<u64>(SEAL_KEY, &v)?,
            None => 0,
        };
        // An unreadable or torn seal file (a crash while writing it) proves nothing.
        let sealed = std::fs::read_to_string(&file).ok().and_then(|t| t.trim().parse::<u64>().ok());
        if let Some(sealed) = sealed.filter(|sealed| *sealed > stored) {
            let reason = format!(
                "it lost writes it had made durable (flush {stored} of {sealed} recorded in {}): its log is damaged",
                file.display()
            );
            return Err(StateError::Damaged { path: dir.join("state.sled"), reason });
        }
        Ok(Self { file, count: AtomicU64::new(stored), open: Mutex::new(None) })
    }

    /// Writes the next count into the database, before a flush; returns it.
    pub(crate) fn stage(&self, meta: &sled::Tree) -> Result<u64, StateError> {
        let next = self.count.load(Ordering::Acquire) + 1;
        meta.insert(SEAL_KEY, encode(&next))?;
        Ok(next)
    }

    /// Notes that the flush of count `next` is durable, in the seal file too.
    /// A seal file that cannot be written only weakens the check.
    pub(crate) fn sealed(&self, next: u64) {
        self.count.store(next, Ordering::Release);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.is_none() {
            *open = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(&self.file).ok();
        }
        // 20 digits hold any u64: every count covers the one before it.
        let written = open.as_ref().map(|file| file.write_all_at(format!("{next:020}\n").as_bytes(), 0));
        if !matches!(written, Some(Ok(()))) {
            *open = None;
        }
    }
}

impl Store {
    /// Decodes every record, so that a damaged one is refused at open.
    pub(crate) fn verify(&self, dir: &Path) -> Result<(), StateError> {
        let damaged = |e: StateError| StateError::Damaged { path: dir.join("state.sled"), reason: e.to_string() };
        self.verify_trees().map_err(damaged)
    }

    fn verify_trees(&self) -> Result<(), StateError> {
        decode_all::<VassalRecord>(&self.vassals)?;
        decode_all::<VassalSpec>(&self.specs)?;
        decode_all::<bool>(&self.sources)?;
        decode_all::<VassalName>(&self.stopped)?;
        for entry in self.cursors.iter() {
            entry?;
        }
        for key in ["next_generation", SEAL_KEY] {
            if let Some(v) = self.meta.get(key)? {
                decode::<u64>(key, &v)?;
            }
        }
        Ok(())
    }
}

/// Decodes every value of `tree` as a `T`.
fn decode_all<T: for<'de> serde::Deserialize<'de>>(tree: &sled::Tree) -> Result<(), StateError> {
    for entry in tree.iter() {
        let (key, value) = entry?;
        decode::<T>(&String::from_utf8_lossy(&key), &value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::tests::reopen;
    use crate::{Intent, Mode, StateError, Store, VassalRecord};
    use reconciler::{SourceId, VassalName};
    use std::io::{Seek, SeekFrom, Write};
    use std::path::Path;

    fn record(i: u64) -> VassalRecord {
        VassalRecord {
            name: VassalName::parse(&format!("v{i}.ini")).unwrap(),
            source: SourceId("dir:///x".into()),
            version: "v1".into(),
            generation: i,
            mode: Mode::Uwsgi,
            pid: Some(42),
            start_time: Some(1234),
            intent: Intent::Run,
        }
    }

    /// A store with twenty records, each made durable on its own, closed.
    fn written(dir: &Path) {
        let store = Store::open(dir).unwrap();
        for i in 0..20 {
            store.put_vassal(&record(i)).unwrap();
            store.flush().unwrap();
        }
    }

    #[test]
    fn a_log_damaged_in_the_middle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        written(dir.path());
        let db = dir.path().join("state.sled/db");
        let len = std::fs::metadata(&db).unwrap().len();
        let mut file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        file.seek(SeekFrom::Start(len / 3)).unwrap();
        file.write_all(&[0xAB; 64]).unwrap();
        drop(file);
        let err = reopen(dir.path()).err().expect("a damaged log must be refused");
        assert!(matches!(err, StateError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("state.sled"), "names the store: {err}");
    }

    #[test]
    fn an_intact_store_passes_and_a_reset_starts_a_new_seal() {
        let dir = tempfile::tempdir().unwrap();
        written(dir.path());
        assert_eq!(reopen(dir.path()).unwrap().vassals().unwrap().len(), 20);
        Store::move_aside(dir.path()).unwrap();
        assert!(reopen(dir.path()).unwrap().vassals().unwrap().is_empty());
    }

    #[test]
    fn a_garbage_record_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut bad = serde_json::to_value(record(1)).unwrap();
            bad["name"] = "../../etc/passwd.ini".into();
            store.vassals.insert("v1.ini", serde_json::to_vec(&bad).unwrap()).unwrap();
            store.flush().unwrap();
        }
        let err = reopen(dir.path()).err().expect("a record with a bad name must be refused");
        assert!(matches!(err, StateError::Damaged { .. }), "{err}");
    }
}
