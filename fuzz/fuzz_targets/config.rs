#![no_main]
//! Fuzzes `emperor::fuzzing::config`: arbitrary bytes never panic it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| emperor::fuzzing::config(data));
