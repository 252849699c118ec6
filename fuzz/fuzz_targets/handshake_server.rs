//! cargo-fuzz target `handshake_server`: feeds each input to [`prism_fuzz::handshake_server::check`], which says
//! what it proves. The same check replays `fuzz/regressions/handshake_server/` in the crate's tests
//! (`tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| prism_fuzz::handshake_server::check(data));
