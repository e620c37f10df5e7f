#![no_main]
//! Fuzzes `emperor::fuzzing::source_uri`: arbitrary bytes never panic it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| emperor::fuzzing::source_uri(data));
