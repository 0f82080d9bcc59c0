//! cargo-fuzz target: see `porter::fuzzing::request_head` and README "Fuzzing".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| porter::fuzzing::request_head(data));
