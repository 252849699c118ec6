use super::*;

#[test]
fn a_destination_request_debug_hides_key_and_url() {
    let request = DestinationRequest {
        preset: Some("twitch".into()),
        key: Some("live_secret_key_123".into()),
        url: Some("rtmp://ingest.example/app/another_secret_456".into()),
        profile: None,
        ..DestinationRequest::default()
    };
    let shown = format!("{request:?}");
    assert!(shown.contains("twitch"), "{shown}");
    assert!(!shown.contains("secret"), "{shown}");
}
use std::collections::BTreeMap;

fn presets() -> Presets {
    Presets::load(&BTreeMap::new()).unwrap()
}

fn dir_with(files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "prism-users-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

#[test]
fn users_load_and_authenticate() {
    let dir = dir_with(&[
        (
            "alice.toml",
            "stream_key = \"alice-key-1\"\n[[destinations]]\npreset = \"youtube\"\nkey = \"yt\"\n\
             [[destinations]]\nurl = \"rtmp://example.com/live/custom\"\nprofile = \"720p30\"\n",
        ),
        (
            "bob.toml",
            "name = \"Bob\"\nstream_keys = [\"bob-key-111\", \"bob-key-222\"]\n",
        ),
        ("notes.txt", "ignored"),
    ]);
    let users = Users::load_dir(&dir, &presets(), &Profiles::default_set()).unwrap();
    assert_eq!(users.len(), 2);
    let alice = users.authenticate("alice-key-1").unwrap();
    assert_eq!(alice.name, "alice");
    assert_eq!(alice.destinations.len(), 2);
    assert_eq!(users.authenticate("bob-key-222").unwrap().name, "Bob");
    assert!(users.authenticate("alice-key-").is_none());
    assert!(users.authenticate("").is_none());
    assert!(!format!("{alice:?}").contains("alice-key-1"));
}

#[test]
fn broken_files_are_refused_with_a_clear_error_that_quotes_no_value() {
    let cases = [
        ("stream_key = 12345678\n", "wrong type"),
        ("stream_key = \"secret-value\n", "parse error"),
        ("stream_key = \"short\"\n", "at least"),
        (
            "stream_key = \"secret-value\"\ncolour = 1\n",
            "unknown field",
        ),
        (
            "stream_key = \"secret-value\"\n[[destinations]]\npreset = \"nope\"\nkey = \"k\"\n",
            "unknown preset",
        ),
        (
            "stream_key = \"secret-value\"\n[[destinations]]\npreset = \"youtube\"\n",
            "needs a key",
        ),
        (
            "stream_key = \"secret-value\"\n[[destinations]]\nurl = \"http://x/y/z\"\n",
            "scheme",
        ),
        (
            "stream_key = \"secret-value\"\n[[destinations]]\nurl = \"rtmp://x/y/z\"\nprofile = \"4k\"\n",
            "unknown profile",
        ),
    ];
    for (text, expected) in cases {
        let dir = dir_with(&[("u.toml", text)]);
        let err = Users::load_dir(&dir, &presets(), &Profiles::default_set())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{text:?}: {err}");
        assert!(
            !err.contains("secret-value") && !err.contains("12345678"),
            "{err}"
        );
    }
}

#[test]
fn a_destination_key_against_the_key_rules_refuses_the_file_by_name() {
    let long = "k".repeat(3000);
    let cases = [
        // TOML escapes: the file holds a real newline and a real NUL.
        (
            "\"secret-dest\\n\"".to_owned(),
            "contains a control character (such as a newline or NUL)",
        ),
        (
            "\"secret-dest\\u0000\"".to_owned(),
            "contains a control character (such as a newline or NUL)",
        ),
        (
            "\"../secret-dest\"".to_owned(),
            "contains a path separator ('/' or '\\')",
        ),
        ("\"secret dest\"".to_owned(), "contains a space"),
        (
            format!("\"{long}\""),
            "is 3000 bytes long, over the limit of 512",
        ),
    ];
    for (key, expected) in cases {
        let text = format!(
            "stream_key = \"user-key-123\"\n[[destinations]]\npreset = \"youtube\"\nkey = {key}\n"
        );
        let dir = dir_with(&[("mallory.toml", &text)]);
        let err = Users::load_dir(&dir, &presets(), &Profiles::default_set())
            .unwrap_err()
            .to_string();
        let file = dir.join("mallory.toml");
        assert_eq!(
            err,
            format!(
                "user file {}: destination 1: the key {expected}",
                file.display()
            ),
            "{key}"
        );
    }
    // A custom URL's stream name is a key too.
    let text =
        format!("stream_key = \"user-key-123\"\n[[destinations]]\nurl = \"rtmp://h/app/{long}\"\n");
    let dir = dir_with(&[("u.toml", &text)]);
    let err = Users::load_dir(&dir, &presets(), &Profiles::default_set())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the URL's stream name is 3000 bytes long"),
        "{err}"
    );
    assert!(!err.contains(&long), "{err}");
    // Facebook's keys carry a query, which stays allowed.
    let dir = dir_with(&[(
        "fb.toml",
        "stream_key = \"user-key-123\"\n[[destinations]]\npreset = \"facebook\"\n\
         key = \"FB-123-0-AbC?s_bl=1&s_sc=123&s_sw=0&s_vt=api-s&a=Xy\"\n",
    )]);
    assert!(Users::load_dir(&dir, &presets(), &Profiles::default_set()).is_ok());
}

