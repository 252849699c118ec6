//! cargo-fuzz target `amf0`: feeds each input to [`prism_fuzz::amf0::check`], which says
//! what it proves. The same check replays `fuzz/regressions/amf0/` in the crate's tests
//! (`tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| prism_fuzz::amf0::check(data));
