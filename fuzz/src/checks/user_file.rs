//! Proves that loading a user file never panics on any TOML text (or non-UTF-8 bytes):
//! `Users::load_dir` either returns users that passed validation (each of whose keys then
//! authenticates as that user) or an error. A user file is written by an operator, or by a
//! tool on a streamer's behalf, so a mistake in one must be a clear error, never a crash
//! that takes every stream down on reload. `load_dir` reads a directory, so each input is
//! written as the only file of a directory private to the process and thread.

use std::collections::BTreeMap;
use std::path::PathBuf;

use prism::presets::Presets;
use prism::transcode::Profiles;
use prism::users::{MAX_DESTINATIONS_PER_USER, MIN_KEY_LEN, Users};

thread_local! {
    static DIR: PathBuf = std::env::temp_dir().join(format!(
        "prism-fuzz-users-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
}

/// Runs one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    let dir = DIR.with(PathBuf::clone);
    std::fs::create_dir_all(&dir).expect("temp dir writable");
    let file = dir.join("user.toml");
    std::fs::write(&file, data).expect("temp file writable");
    let presets = Presets::load(&BTreeMap::new()).expect("built-in presets load");
    let profiles = Profiles::new(&BTreeMap::new());
    let loaded = Users::load_dir(&dir, &presets, &profiles);
    let _ = std::fs::remove_file(&file);
    if let Ok(users) = loaded {
        assert!(users.len() <= 1, "one file is at most one user");
        // Whatever key authenticates passed the key rules, and the user's destinations
        // stay within their bound.
        if let Ok(text) = std::str::from_utf8(data) {
            for candidate in text.split('"').skip(1).step_by(2) {
                if let Some(user) = users.authenticate(candidate) {
                    assert!(
                        candidate.chars().count() >= MIN_KEY_LEN,
                        "short key accepted"
                    );
                    assert!(
                        !candidate.contains(['?', '/', '&']),
                        "a key with URL syntax accepted"
                    );
                    assert!(user.destinations.len() <= MAX_DESTINATIONS_PER_USER);
                }
            }
        }
    }
}
