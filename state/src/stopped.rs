//! The vassals an operator stopped: they stay stopped across source
//! resyncs and emperor restarts until an operator starts them again.

use crate::{decode, encode, StateError, Store};
use reconciler::VassalName;

impl Store {
    /// Records that an operator stopped `name` (or started it again), and
    /// makes it durable at once: the emperor acts only after this returns.
    pub fn set_stopped(&self, name: &VassalName, stopped: bool) -> Result<(), StateError> {
        self.room.check()?;
        if stopped {
            self.stopped.insert(name.as_str(), encode(name))?;
        } else {
            self.stopped.remove(name.as_str())?;
        }
        self.flush()
    }

    /// Every vassal an operator stopped.
    pub fn stopped(&self) -> Result<Vec<VassalName>, StateError> {
        self.stopped
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(&String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use reconciler::VassalName;

    #[test]
    fn stopped_names_survive_a_reopen_until_started() {
        let dir = tempfile::tempdir().unwrap();
        let name = VassalName::parse("a.ini").unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.set_stopped(&name, true).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.stopped().unwrap(), std::slice::from_ref(&name));
        store.set_stopped(&name, false).unwrap();
        assert!(store.stopped().unwrap().is_empty());
    }
}
