//! cargo-fuzz target: see `porter::fuzzing::header_rewrite` and README "Fuzzing".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| porter::fuzzing::header_rewrite(data));
