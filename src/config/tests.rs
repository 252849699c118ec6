// figment's Jail closures return its large error type by design.
#![allow(clippy::result_large_err)]

use super::*;

#[test]
fn embedded_defaults_load_and_validate() {
    let config = Config::load(None, &Overrides::default()).unwrap();
    assert_eq!(config.rtmp.listen.port(), 1935);
    assert_eq!(config.rtmp.chunk_size, 4096);
}

#[test]
fn file_then_env_then_flags_override() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "prism.toml",
            "[rtmp]\nlisten = \"127.0.0.1:2000\"\nchunk_size = 8192\n",
        )?;
        let config = Config::load(Some(Path::new("prism.toml")), &Overrides::default()).unwrap();
        assert_eq!(config.rtmp.listen.port(), 2000);
        jail.set_env("PRISM_RTMP__LISTEN", "127.0.0.1:3000");
        let config = Config::load(Some(Path::new("prism.toml")), &Overrides::default()).unwrap();
        assert_eq!(config.rtmp.listen.port(), 3000);
        assert_eq!(config.rtmp.chunk_size, 8192);
        let overrides = Overrides {
            rtmp_listen: Some("127.0.0.1:4000".parse().unwrap()),
            ..Overrides::default()
        };
        let config = Config::load(Some(Path::new("prism.toml")), &overrides).unwrap();
        assert_eq!(config.rtmp.listen.port(), 4000);
        Ok(())
    });
}

#[test]
fn every_example_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = Config::load(Some(&path), &Overrides::default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let presets = crate::presets::Presets::load(&config.presets)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if let Some(dir) = &config.users.dir {
                let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
                crate::users::Users::load_dir(
                    &dir,
                    &presets,
                    &crate::transcode::Profiles::new(&config.profiles),
                )
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "examples/ has its configs");
}

#[test]
fn limits_for_all_peers_are_checked_and_reach_the_decoder() {
    figment::Jail::expect_with(|jail| {
        let config = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(config.limits.max_pending_bytes_total, 256 << 20);
        assert_eq!(config.limits.max_commands_per_sec, 1000);
        assert_eq!(config.decoder_limits().min_chunk_size, 64);
        for (file, key) in [
            (
                "[limits]\nmax_pending_bytes_total = 1048576\n",
                "limits.max_pending_bytes_total",
            ),
            ("[limits]\nmin_chunk_size = 0\n", "limits.min_chunk_size"),
            ("[limits]\nmin_chunk_size = 5000\n", "limits.min_chunk_size"),
            (
                "[limits]\nmax_commands_per_sec = 0\n",
                "limits.max_commands_per_sec",
            ),
        ] {
            jail.create_file("limits.toml", file)?;
            let err =
                Config::load(Some(Path::new("limits.toml")), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains(key), "{file}: {err}");
        }
        jail.create_file("limits.toml", "[limits]\nmin_chunk_size = 128\n")?;
        let config = Config::load(Some(Path::new("limits.toml")), &Overrides::default()).unwrap();
        assert_eq!(config.decoder_limits().min_chunk_size, 128);
        Ok(())
    });
}

