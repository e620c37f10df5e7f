#![no_main]
//! Fuzzes `emperor::fuzzing::fd_holder_key`: arbitrary bytes never panic it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| emperor::fuzzing::fd_holder_key(data));
