//! cargo-fuzz target `client_session`: feeds each input to [`prism_fuzz::client_session::check`], which says
//! what it proves. The same check replays `fuzz/regressions/client_session/` in the crate's tests
//! (`tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| prism_fuzz::client_session::check(data));
