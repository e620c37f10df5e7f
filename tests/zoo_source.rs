//! `zoo://` against a real ZooKeeper: child znodes of a base path are
//! vassals; create / set / delete → spawn / reload / stop; outages and
//! session expiry keep the vassals running.

mod common;
mod servers;

use servers::ZooKeeper;

#[test]
fn private_server_round_trip() {
    let zk = ZooKeeper::shared();
    let mut c = zk.client();
    c.mkdir("/skeleton/vassals");
    c.create("/skeleton/vassals/app.ini", b"[uwsgi]\n");
    assert_eq!(c.children("/skeleton/vassals"), ["app.ini"]);
    c.set("/skeleton/vassals/app.ini", b"[uwsgi]\nprocesses = 2\n");
    assert_eq!(c.get("/skeleton/vassals/app.ini").as_deref(), Some(&b"[uwsgi]\nprocesses = 2\n"[..]));
    c.delete_tree("/skeleton");
    assert_eq!(c.get("/skeleton"), None);
}