#[test]
fn two_users_cannot_share_a_key() {
    let dir = dir_with(&[
        ("a.toml", "stream_key = \"same-key-123\"\n"),
        ("b.toml", "stream_key = \"same-key-123\"\n"),
    ]);
    let err = Users::load_dir(&dir, &presets(), &Profiles::default_set())
        .unwrap_err()
        .to_string();
    assert!(err.contains("another user"), "{err}");
}

#[test]
fn a_user_file_may_override_the_standby_slate_and_a_missing_slate_file_is_refused() {
    let image = std::env::temp_dir().join(format!("prism-standby-{}.png", std::process::id()));
    std::fs::write(&image, b"not checked here").unwrap();
    let dir = dir_with(&[
        (
            "carol.toml",
            &format!(
                "stream_key = \"carol-key-1\"\n[standby]\nenabled = true\nfile = \"{}\"\n",
                image.display()
            ),
        ),
        (
            "dave.toml",
            "stream_key = \"dave-key-11\"\n[standby]\nenabled = false\n",
        ),
    ]);
    let users = Users::load_dir(&dir, &presets(), &Profiles::default_set()).unwrap();
    let carol = users.authenticate("carol-key-1").unwrap();
    assert_eq!(carol.standby.enabled, Some(true));
    assert_eq!(carol.standby.file.as_deref(), Some(image.as_path()));
    let dave = users.authenticate("dave-key-11").unwrap();
    assert_eq!(dave.standby.enabled, Some(false));
    assert_eq!(dave.standby.file, None);

    let dir = dir_with(&[(
        "erin.toml",
        "stream_key = \"erin-key-11\"\n[standby]\nfile = \"/nonexistent/slate.png\"\n",
    )]);
    let err = Users::load_dir(&dir, &presets(), &Profiles::default_set())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("erin.toml") && err.contains("standby.file"),
        "{err}"
    );
    let _ = std::fs::remove_file(image);
}

#[test]
fn api_tokens_are_long_unique_and_never_a_stream_key() {
    let ok = "stream_key = \"alice-key-1\"\napi_token = \"alice-token-0123456789\"\n";
    let dir = dir_with(&[
        ("alice.toml", ok),
        ("bob.toml", "stream_key = \"bob-key-111\"\n"),
    ]);
    let users = Users::load_dir(&dir, &presets(), &Profiles::default_set()).unwrap();
    assert_eq!(
        users.by_token("alice-token-0123456789").unwrap().name,
        "alice"
    );
    assert!(users.by_token("alice-token-012345678").is_none());
    assert!(
        users.by_token("alice-key-1").is_none(),
        "a key is not a token"
    );
    assert!(users.any_token_is("alice-token-0123456789"));

    for (files, expected) in [
        (
            vec![(
                "a.toml",
                "stream_key = \"alice-key-1\"\napi_token = \"short\"\n",
            )],
            "at least 16",
        ),
        (
            vec![(
                "a.toml",
                "stream_key = \"alice-key-1\"\napi_token = \"has a space in it 0123\"\n",
            )],
            "no spaces",
        ),
        (
            vec![(
                "a.toml",
                "stream_key = \"alice-key-0123456789\"\napi_token = \"alice-key-0123456789\"\n",
            )],
            "must not be one of the stream keys",
        ),
        (
            vec![
                ("a.toml", ok),
                (
                    "b.toml",
                    "stream_key = \"bob-key-111\"\napi_token = \"alice-token-0123456789\"\n",
                ),
            ],
            "another user's token",
        ),
        (
            vec![
                ("a.toml", ok),
                ("b.toml", "stream_key = \"alice-token-0123456789\"\n"),
            ],
            "another user's",
        ),
    ] {
        let dir = dir_with(&files);
        let err = Users::load_dir(&dir, &presets(), &Profiles::default_set())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains("0123456789"), "no token in the error: {err}");
    }
}

#[test]
fn destination_ids_are_written_or_derived_and_never_repeat() {
    let mut destinations = vec![
        DestinationRequest {
            preset: Some("youtube".into()),
            ..DestinationRequest::default()
        },
        DestinationRequest {
            id: Some("youtube".into()),
            preset: Some("twitch".into()),
            ..DestinationRequest::default()
        },
        DestinationRequest {
            url: Some("rtmp://h/a/b".into()),
            ..DestinationRequest::default()
        },
    ];
    assign_ids(&mut destinations).unwrap();
    let ids: Vec<_> = destinations.iter().map(|d| d.id.clone().unwrap()).collect();
    assert_eq!(ids, ["youtube-2", "youtube", "custom"]);
    let mut twice = vec![destinations[1].clone(), destinations[1].clone()];
    assert!(
        assign_ids(&mut twice)
            .unwrap_err()
            .contains("two destinations")
    );
    let mut bad = vec![DestinationRequest {
        id: Some("a/b".into()),
        ..DestinationRequest::default()
    }];
    assert!(assign_ids(&mut bad).is_err());
}
