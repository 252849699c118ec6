//! cargo-fuzz target `server_session`: feeds each input to [`prism_fuzz::server_session::check`], which says
//! what it proves. The same check replays `fuzz/regressions/server_session/` in the crate's tests
//! (`tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| prism_fuzz::server_session::check(data));
