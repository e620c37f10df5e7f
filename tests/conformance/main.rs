//! Source conformance: one suite of checks ([`checks`]) run in-process
//! against every source family, each through a small driver that changes
//! its real backend (temp dirs, PostgreSQL, SecantusDB as MongoDB,
//! RabbitMQ, libzmq). One server of each kind is shared by the whole
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
mod mongodb;
mod pg;
mod zmq;

/// Needs a shutdown signal in the source context.
#[test]
#[ignore = "the source API has no shutdown signal yet: check that a source ends within 1 s of shutdown"]
fn source_ends_within_one_second_of_shutdown() {}

/// Needs the emperor to supervise its sources.
#[test]
#[ignore = "sources are not supervised yet: check that a source whose task dies is restarted"]
fn a_dead_source_is_restarted() {}
