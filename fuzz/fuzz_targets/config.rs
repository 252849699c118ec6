//! cargo-fuzz target `config`: feeds each input to [`prism_fuzz::config::check`], which says
//! what it proves. The same check replays `fuzz/regressions/config/` in the crate's tests
//! (`tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| prism_fuzz::config::check(data));
