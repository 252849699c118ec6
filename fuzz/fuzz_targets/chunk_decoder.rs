//! cargo-fuzz target `chunk_decoder`: feeds each input to [`prism_fuzz::chunk_decoder::check`], which says
//! what it proves. The same check replays `fuzz/regressions/chunk_decoder/` in the crate's tests
//! (`tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| prism_fuzz::chunk_decoder::check(data));
