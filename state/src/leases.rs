//! The fencing tokens of the singletons this emperor runs: written before
//! a singleton is started, so that a restarted emperor can renew the lease
//! under the same token and keep the process it finds still running.

use crate::{decode, encode, StateError, Store};
use reconciler::VassalName;

impl Store {
    /// Records the token `name` runs under (or that it runs under none),
    /// and makes it durable at once: the vassal is started only after this
    /// returns.
    pub fn set_lease_token(&self, name: &VassalName, token: Option<u64>) -> Result<(), StateError> {
        self.room.check()?;
        match token {
            Some(token) => self.leases.insert(name.as_str(), encode(&token))?,
            None => self.leases.remove(name.as_str())?,
        };
        self.flush()
    }

    /// Every singleton's recorded token.
    pub fn lease_tokens(&self) -> Result<Vec<(VassalName, u64)>, StateError> {
        self.leases
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let key = String::from_utf8_lossy(&k).into_owned();
                let name = decode(&key, &encode(&key))?;
                Ok((name, decode(&key, &v)?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use reconciler::VassalName;

    #[test]
    fn tokens_survive_a_reopen_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let name = VassalName::parse("a.ini").unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.set_lease_token(&name, Some(7)).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.lease_tokens().unwrap(), vec![(name.clone(), 7)]);
        store.set_lease_token(&name, None).unwrap();
        assert!(store.lease_tokens().unwrap().is_empty());
    }
}
