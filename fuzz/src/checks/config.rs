//! Proves that loading a configuration file never panics on any TOML text (or non-UTF-8
//! bytes): `Config::load` either returns a config that passed validation or an error.
//! `Config::load` only takes a path, so each input is written to a temp file private to the
//! process and thread (the regression tests replay inputs on several threads at once).

use std::path::PathBuf;

use prism::config::{Config, Overrides};

thread_local! {
    static PATH: PathBuf = std::env::temp_dir().join(format!(
        "prism-fuzz-config-{}-{:?}.toml",
        std::process::id(),
        std::thread::current().id()
    ));
}

/// Runs one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    let path = PATH.with(PathBuf::clone);
    std::fs::write(&path, data).expect("temp file writable");
    let loaded = Config::load(Some(&path), &Overrides::default());
    let _ = std::fs::remove_file(&path);
    if let Ok(config) = loaded {
        // What the app derives from a valid config must not panic either.
        let _ = config.decoder_limits();
        let _ = config.hub_limits();
        let _ = config.handshake_timeout();
        let _ = config.idle_timeout();
    }
}
