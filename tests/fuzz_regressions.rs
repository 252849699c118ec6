//! Replays the committed fuzz regression sets (`fuzz/regressions/<target>/`) through
//! the very checks the cargo-fuzz targets run: `fuzz/src/` is included here as a
//! module, so a fuzz target and its test cannot drift apart. CI thereby catches a
//! decoder that panics, breaks a limit or stops round-tripping on an input the fuzzer
//! once found, without cargo-fuzz or a nightly toolchain. Each set holds the crash
//! reproducers found so far and a small greedy cover of the target's corpus (inputs
//! that reach the most code; `fuzz/pick-regressions.py`, see fuzz/README.md).

#[path = "../fuzz/src/lib.rs"]
mod prism_fuzz;

use std::path::{Path, PathBuf};

/// Every file of `fuzz/regressions/<target>/`, sorted.
fn regression_set(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every input of the target's set; fails naming every input that
/// panics (the panic messages are printed above).
fn replay(target: &str, check: fn(&[u8])) {
    let files = regression_set(target);
    assert!(
        files.len() >= 10,
        "fuzz/regressions/{target}/ holds {} inputs; it should hold a cover of the corpus",
        files.len()
    );
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} regression inputs fail: {failed:?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn handshake_server() {
    replay("handshake_server", prism_fuzz::handshake_server::check);
}

#[test]
fn handshake_client() {
    replay("handshake_client", prism_fuzz::handshake_client::check);
}

#[test]
fn chunk_decoder() {
    replay("chunk_decoder", prism_fuzz::chunk_decoder::check);
}

#[test]
fn amf0() {
    replay("amf0", prism_fuzz::amf0::check);
}

#[test]
fn amf3() {
    replay("amf3", prism_fuzz::amf3::check);
}

#[test]
fn flv() {
    replay("flv", prism_fuzz::flv::check);
}

#[test]
fn server_session() {
    replay("server_session", prism_fuzz::server_session::check);
}

#[test]
fn client_session() {
    replay("client_session", prism_fuzz::client_session::check);
}

#[test]
fn config() {
    replay("config", prism_fuzz::config::check);
}

#[test]
fn user_file() {
    replay("user_file", prism_fuzz::user_file::check);
}

/// The sets stay small enough to commit and to replay in a moment.
#[test]
fn regression_sets_stay_small() {
    let total: u64 = [
        "handshake_server",
        "handshake_client",
        "chunk_decoder",
        "amf0",
        "amf3",
        "flv",
        "server_session",
        "client_session",
        "config",
        "user_file",
    ]
    .iter()
    .flat_map(|target| regression_set(target))
    .map(|path| path.metadata().unwrap().len())
    .sum();
    assert!(total < 1 << 20, "fuzz/regressions/ holds {total} bytes");
}
