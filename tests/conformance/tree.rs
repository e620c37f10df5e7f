//! What the file-source drivers share: a directory of configs in a temp
//! dir, which can be moved away (an outage) and back.

use crate::common::{put, uwsgi_ini};
use std::fs;
use std::path::PathBuf;

/// `ROOT/<live>`, or `ROOT/away` while moved away.
pub struct Tree {
    _tmp: tempfile::TempDir,
    /// The temp dir (canonical).
    pub root: PathBuf,
    live: &'static str,
    away: bool,
    noops: usize,
}

impl Tree {
    /// A temp dir with an empty `live` directory in it.
    pub fn new(live: &'static str) -> Self {
        let tmp = tempfile::Builder::new().prefix("conformance-").tempdir().expect("tempdir");
        let root = tmp.path().canonicalize().expect("canonical tempdir");
        fs::create_dir(root.join(live)).expect("create the config dir");
        Tree { _tmp: tmp, root, live, away: false, noops: 0 }
    }

    /// Where the source looks.
    pub fn live(&self) -> PathBuf {
        self.root.join(self.live)
    }

    /// Where the configs are now (moved away or not).
    pub fn dir(&self) -> PathBuf {
        self.root.join(if self.away { "away" } else { self.live })
    }

    /// Writes config `base` (atomically) with a `tag` comment.
    pub fn put(&self, base: &str, tag: &str) {
        put(&self.dir().join(base), &uwsgi_ini(&format!("# {tag}")));
    }

    /// Deletes config `base`.
    pub fn delete(&self, base: &str) {
        fs::remove_file(self.dir().join(base)).expect("remove config");
    }

    /// Adds a file no source takes (outside the dir) and a directory
    /// inside it: the second makes the source list everything again.
    pub fn noop(&mut self) {
        self.noops += 1;
        fs::write(self.root.join(format!("notes-{}.ini", self.noops)), "x").expect("write notes");
        fs::create_dir(self.dir().join(format!("sub-{}", self.noops))).expect("mkdir");
    }

    /// Moves the directory away, as a redeploy would (unlike `rm -rf`,
    /// which deletes every config first).
    pub fn move_away(&mut self) {
        if !self.away {
            fs::rename(self.live(), self.root.join("away")).expect("move the directory away");
            self.away = true;
        }
    }

    /// Moves it back.
    pub fn move_back(&mut self) {
        fs::rename(self.root.join("away"), self.live()).expect("move the directory back");
        self.away = false;
    }
}

/// Implements [`crate::checks::Outage`] for a driver with a `tree` field:
/// the outage is the directory moved away.
macro_rules! tree_outage {
    ($driver:ty) => {
        impl $crate::checks::Outage for $driver {
            const NOTICE: &'static str = "cannot list the source yet";
            const RECOVERED: Option<&'static str> = None;
            const RECOVERY: std::time::Duration = $crate::common::DEADLINE;

            fn stop(&mut self) {
                self.tree.move_away();
            }

            fn cut_off(&mut self) -> bool {
                true
            }

            fn restart(&mut self) {
                self.tree.move_back();
            }
        }
    };
}
