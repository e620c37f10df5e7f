//! `amqp://` sources against a real, private RabbitMQ node, end to end:
//! inline configs (spawn, reload, stop), config paths, `http://` configs,
//! crash respawn, two emperors on one exchange, and an emperor restart with
//! messages queued meanwhile. Bad messages and a broker restart are checked
//! at the source by the conformance suite (`tests/conformance/amqp.rs`).

mod common;
#[path = "brokers/http_server.rs"]
mod http_server;
#[path = "brokers/rabbitmq.rs"]
mod rabbitmq;

use common::*;
use http_server::HttpServer;
use rabbitmq::{Node, Publisher};

/// Starts the emperor on `uri` and waits until it consumes.
fn start(h: &mut Harness, uri: &str) {
    h.start(&["--stop-timeout", "5", uri]);
    wait_consuming(h, 1);
}

/// Waits until the log shows `n` "consuming" lines (connects and reconnects).
fn wait_consuming(h: &Harness, n: usize) {
    wait_until(DEADLINE * 3, format!("the amqp source to consume ({n} time(s))"), || {
        cond(h.log_text().matches("consuming").count() >= n)
    });
}

/// A per-test exchange and queue, so tests on the shared node do not see
/// each other's messages.
fn private_uri(node: &Node, test: &str) -> (String, String) {
    let exchange = format!("test.{test}");
    (node.uri(&format!("?exchange={exchange}&queue=q.{test}")), exchange)
}

#[test]
fn inline_config_spawns_reloads_and_stops() {
    let (node, _guard) = Node::shared();
    let (uri, ex) = private_uri(node, "inline");
    let mut h = Harness::new();
    start(&mut h, &uri);
    let publisher = Publisher::new(node, &ex);

    let first = uwsgi_ini("# one");
    publisher.publish(&ex, "app.ini", first.as_bytes());
    let start = h.wait_start("app.ini");
    assert_eq!(start.argv(), "--ini emperor://app.ini");
    wait_nth_config(&h, "app.ini", 1, &first);

    let second = uwsgi_ini("# two");
    publisher.publish(&ex, "app.ini", second.as_bytes());
    wait_nth_config(&h, "app.ini", 2, &second);
    assert!(h.events("app.ini").iter().any(|e| e.is_recv(1)), "reload is byte 1 on the control channel");
    // The same config again is a new version: it reloads again.
    publisher.publish(&ex, "app.ini", second.as_bytes());
    wait_nth_config(&h, "app.ini", 3, &second);
    assert_eq!(h.starts("app.ini").len(), 1, "reloads happen in place");
    assert!(alive(start.pid));

    publisher.publish(&ex, "app.ini", b"");
    h.wait_reaped(start.pid, "app.ini after an empty body");
    assert_eq!(h.starts("app.ini").len(), 1, "a removed vassal is not respawned");
}

#[test]
fn config_path_messages_spawn_reload_and_remove() {
    let (node, _guard) = Node::shared();
    let (uri, ex) = private_uri(node, "paths");
    let mut h = Harness::new();
    start(&mut h, &uri);
    let publisher = Publisher::new(node, &ex);
    let path = h.vassal("file.ini");
    put(&path, &uwsgi_ini("# v1"));

    publisher.publish(&ex, "", format!("{}\n", path.display()).as_bytes());
    let start = h.wait_start("file.ini");
    assert_eq!(start.argv(), format!("--ini {}", path.display()));

    put(&path, &uwsgi_ini("# v2"));
    publisher.publish(&ex, "", path.to_str().unwrap().as_bytes());
    h.wait_event("file.ini", "reload (recv 1)", |e| e.is_recv(1));

    std::fs::remove_file(&path).unwrap();
    publisher.publish(&ex, "", path.to_str().unwrap().as_bytes());
    h.wait_reaped(start.pid, "file.ini after its file was removed");
}

#[test]
fn http_config_is_fetched_and_non_200_removes() {
    let (node, _guard) = Node::shared();
    let (uri, ex) = private_uri(node, "http");
    let server = HttpServer::start();
    let config = uwsgi_ini("# from http");
    server.set("/confs/web.ini", 200, &config);
    let mut h = Harness::new();
    start(&mut h, &uri);
    let publisher = Publisher::new(node, &ex);

    publisher.publish(&ex, "", server.url("/confs/web.ini").as_bytes());
    let start = h.wait_start("web.ini");
    wait_nth_config(&h, "web.ini", 1, &config);
    assert_eq!(server.requests(), ["/confs/web.ini"]);

    server.set("/confs/web.ini", 404, "gone");
    publisher.publish(&ex, "", server.url("/confs/web.ini").as_bytes());
    h.wait_reaped(start.pid, "web.ini after its URL answered 404");
}

