//! cargo-fuzz target: see `porter::fuzzing::h1_response_differential` and README "Fuzzing".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| porter::fuzzing::h1_response_differential(data));