#[test]
fn unknown_keys_and_bad_values_are_refused() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("typo.toml", "[rtmp]\nlisten_addr = \"127.0.0.1:1\"\n")?;
        assert!(Config::load(Some(Path::new("typo.toml")), &Overrides::default()).is_err());
        jail.create_file("bad.toml", "[rtmp]\nchunk_size = 1\n")?;
        let err = Config::load(Some(Path::new("bad.toml")), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("rtmp.chunk_size"), "{err}");
        assert!(Config::load(Some(Path::new("missing.toml")), &Overrides::default()).is_err());
        // A log budget of zero would silence every client, or every line.
        jail.create_file("quiet.toml", "[log]\nall_peers_lines_per_sec = 0\n")?;
        let err = Config::load(Some(Path::new("quiet.toml")), &Overrides::default()).unwrap_err();
        assert!(
            err.to_string().contains("log.all_peers_lines_per_sec"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn rtmps_is_off_by_default_and_needs_a_certificate_and_key() {
    figment::Jail::expect_with(|jail| {
        let config = Config::load(None, &Overrides::default()).unwrap();
        assert!(config.rtmps.listen.is_none(), "RTMPS is opt-in");
        let overrides = Overrides {
            rtmps_listen: Some("127.0.0.1:1936".parse().unwrap()),
            ..Overrides::default()
        };
        let err = Config::load(None, &overrides).unwrap_err();
        assert!(err.to_string().contains("rtmps.cert_file"), "{err}");
        jail.create_file(
            "tls.toml",
            "[rtmps]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n",
        )?;
        let config = Config::load(Some(Path::new("tls.toml")), &overrides).unwrap();
        assert_eq!(config.rtmps.listen.unwrap().port(), 1936);
        assert_eq!(
            config.rtmps.tls_versions,
            TlsVersion::all(),
            "both by default"
        );
        // No PRISM_RTMPS__* variable here: other tests of this binary load the
        // configuration from the same process environment at the same time.
        Ok(())
    });
}

#[test]
fn tls_versions_are_validated() {
    figment::Jail::expect_with(|jail| {
        let load = |name: &str| Config::load(Some(Path::new(name)), &Overrides::default());
        jail.create_file("one.toml", "[rtmps]\ntls_versions = [\"1.2\"]\n")?;
        assert_eq!(
            load("one.toml").unwrap().rtmps.tls_versions,
            [TlsVersion::Tls12]
        );
        jail.create_file("none.toml", "[rtmps]\ntls_versions = []\n")?;
        let err = load("none.toml").unwrap_err().to_string();
        assert!(
            err.contains("rtmps.tls_versions") && err.contains("at least one"),
            "{err}"
        );
        jail.create_file("old.toml", "[rtmps]\ntls_versions = [\"1.1\", \"1.3\"]\n")?;
        let err = load("old.toml").unwrap_err().to_string();
        assert!(
            err.contains("tls_versions") && err.contains("1.1") && err.contains("1.2"),
            "names the key, the bad value and the known ones: {err}"
        );
        jail.create_file("number.toml", "[rtmps]\ntls_versions = [1.3]\n")?;
        assert!(load("number.toml").is_err(), "versions are strings");
        Ok(())
    });
}

#[test]
fn durations_take_numbers_in_the_keys_unit_or_humantime_strings() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "prism.toml",
            "[rtmp]\nidle_timeout_secs = \"1m 30s\"\nhandshake_timeout_secs = \"15s\"\n\
             [relay]\nbackoff_initial_ms = \"250ms\"\npublisher_grace_secs = 7\n\
             [auth]\ntimeout_ms = \"2s\"\n",
        )?;
        let config = Config::load(Some(Path::new("prism.toml")), &Overrides::default()).unwrap();
        assert_eq!(config.rtmp.idle_timeout_secs, 90);
        assert_eq!(config.rtmp.handshake_timeout_secs, 15);
        assert_eq!(config.relay.backoff_initial_ms, 250);
        assert_eq!(config.relay.publisher_grace_secs, 7);
        assert_eq!(config.auth.timeout_ms, 2000);
        // The environment gives numbers as text; durations work there too.
        jail.set_env("PRISM_RTMP__PLAY_WAIT_SECS", "45");
        jail.set_env("PRISM_RELAY__STALL_TIMEOUT_SECS", "2m");
        let config = Config::load(Some(Path::new("prism.toml")), &Overrides::default()).unwrap();
        assert_eq!(config.rtmp.play_wait_secs, 45);
        assert_eq!(config.relay.stall_timeout_secs, 120);
        // check-config prints the integer keys, which load back to the same values.
        let printed = config.to_masked_toml().unwrap();
        assert!(printed.contains("idle_timeout_secs = 90"), "{printed}");
        Ok(())
    });
    figment::Jail::expect_with(|jail| {
        jail.create_file("bad.toml", "[rtmp]\nidle_timeout_secs = \"1500ms\"\n")?;
        let err = Config::load(Some(Path::new("bad.toml")), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("whole number of seconds"), "{err}");
        jail.create_file("bad2.toml", "[rtmp]\nidle_timeout_secs = \"soon\"\n")?;
        let err = Config::load(Some(Path::new("bad2.toml")), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("idle_timeout"), "{err}");
        Ok(())
    });
}

#[test]
fn an_unknown_environment_variable_is_named_with_the_nearest_key() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("PRISM_HTTP_TOKEN", "secret");
        let err = Config::load(None, &Overrides::default()).unwrap_err();
        let ConfigError::UnknownEnv(unknown) = &err else {
            panic!("an unknown variable, not {err}");
        };
        assert_eq!(unknown.var, "PRISM_HTTP_TOKEN");
        assert_eq!(unknown.key, "http_token");
        // An optional key, absent from the defaults, is still a candidate.
        assert_eq!(unknown.nearest, "http.token");
        assert!(!err.to_string().contains("secret"), "{err}");
        Ok(())
    });
    figment::Jail::expect_with(|jail| {
        // The file's variable is not a key.
        jail.create_file("prism.toml", "")?;
        jail.set_env("PRISM_CONFIG", "prism.toml");
        Config::load(None, &Overrides::default()).unwrap();
        Ok(())
    });
}