#[test]
fn an_exchange_declared_with_other_flags_is_used_as_it_is() {
    let (node, _guard) = Node::shared();
    let (uri, ex) = private_uri(node, "durable-exchange");
    // A deployment that made the exchange durable: our non-durable declare
    // is refused by the broker, and the source falls back to using it.
    let publisher = Publisher::declaring(node, &ex, true);
    let mut h = Harness::new();
    start(&mut h, &uri);
    let config = uwsgi_ini("# durable exchange");
    publisher.publish(&ex, "dx.ini", config.as_bytes());
    h.wait_start("dx.ini");
    wait_nth_config(&h, "dx.ini", 1, &config);
}

#[test]
fn crashed_vassal_is_respawned() {
    let (node, _guard) = Node::shared();
    let (uri, ex) = private_uri(node, "crash");
    let mut h = Harness::new();
    start(&mut h, &uri);
    let publisher = Publisher::new(node, &ex);
    let config = uwsgi_ini("# crash me");
    publisher.publish(&ex, "crash.ini", config.as_bytes());
    let first = h.wait_start("crash.ini");
    wait_nth_config(&h, "crash.ini", 1, &config);
    kill(first.pid, libc::SIGKILL);
    let starts = h.wait_starts("crash.ini", 2);
    assert_ne!(starts[1].pid, first.pid);
    wait_nth_config(&h, "crash.ini", 2, &config);
}

#[test]
fn two_emperors_on_the_default_exchange_each_get_every_message() {
    let (node, _guard) = Node::shared();
    let uri = node.uri(""); // upstream style: amqp://HOST:PORT, exchange uwsgi.emperor
    let (mut a, mut b) = (Harness::new(), Harness::new());
    start(&mut a, &uri);
    start(&mut b, &uri);
    let queue = |h: &Harness| {
        let log = h.log_text();
        let at = log.find("queue=").expect("queue logged") + 6;
        log[at..].split_whitespace().next().unwrap().to_owned()
    };
    let (qa, qb) = (queue(&a), queue(&b));
    assert!(qa.starts_with("emperor.") && qb.starts_with("emperor."), "{qa} {qb}");
    assert_ne!(qa, qb, "each emperor has its own default queue");
    let publisher = Publisher::new(node, "uwsgi.emperor");
    let config = uwsgi_ini("# everyone");
    publisher.publish("uwsgi.emperor", "fleet.ini", config.as_bytes());
    for h in [&a, &b] {
        h.wait_start("fleet.ini");
        wait_nth_config(h, "fleet.ini", 1, &config);
    }
}

/// Needs the lead's persistence of message sources (desired set restored at
/// start, running vassals adopted).
#[test]
fn emperor_restart_keeps_vassals_and_applies_messages_queued_meanwhile() {
    let (node, _guard) = Node::shared();
    let (uri, ex) = private_uri(node, "durable");
    let mut h = Harness::new();
    start(&mut h, &uri);
    let publisher = Publisher::new(node, &ex);
    let config = uwsgi_ini("# kept");
    publisher.publish(&ex, "kept.ini", config.as_bytes());
    publisher.publish(&ex, "other.ini", config.as_bytes());
    let kept = h.wait_start("kept.ini");
    let other = h.wait_start("other.ini");
    wait_nth_config(&h, "kept.ini", 1, &config);
    wait_nth_config(&h, "other.ini", 1, &config);
    // A barrier: the emperor's loop records and flushes its state after each
    // round, so once a later message has been acted on, the two spawns are
    // on disk. (Killing it earlier is the recovery tests' business.)
    wait_until(DEADLINE, "both spawns logged", || cond(h.log_text().matches("vassal spawned").count() >= 2));
    publisher.publish(&ex, "barrier.ini", config.as_bytes());
    wait_until(DEADLINE, "the barrier spawn logged", || cond(h.log_text().matches("vassal spawned").count() >= 3));

    h.signal_emperor(libc::SIGKILL);
    h.wait_emperor_exit(DEADLINE);
    let changed = uwsgi_ini("# changed while the emperor was down");
    publisher.publish(&ex, "kept.ini", changed.as_bytes());
    publisher.publish(&ex, "new.ini", config.as_bytes());

    let _second = h.spawn(&["--stop-timeout", "5", &uri], &[]);
    wait_consuming(&h, 2);
    h.wait_start("new.ini");
    wait_nth_config(&h, "kept.ini", 2, &changed);
    assert_eq!(h.starts("kept.ini").len(), 1, "kept.ini was adopted, not restarted");
    assert!(alive(kept.pid) && alive(other.pid), "vassals survive an emperor restart");
    assert_eq!(h.starts("other.ini").len(), 1, "other.ini (no message meanwhile) is kept as it was");
}
