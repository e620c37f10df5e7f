#![no_main]
//! Fuzzes `emperor::fuzzing::table_row`: arbitrary bytes never panic it.

libfuzzer_sys::fuzz_target!(|data: &[u8]| emperor::fuzzing::table_row(data));
