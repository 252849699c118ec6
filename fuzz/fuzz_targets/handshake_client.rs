//! cargo-fuzz target `handshake_client`: feeds each input to [`prism_fuzz::handshake_client::check`], which says
//! what it proves. The same check replays `fuzz/regressions/handshake_client/` in the crate's tests
//! (`tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| prism_fuzz::handshake_client::check(data));
