//! `dir://` in a temp dir. No secret (a path has none) and no bad item
//! (a file is a config by its extension or is ignored by design; its
//! content is the vassal's business).

use crate::checks::{Driver, Family};
use crate::tree::Tree;

/// `dir://ROOT/vassals`.
pub struct Dir {
    tree: Tree,
}

impl Driver for Dir {
    const FAMILY: Family = Family::Snapshot;

    fn uri(&self) -> String {
        format!("dir://{}", self.tree.live().display())
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

tree_outage!(Dir);

conformance!(Dir { tree: Tree::new("vassals") } =>
    first_events, ends_within_a_second_of_shutdown, create_change_delete, unchanged_state_sends_nothing, outage_removes_nothing);
