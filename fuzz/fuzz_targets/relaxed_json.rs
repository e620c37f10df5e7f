#![no_main]
//! Fuzzes `emperor::fuzzing::relaxed_json`: arbitrary bytes never panic it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| emperor::fuzzing::relaxed_json(data));
