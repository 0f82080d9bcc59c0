//! cargo-fuzz target: see `porter::fuzzing::route` and README "Fuzzing".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| porter::fuzzing::route(data));
