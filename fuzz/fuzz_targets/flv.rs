//! cargo-fuzz target `flv`: feeds each input to [`prism_fuzz::flv::check`], which says
//! what it proves. The same check replays `fuzz/regressions/flv/` in the crate's tests
//! (`tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| prism_fuzz::flv::check(data));
