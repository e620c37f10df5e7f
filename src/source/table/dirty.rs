//! The rows a burst of change signals touched: a small set of names, or
//! "everything" once the set would grow past [`MAX_NAMES`] (or a signal did
//! not say which row changed). A few names are re-read alone; everything
//! means the whole query again.

use std::collections::BTreeSet;

/// Above this many names, re-reading the whole query is cheaper than
/// looking the rows up one by one (and the set stays small).
pub const MAX_NAMES: usize = 64;

/// What changed since the last fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dirty {
    names: BTreeSet<String>,
    full: bool,
}

impl Dirty {
    /// Everything may have changed: run the whole query.
    pub fn full() -> Self {
        Self { names: BTreeSet::new(), full: true }
    }

    /// Marks the row `name` as changed (everything, past [`MAX_NAMES`]).
    pub fn add(&mut self, name: String) {
        if self.full {
            return;
        }
        self.names.insert(name);
        if self.names.len() > MAX_NAMES {
            self.mark_full();
        }
    }

    /// Everything may have changed (the names no longer matter).
    pub fn mark_full(&mut self) {
        self.full = true;
        self.names.clear();
    }

    /// Adds what `other` marked.
    pub fn merge(&mut self, other: Dirty) {
        if other.full {
            self.mark_full();
        }
        for name in other.names {
            self.add(name);
        }
    }

    /// Whether the whole query must run again.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Whether nothing is marked.
    pub fn is_empty(&self) -> bool {
        !self.full && self.names.is_empty()
    }

    /// The changed rows' names (empty when everything changed).
    pub fn names(&self) -> &BTreeSet<String> {
        &self.names
    }

    /// What is marked, leaving nothing marked.
    pub fn take(&mut self) -> Dirty {
        std::mem::take(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_coalesce_until_the_set_overflows() {
        let mut dirty = Dirty::default();
        assert!(dirty.is_empty());
        dirty.add("a.ini".into());
        dirty.add("a.ini".into());
        assert_eq!(dirty.names().len(), 1);
        for i in 0..MAX_NAMES {
            dirty.add(format!("{i}.ini"));
        }
        assert!(dirty.is_full() && dirty.names().is_empty(), "{} names is too many", MAX_NAMES + 1);
        dirty.add("b.ini".into());
        assert!(dirty.names().is_empty());
        assert_eq!(dirty.take(), Dirty::full());
        assert!(dirty.is_empty());
    }

    #[test]
    fn a_full_refresh_absorbs_names() {
        let mut dirty = Dirty::default();
        dirty.add("a.ini".into());
        let mut other = Dirty::default();
        other.add("b.ini".into());
        dirty.merge(other);
        assert_eq!(dirty.names().iter().map(String::as_str).collect::<Vec<_>>(), ["a.ini", "b.ini"]);
        dirty.merge(Dirty::full());
        assert_eq!(dirty, Dirty::full());
    }
}
