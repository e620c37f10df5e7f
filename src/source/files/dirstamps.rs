//! The cheap half of the periodic safety net of file sources: the stamps of
//! the directories a listing read. A config appearing, disappearing or
//! being renamed changes its directory's mtime, so when no directory moved
//! since the last full listing the periodic check costs one `stat` per
//! directory, not one per config file.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Identity and last change of one directory, as a stat following links
/// sees it (a swapped symlink shows up as another inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirStamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl DirStamp {
    /// The stamp of `dir` now; `None` when it cannot be read as a directory.
    fn of(dir: &Path) -> Option<Self> {
        let m = std::fs::metadata(dir).ok().filter(std::fs::Metadata::is_dir)?;
        Some(Self {
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }
}

/// The directories behind the last full listing, with their stamps taken
/// just before it (a change made while it ran is seen by the next check).
#[derive(Debug, Default)]
pub struct DirStamps {
    dirs: BTreeMap<PathBuf, Option<DirStamp>>,
}

impl DirStamps {
    /// Stamps every directory in `dirs`, replacing the earlier set.
    pub fn take(dirs: BTreeSet<PathBuf>) -> Self {
        Self { dirs: dirs.into_iter().map(|d| (d.clone(), DirStamp::of(&d))).collect() }
    }

    /// The stamps of `dirs`: those taken here when they are known, else
    /// taken now (a directory new to this listing).
    pub fn restricted_to(mut self, dirs: BTreeSet<PathBuf>) -> Self {
        let dirs = dirs.into_iter().map(|d| match self.dirs.remove(&d) {
            Some(stamp) => (d, stamp),
            None => {
                let stamp = DirStamp::of(&d);
                (d, stamp)
            }
        });
        Self { dirs: dirs.collect() }
    }

    /// Whether any directory changed (or none was stamped yet): then only a
    /// full listing can tell what changed in it.
    pub fn changed(&self) -> bool {
        self.dirs.is_empty() || self.dirs.iter().any(|(dir, stamp)| DirStamp::of(dir) != *stamp)
    }
}

/// The directories a listing depends on: the roots, and every directory
/// between a root and a config file (with `glob://`, the directories the
/// pattern went through).
pub fn dirs_of<'a>(
    roots: impl IntoIterator<Item = PathBuf>,
    files: impl IntoIterator<Item = &'a Path>,
) -> BTreeSet<PathBuf> {
    let mut dirs: BTreeSet<PathBuf> = roots.into_iter().collect();
    let roots: Vec<PathBuf> = dirs.iter().cloned().collect();
    for file in files {
        for dir in file.ancestors().skip(1) {
            if !roots.iter().any(|root| dir.starts_with(root)) || !dirs.insert(dir.to_owned()) {
                break;
            }
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_added_removed_or_renamed_changes_the_stamp_an_edit_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let stamps = || DirStamps::take(dirs_of([root.clone()], []));
        let s = stamps();
        assert!(!s.changed());
        std::fs::write(root.join("a.ini"), "x").unwrap();
        assert!(s.changed(), "a new file");
        let s = stamps();
        std::fs::write(root.join("a.ini"), "edited in place").unwrap();
        assert!(!s.changed(), "an edit in place is for inotify to report");
        std::fs::rename(root.join("a.ini"), root.join("b.ini")).unwrap();
        assert!(s.changed(), "a rename");
        let s = stamps();
        std::fs::remove_file(root.join("b.ini")).unwrap();
        assert!(s.changed(), "a removal");
    }

    #[test]
    fn a_missing_directory_appearing_is_a_change_and_nothing_stamped_is_one_too() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("later");
        let s = DirStamps::take(dirs_of([root.clone()], []));
        assert!(!s.changed(), "still missing");
        std::fs::create_dir(&root).unwrap();
        assert!(s.changed());
        assert!(DirStamps::default().changed());
    }

    #[test]
    fn the_directories_of_a_listing_are_its_roots_and_the_parents_of_its_files() {
        let files = ["/o/a/uwsgi.ini", "/o/b/c/uwsgi.ini", "/o/a/x.ini", "/elsewhere/y.ini"].map(PathBuf::from);
        let dirs = dirs_of([PathBuf::from("/o")], files.iter().map(PathBuf::as_path));
        let want: BTreeSet<PathBuf> = ["/o", "/o/a", "/o/b", "/o/b/c"].into_iter().map(PathBuf::from).collect();
        assert_eq!(dirs, want);
    }
}
