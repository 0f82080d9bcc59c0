//! cargo-fuzz target: see `porter::fuzzing::h1_differential` and README "Fuzzing".
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| porter::fuzzing::h1_differential(data));
