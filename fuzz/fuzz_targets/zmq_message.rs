#![no_main]
//! Fuzzes `emperor::fuzzing::zmq_message`: arbitrary bytes never panic it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| emperor::fuzzing::zmq_message(data));
