//! cargo-fuzz target `amf3`: feeds each input to [`prism_fuzz::amf3::check`], which says
//! what it proves. The same check replays `fuzz/regressions/amf3/` in the crate's tests
//! (`tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| prism_fuzz::amf3::check(data));
