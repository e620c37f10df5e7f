//! What dir:// and glob:// share: a set of config files with versions, kept
//! current by restating single files on inotify events and by full rescans.

use crate::source::util::hash::fnv1a;
use crate::source::util::path::file_meta;
use crate::source::util::path::FileMeta;
use crate::source::FileOwners;
use reconciler::{ConfigRef, SourceId, VassalName, VassalSpec};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Identity and content of one config file as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    /// Status change time: moves with every write and every mtime change,
    /// so an unchanged ctime means unchanged content.
    ctime_ns: i128,
    hash: u64,
    /// The content version (hash and mtime).
    version: String,
    /// The uid and gid the vassal runs as (tyrant mode): part of its version.
    owner: Option<(u32, u32)>,
}

impl Stamp {
    /// The version the reconciler sees: the content's, and the owner, whose
    /// change must restart the vassal under its new identity.
    fn full_version(&self) -> String {
        match self.owner {
            Some((uid, gid)) => format!("{}~{uid}:{gid}", self.version),
            None => self.version.clone(),
        }
    }
}

/// A change to the set, to be forwarded to the reconciler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A file appeared or got a new version.
    Upsert(VassalSpec),
    /// A file is gone (or is no longer a regular file).
    Remove(VassalName),
}

/// The config files one source currently offers.
#[derive(Debug)]
pub struct FileSet {
    source: SourceId,
    owners: FileOwners,
    files: BTreeMap<VassalName, (PathBuf, Stamp)>,
}

impl FileSet {
    /// An empty set for `source`, reporting owners as `owners` says.
    pub fn new(source: SourceId, owners: FileOwners) -> Self {
        Self { source, owners, files: BTreeMap::new() }
    }

    /// Every spec in the set.
    pub fn specs(&self) -> Vec<VassalSpec> {
        self.files.iter().map(|(name, (path, stamp))| self.spec(name, path, stamp)).collect()
    }

