//! Tests of the store as a whole.

use super::*;

fn record(name: &str, generation: u64) -> VassalRecord {
    VassalRecord {
        name: VassalName::parse(name).unwrap(),
        source: SourceId("dir:///x".into()),
        version: "v1".into(),
        generation,
        mode: Mode::Uwsgi,
        pid: Some(42),
        start_time: Some(1234),
        intent: Intent::Run,
    }
}

#[test]
fn cursors_survive_reopen_per_source() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (SourceId("ldap://h/dc=a".into()), SourceId("ldap://h/dc=b".into()));
    {
        let store = Store::open(dir.path()).unwrap();
        let cursors = store.cursors();
        assert_eq!(cursors.get(&a).unwrap(), None);
        cursors.put(&a, b"one").unwrap();
        cursors.put(&a, b"two").unwrap();
        cursors.put(&b, b"other").unwrap();
        cursors.remove(&b).unwrap();
        store.flush().unwrap();
    }
    let cursors = reopen(dir.path()).unwrap().cursors();
    assert_eq!(cursors.get(&a).unwrap().as_deref(), Some(&b"two"[..]));
    assert_eq!(cursors.get(&b).unwrap(), None);
}

#[test]
fn records_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = Store::open(dir.path()).unwrap();
        store.put_vassal(&record("a.ini", 1)).unwrap();
        store.put_vassal(&record("b.ini", 2)).unwrap();
        store.remove_vassal(&VassalName::parse("a.ini").unwrap()).unwrap();
        store.set_next_generation(3).unwrap();
        store.flush().unwrap();
        store.emperor_id().to_owned()
    };
    let store = reopen(dir.path()).unwrap();
    assert_eq!(store.emperor_id(), id);
    assert_eq!(id.len(), 32);
    assert_eq!(store.vassals().unwrap(), vec![record("b.ini", 2)]);
    assert_eq!(store.next_generation().unwrap(), 3);
}

#[test]
fn clones_share_the_database_and_the_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let handle = store.clone();
    assert!(!store.flush_if_written().unwrap(), "nothing written since open");
    handle.put_vassal(&record("a.ini", 3)).unwrap();
    assert_eq!(store.vassal(&VassalName::parse("a.ini").unwrap()).unwrap().unwrap().generation, 3);
    assert!(store.flush_if_written().unwrap(), "a clone's write is flushed");
    assert!(!handle.flush_if_written().unwrap(), "and only once");
}

#[test]
fn a_reset_keeps_the_emperor_id() {
    let dir = tempfile::tempdir().unwrap();
    let id = Store::open(dir.path()).unwrap().emperor_id().to_owned();
    let aside = Store::move_aside(dir.path()).unwrap();
    assert!(aside.exists());
    assert_eq!(reopen(dir.path()).unwrap().emperor_id(), id);
}

#[test]
fn a_second_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    assert!(matches!(Store::open(dir.path()), Err(StateError::Locked(_))));
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.meta.insert("schema", encode(&99u32)).unwrap();
        store.flush().unwrap();
    }
    assert!(matches!(reopen(dir.path()), Err(StateError::Schema { found: 99, .. })));
}

/// Opens the store again after a handle of this process was dropped:
/// sled's background thread may hold the lock a moment longer.
pub(crate) fn reopen(dir: &Path) -> Result<Store, StateError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Store::open(dir) {
            Err(StateError::Locked(_)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => return other,
        }
    }
}

fn spec(source: &SourceId, name: &str, version: &str) -> VassalSpec {
    VassalSpec {
        name: VassalName::parse(name).unwrap(),
        source: source.clone(),
        config: reconciler::ConfigRef::Inline("[uwsgi]".into()),
        version: version.into(),
        owner: None,
        socket: None,
    }
}

#[test]
fn snapshots_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let src = SourceId("zmq://tcp://127.0.0.1:1".into());
    let other = SourceId("zmq://tcp://127.0.0.1:10".into());
    assert_eq!(store.snapshot(&src).unwrap(), None);
    store.replace_specs(&src, &[spec(&src, "a.ini", "1"), spec(&src, "b.ini", "1")], false).unwrap();
    store.put_spec(&spec(&other, "c.ini", "1")).unwrap();
    store.put_spec(&spec(&src, "b.ini", "2")).unwrap();
    store.remove_spec(&src, &VassalName::parse("a.ini").unwrap()).unwrap();
    let snap = store.snapshot(&src).unwrap().unwrap();
    assert!(snap.complete);
    assert_eq!(snap.specs, vec![spec(&src, "b.ini", "2")]);
    store.replace_specs(&src, &[], true).unwrap();
    assert_eq!(store.snapshot(&src).unwrap().unwrap().specs, vec![]);
    assert_eq!(store.snapshot(&other).unwrap().unwrap().specs.len(), 1);
}
