use super::*;
use zk::{EventType, SessionState};

#[test]
fn events_name_the_child_they_concern() {
    assert_eq!(child_of("/v/", "/v/app.ini"), Some("app.ini"));
    assert_eq!(child_of("/v/", "/v/app.ini/uid"), Some("app.ini"));
    assert_eq!(child_of("/v/", "/v"), None);
    assert_eq!(child_of("/v/", "/v/"), None);
    assert_eq!(child_of("/v/", "/vx/app.ini"), None);
    assert_eq!(child_of("/", "/app.ini"), Some("app.ini"));
}

#[test]
fn pending_reads_after_events() {
    let mut p = Pending::new();
    assert!(p.resync);
    p.resync = false;
    assert_eq!(p.note("/v/", EventType::NodeDataChanged, SessionState::SyncConnected, "/v/a.ini"), Change::Changed);
    assert_eq!(p.note("/v/", EventType::NodeCreated, SessionState::SyncConnected, "/v/b.ini/uid"), Change::Changed);
    assert_eq!(p.dirty, BTreeSet::from(["a.ini".to_owned(), "b.ini".to_owned()]));
    assert!(!p.resync);
    // The base itself, a reconnect: read everything.
    p.note("/v/", EventType::NodeDeleted, SessionState::SyncConnected, "/v");
    assert!(p.resync);
    p.resync = false;
    p.note("/v/", EventType::Session, SessionState::Disconnected, "");
    assert!(p.resync && p.ended.is_none());
    // A terminal state ends the session for good.
    let lost = p.note("/v/", EventType::Session, SessionState::Expired, "");
    assert!(matches!(lost, Change::Lost(ref why) if why.contains("Expired")), "{lost:?}");
    assert!(p.ended.is_some());
}

#[test]
fn node_data_decoding() {
    assert_eq!(text(b"[uwsgi]\n".to_vec()), Field::Value("[uwsgi]\n".into()));
    assert!(matches!(text(vec![0xff, 0xfe]), Field::Wrong(_)));
    assert_eq!(number(b" 1000\n".to_vec()), Field::Value(1000));
    assert_eq!(number(b"".to_vec()), Field::Null);
    assert_eq!(number(b"www".to_vec()), Field::Wrong("text \"www\"".into()));
}

#[test]
fn nodes_become_rows_versioned_by_mzxid() {
    let node = Node {
        mzxid: 0x2a,
        config: Field::Value("[uwsgi]\n".into()),
        uid: Field::Value(1000),
        gid: Field::Value(100),
        socket: Field::Absent,
    };
    let r = row("/v/", "app.ini", Some(&node));
    assert_eq!(r.position, "node /v/app.ini");
    assert_eq!(r.ts, Field::Value("mzxid 0x2a".into()));
    assert_eq!((r.uid, r.gid), (Field::Value(1000), Field::Value(100)));
    let spec = crate::source::table::rows::spec(&SourceId("zoo://h:1/v".into()), &row("/v/", "app.ini", Some(&node)));
    let mut later = node.clone();
    later.mzxid = 0x2b;
    let respec =
        crate::source::table::rows::spec(&SourceId("zoo://h:1/v".into()), &row("/v/", "app.ini", Some(&later)));
    assert_ne!(spec.unwrap().version, respec.unwrap().version, "a set of the same bytes reloads");
    let bad = row("/v/", "zookeeper", None);
    assert_eq!(bad.config, Field::Absent);
}

#[test]
fn invalid_uri_errors_never_show_the_password() {
    let err = ZooSource::from_uri("ops:secret@h:1").err().unwrap().to_string();
    assert!(!err.contains("secret") && err.contains("zoo://ops:***@h:1"), "{err}");
    let ok = ZooSource::from_uri("ops:secret@h:1/v").ok().unwrap();
    assert_eq!(ok.id().0, "zoo://ops:***@h:1/v");
}
