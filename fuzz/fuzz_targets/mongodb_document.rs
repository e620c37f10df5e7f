#![no_main]
//! Fuzzes `emperor::fuzzing::mongodb_document`: arbitrary bytes never panic it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| emperor::fuzzing::mongodb_document(data));
