//! cargo-fuzz target `user_file`: feeds each input to [`prism_fuzz::user_file::check`], which
//! says what it proves. The same check replays `fuzz/regressions/user_file/` in the crate's
//! tests (`tests/fuzz_regressions.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| prism_fuzz::user_file::check(data));
