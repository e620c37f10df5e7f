//! Source conformance: one suite of checks ([`checks`]) run in-process
//! against every source family, each through a small driver that changes
//! its real backend (temp dirs, PostgreSQL, SecantusDB as MongoDB,
//! ZooKeeper, OpenLDAP slapd, RabbitMQ, libzmq). One server of each kind is shared by the whole
//! binary; the outage checks take one of their own.
//!
//! The end-to-end tests of each source (vassals really spawned) stay in
//! `tests/<family>_source.rs`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../brokers/libzmq.rs"]
mod libzmq;
#[path = "../brokers/rabbitmq.rs"]
mod rabbitmq;
#[path = "../servers/mod.rs"]
mod servers;

mod checks;
mod harness;
#[macro_use]
mod tree;

/// One `#[test]` per named check of [`checks`], each on a fresh `$driver`.
macro_rules! conformance {
    ($driver:expr => $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::checks::$check($driver);
            }
        )+
    };
}

mod amqp;
mod dir;
mod glob;
mod ldap;
mod mongodb;
mod pg;
mod zmq;
mod zoo;

/// A source whose task fails is reported down and restarted (with the
/// shared backoff) until it delivers: first an error, then a panic, then it
/// works; a real backend cannot be made to fail like this on demand.
#[test]
fn a_dead_source_is_restarted() {
    let mut s = harness::start_source(Box::new(Flaky::default()));
    match s.next("the snapshot of the third run") {
        emperor::source::SourceEvent::Snapshot { specs, .. } => assert_eq!(specs.len(), 1),
        other => panic!("expected a snapshot, got {other:?}"),
    }
    let status = s.status();
    assert_eq!(status.restarts, 2, "{status:?}");
    assert!(status.up, "a source that delivers again is up: {status:?}");
    let log = s.log().join("\n");
    assert!(log.contains("flaky backend refused") && log.contains("flaky backend panicked"), "{log}");
}

/// Fails on its first run, panics on its second, lists one vassal on its third.
#[derive(Default)]
struct Flaky {
    runs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl emperor::source::Source for Flaky {
    fn id(&self) -> reconciler::SourceId {
        reconciler::SourceId("flaky://conformance".into())
    }

    fn build(&self, ctx: emperor::source::SourceContext) -> emperor::source::Built<'_> {
        let run = self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            let task: emperor::source::SourceTask = Box::pin(async move {
                match run {
                    0 => Err(emperor::source::SourceError::Failed {
                        uri: ctx.id.0.clone(),
                        message: "flaky backend refused".into(),
                    }),
                    1 => panic!("flaky backend panicked"),
                    _ => {
                        let spec = reconciler::VassalSpec {
                            name: reconciler::VassalName::parse("app.ini").unwrap(),
                            source: ctx.id.clone(),
                            config: reconciler::ConfigRef::Inline("[uwsgi]\n".into()),
                            version: "1".into(),
                            owner: None,
                            socket: None,
                        };
                        let snapshot =
                            emperor::source::SourceEvent::Snapshot { source: ctx.id.clone(), specs: vec![spec] };
                        ctx.send(snapshot).await;
                        ctx.shutdown.clone().requested().await;
                        Ok(())
                    }
                }
            });
            Ok(task)
        })
    }
}
