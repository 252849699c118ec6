//! Proves that loading a configuration file never panics on any TOML text (or non-UTF-8
//! bytes): `Config::load` either returns a config that passed validation or an error.
//! `Config::load` only takes a path, so each input is written to a per-process temp file.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use prism::config::{Config, Overrides};

static PATH: LazyLock<PathBuf> = LazyLock::new(|| {
    std::env::temp_dir().join(format!("prism-fuzz-config-{}.toml", std::process::id()))
});

fuzz_target!(|data: &[u8]| {
    std::fs::write(&*PATH, data).expect("temp file writable");
    let loaded = Config::load(Some(&PATH), &Overrides::default());
    let _ = std::fs::remove_file(&*PATH);
    if let Ok(config) = loaded {
        // What the app derives from a valid config must not panic either.
        let _ = config.decoder_limits();
        let _ = config.hub_limits();
        let _ = config.handshake_timeout();
        let _ = config.idle_timeout();
    }
});
