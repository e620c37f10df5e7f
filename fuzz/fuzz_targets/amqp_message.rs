#![no_main]
//! Fuzzes `emperor::fuzzing::amqp_message`: arbitrary bytes never panic it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| emperor::fuzzing::amqp_message(data));
