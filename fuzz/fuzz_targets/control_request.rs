#![no_main]
//! Fuzzes `emperor::fuzzing::control_request`: arbitrary bytes never panic it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| emperor::fuzzing::control_request(data));