    /// The path of every config file in the set.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.values().map(|(path, _)| path.as_path())
    }

    /// The owner the vassal of `path` runs as; `Ok(None)` when owners are
    /// not reported, or the file (or link) is gone.
    fn owner(&self, path: &Path, meta: &FileMeta) -> std::io::Result<Option<(u32, u32)>> {
        match self.owners {
            FileOwners::Ignored => Ok(None),
            FileOwners::Target => Ok(Some((meta.uid, meta.gid))),
            FileOwners::Link => match std::fs::symlink_metadata(path) {
                Ok(link) => Ok(Some((link.uid(), link.gid()))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    /// Re-reads one file; returns the change it makes, if any.
    pub fn restat(&mut self, name: VassalName, path: PathBuf) -> Option<Change> {
        let meta = match file_meta(&path) {
            Ok(Some(meta)) => meta,
            Ok(None) => return self.files.remove(&name).map(|_| Change::Remove(name)),
            Err(e) => return self.unreadable(&name, &path, &e),
        };
        let owner = match self.owner(&path, &meta) {
            Ok(owner) => owner,
            Err(e) => return self.unreadable(&name, &path, &e),
        };
        let old = self.files.get(&name).filter(|(p, _)| *p == path).map(|(_, stamp)| stamp);
        if old.is_some_and(|o| {
            (o.dev, o.ino, o.mtime_ns, o.ctime_ns, o.owner) == (meta.dev, meta.ino, meta.mtime_ns, meta.ctime_ns, owner)
        }) {
            return None; // not touched since it was last read: skip reading it
        }
        let hash = match std::fs::read(&path) {
            Ok(bytes) => fnv1a(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.files.remove(&name).map(|_| Change::Remove(name))
            }
            Err(e) => return self.unreadable(&name, &path, &e),
        };
        let version = match self.files.get(&name) {
            Some((_, old))
                if old.hash == hash && (old.dev, old.ino, old.mtime_ns) == (meta.dev, meta.ino, meta.mtime_ns) =>
            {
                old.version.clone()
            }
            // Same content in a new file (an atomic rename, a new checkout): no reload.
            Some((_, old)) if old.hash == hash && (old.dev, old.ino) != (meta.dev, meta.ino) => old.version.clone(),
            _ => format!("{hash:016x}@{}", meta.mtime_ns),
        };
        let (dev, ino, mtime_ns, ctime_ns) = (meta.dev, meta.ino, meta.mtime_ns, meta.ctime_ns);
        let stamp = Stamp { dev, ino, mtime_ns, ctime_ns, hash, version, owner };
        let unchanged =
            self.files.get(&name).is_some_and(|(p, old)| old.full_version() == stamp.full_version() && *p == path);
        let spec = self.spec(&name, &path, &stamp);
        self.files.insert(name, (path, stamp));
        (!unchanged).then_some(Change::Upsert(spec))
    }

    fn unreadable(&self, name: &VassalName, path: &Path, e: &std::io::Error) -> Option<Change> {
        tracing::warn!(vassal = %name, path = %path.display(), error = %e, "cannot read config file; keeping the last version seen");
        None
    }

    /// Replaces the set by a fresh listing; returns the changes.
    pub fn rescan(&mut self, listing: Vec<(VassalName, PathBuf)>) -> Vec<Change> {
        let mut changes = Vec::new();
        let listed: std::collections::BTreeSet<&VassalName> = listing.iter().map(|(n, _)| n).collect();
        let gone: Vec<VassalName> = self.files.keys().filter(|n| !listed.contains(n)).cloned().collect();
        for name in gone {
            self.files.remove(&name);
            changes.push(Change::Remove(name));
        }
        for (name, path) in listing {
            changes.extend(self.restat(name, path));
        }
        changes
    }

    fn spec(&self, name: &VassalName, path: &Path, stamp: &Stamp) -> VassalSpec {
        VassalSpec {
            name: name.clone(),
            source: self.source.clone(),
            config: ConfigRef::File(path.to_owned()),
            version: stamp.full_version(),
            owner: stamp.owner,
            socket: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn name(s: &str) -> VassalName {
        VassalName::parse(s).unwrap()
    }

    fn set_mtime(path: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)).unwrap();
    }

    #[test]
    fn new_touched_changed_and_removed_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.ini");
        std::fs::write(&p, "[uwsgi]\n").unwrap();
        set_mtime(&p, 1_000);
        let mut set = FileSet::new(SourceId("dir://x".into()), FileOwners::Ignored);
        let Some(Change::Upsert(first)) = set.restat(name("a.ini"), p.clone()) else { panic!("new file") };
        assert_eq!(set.restat(name("a.ini"), p.clone()), None, "nothing changed");
        set_mtime(&p, 2_000);
        let Some(Change::Upsert(touched)) = set.restat(name("a.ini"), p.clone()) else { panic!("touch") };
        assert_ne!(first.version, touched.version);
        std::fs::write(&p, "[uwsgi]\nx=1\n").unwrap();
        set_mtime(&p, 2_000);
        let Some(Change::Upsert(edited)) = set.restat(name("a.ini"), p.clone()) else { panic!("same-mtime edit") };
        assert_ne!(edited.version, touched.version);
        std::fs::remove_file(&p).unwrap();
        assert_eq!(set.restat(name("a.ini"), p), Some(Change::Remove(name("a.ini"))));
    }

    #[test]
    fn identical_content_in_a_new_file_keeps_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.ini");
        std::fs::write(&p, "[uwsgi]\n").unwrap();
        let mut set = FileSet::new(SourceId("dir://x".into()), FileOwners::Ignored);
        set.restat(name("a.ini"), p.clone());
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, "[uwsgi]\n").unwrap();
        set_mtime(&tmp, 5);
        std::fs::rename(&tmp, &p).unwrap();
        assert_eq!(set.restat(name("a.ini"), p), None);
    }

    #[test]
    fn owners_are_reported_and_versioned_only_when_asked() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.ini");
        std::fs::write(&p, "[uwsgi]\n").unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        let mut plain = FileSet::new(SourceId("dir://x".into()), FileOwners::Ignored);
        let Some(Change::Upsert(spec)) = plain.restat(name("a.ini"), p.clone()) else { panic!("new file") };
        assert_eq!(spec.owner, None);
        let mut tyrant = FileSet::new(SourceId("dir://x".into()), FileOwners::Target);
        let Some(Change::Upsert(owned)) = tyrant.restat(name("a.ini"), p.clone()) else { panic!("new file") };
        assert_eq!(owned.owner, Some((meta.uid(), meta.gid())));
        assert_eq!(owned.version, format!("{}~{}:{}", spec.version, meta.uid(), meta.gid()));
        if crate::sys::user::is_root() {
            // A chown alone changes the owner, hence the version.
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
            let Some(Change::Upsert(chowned)) = tyrant.restat(name("a.ini"), p.clone()) else { panic!("chown") };
            assert_eq!(chowned.owner, Some((65534, 65534)));
            assert_eq!(plain.restat(name("a.ini"), p.clone()), None, "owners ignored: a chown changes nothing");
            // --tyrant-nofollow: the link's own owner, not its target's.
            let link = dir.path().join("b.ini");
            std::os::unix::fs::symlink(&p, &link).unwrap();
            let mut nofollow = FileSet::new(SourceId("dir://x".into()), FileOwners::Link);
            let Some(Change::Upsert(linked)) = nofollow.restat(name("b.ini"), link.clone()) else { panic!("link") };
            let own = std::fs::symlink_metadata(&link).unwrap();
            assert_eq!(linked.owner, Some((own.uid(), own.gid())));
            std::os::unix::fs::lchown(&link, Some(65534), Some(65533)).unwrap();
            let Some(Change::Upsert(relinked)) = nofollow.restat(name("b.ini"), link) else { panic!("lchown") };
            assert_eq!(relinked.owner, Some((65534, 65533)));
        }
    }

    #[test]
    fn rescan_reports_removals() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.ini");
        std::fs::write(&p, "x").unwrap();
        let mut set = FileSet::new(SourceId("dir://x".into()), FileOwners::Ignored);
        assert_eq!(set.rescan(vec![(name("a.ini"), p)]).len(), 1);
        assert_eq!(set.rescan(vec![]), vec![Change::Remove(name("a.ini"))]);
        assert!(set.specs().is_empty());
    }
}
