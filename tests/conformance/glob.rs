//! `glob://` on a temp dir; vassals are named by their full path. No secret
//! (a pattern has none).

use crate::checks::{Bad, BadItems, Driver, Family};
use crate::tree::Tree;
use reconciler::SourceId;

/// `glob://ROOT/confs/*`.
pub struct Glob {
    tree: Tree,
}

impl Driver for Glob {
    const FAMILY: Family = Family::Snapshot;

    fn uri(&self) -> String {
        format!("glob://{}/*", self.tree.live().display())
    }

    fn name(&self, base: &str) -> String {
        self.tree.live().join(base).display().to_string()
    }

    fn put(&mut self, base: &str, tag: &str) {
        self.tree.put(base, tag);
    }

    fn delete(&mut self, base: &str) {
        self.tree.delete(base);
    }

    fn noop(&mut self) {
        self.tree.noop();
    }
}

impl BadItems for Glob {
    /// A matching file without a config extension.
    fn put_bad(&mut self) -> Bad {
        std::fs::write(self.tree.dir().join("notes.txt"), "x").expect("write notes.txt");
        Bad { items: 1, refused: "", warnings: vec![("notes.txt".into(), Some("not a vassal config"))] }
    }

    /// The warning names the file, not the source.
    fn scope(&self, _: &SourceId) -> String {
        self.tree.root.display().to_string()
    }
}

tree_outage!(Glob);

conformance!(Glob { tree: Tree::new("confs") } =>
    first_events, ends_within_a_second_of_shutdown, create_change_delete, unchanged_state_sends_nothing, outage_removes_nothing, bad_item_reported_once);
