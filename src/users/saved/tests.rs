use std::collections::BTreeMap;
use std::path::Path;

use super::*;

fn presets() -> Presets {
    Presets::load(&BTreeMap::new()).unwrap()
}

const FILE: &str = r#"# Alice's channel: keep this comment.
stream_key = "alice-key-1"

# Main channel
[[destinations]]
preset = "youtube"   # the big one
key = "yt-key-aaaa"

[[destinations]]
url = "rtmp://example.com/live/custom-key"
profile = "720p30"

[standby]
enabled = true
"#;

fn edit(text: &str, edit: Edit) -> Result<(String, User, String), EditError> {
    apply(
        Path::new("/users/alice.toml"),
        text,
        &edit,
        &presets(),
        &Profiles::default_set(),
    )
}

fn request(preset: &str, key: &str) -> DestinationRequest {
    DestinationRequest {
        preset: Some(preset.into()),
        key: Some(key.into()),
        ..DestinationRequest::default()
    }
}

#[test]
fn adding_keeps_comments_order_and_other_settings() {
    let (text, user, id) = edit(FILE, Edit::Add(request("twitch", "live_tw_key"))).unwrap();
    assert_eq!(id, "twitch");
    for kept in [
        "# Alice's channel: keep this comment.",
        "# Main channel",
        "preset = \"youtube\"   # the big one",
        "[standby]\nenabled = true",
    ] {
        assert!(text.contains(kept), "{kept:?} lost:\n{text}");
    }
    let ids: Vec<_> = user
        .destinations
        .iter()
        .map(|d| d.id.clone().unwrap())
        .collect();
    assert_eq!(ids, ["youtube", "custom", "twitch"]);
    // Order of the entries in the text is the order of the list.
    let yt = text.find("yt-key-aaaa").unwrap();
    let custom = text.find("custom-key").unwrap();
    let twitch = text.find("live_tw_key").unwrap();
    assert!(yt < custom && custom < twitch, "{text}");
}

#[test]
fn ids_are_pinned_so_a_removal_renumbers_nothing() {
    let two = "stream_key = \"alice-key-1\"\n[[destinations]]\npreset = \"youtube\"\nkey = \"yt-key-1111\"\n\
               [[destinations]]\npreset = \"youtube\"\nkey = \"yt-key-2222\"\n";
    let (text, user, _) = edit(
        two,
        Edit::Remove {
            id: "youtube".into(),
        },
    )
    .unwrap();
    assert_eq!(user.destinations.len(), 1);
    assert_eq!(user.destinations[0].id.as_deref(), Some("youtube-2"));
    assert!(text.contains("id = \"youtube-2\""), "{text}");
    assert!(!text.contains("yt-key-1111"), "{text}");
}

#[test]
fn a_patch_changes_only_what_it_names() {
    let patch = DestinationPatch {
        enabled: Some(false),
        profile: Some(Some("1080p30".into())),
        ..DestinationPatch::default()
    };
    let (text, user, _) = edit(
        FILE,
        Edit::Update {
            id: "youtube".into(),
            patch,
        },
    )
    .unwrap();
    let yt = user.destination("youtube").unwrap();
    assert!(!yt.is_enabled());
    assert_eq!(yt.profile.as_deref(), Some("1080p30"));
    assert_eq!(yt.key.as_deref(), Some("yt-key-aaaa"));
    assert!(
        text.contains("preset = \"youtube\"   # the big one"),
        "{text}"
    );
    // Back on, and the profile removed with null.
    let patch: DestinationPatch =
        serde_json::from_str(r#"{"enabled": true, "profile": null}"#).unwrap();
    let (text, user, _) = edit(
        &text,
        Edit::Update {
            id: "youtube".into(),
            patch,
        },
    )
    .unwrap();
    let yt = user.destination("youtube").unwrap();
    assert!(yt.is_enabled() && yt.profile.is_none());
    assert!(!text.contains("enabled = false"), "{text}");
    // A URL replaces the preset and key.
    let patch: DestinationPatch =
        serde_json::from_str(r#"{"url": "rtmps://other.example/app/new-key-1"}"#).unwrap();
    let (text, user, _) = edit(
        &text,
        Edit::Update {
            id: "youtube".into(),
            patch,
        },
    )
    .unwrap();
    let yt = user.destination("youtube").unwrap();
    assert!(yt.preset.is_none() && yt.key.is_none() && yt.url.is_some());
    assert!(!text.contains("yt-key-aaaa"), "{text}");
}

#[test]
fn refused_edits_say_why_without_the_key() {
    let cases = [
        (
            Edit::Add(request("youtub", "secret-key-1")),
            "unknown preset",
        ),
        (
            Edit::Add(request("youtube", "yt-key-aaaa")),
            "already saved as `youtube`",
        ),
        (
            Edit::Add(DestinationRequest {
                id: Some("custom".into()),
                ..request("twitch", "secret-key-1")
            }),
            "already has the id `custom`",
        ),
        (
            Edit::Remove { id: "nope".into() },
            "no saved destination `nope`",
        ),
        (
            Edit::Update {
                id: "youtube".into(),
                patch: DestinationPatch {
                    profile: Some(Some("480p".into())),
                    ..DestinationPatch::default()
                },
            },
            "unknown profile",
        ),
        (
            Edit::Add(DestinationRequest {
                url: Some("http://example.com/live/secret-key-1".into()),
                ..DestinationRequest::default()
            }),
            "",
        ),
    ];
    for (change, expected) in cases {
        let err = edit(FILE, change).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains("secret-key-1"), "{err}");
    }
}

#[test]
fn inline_and_missing_destination_lists_are_edited_too() {
    let inline = "stream_key = \"alice-key-1\"\ndestinations = [{ preset = \"youtube\", key = \"yt-key-1111\" }]\n";
    let (text, user, _) = edit(inline, Edit::Add(request("twitch", "live_tw_key"))).unwrap();
    assert_eq!(user.destinations.len(), 2, "{text}");
    let bare = "stream_key = \"alice-key-1\"\n";
    let (text, user, id) = edit(bare, Edit::Add(request("kick", "kick-key-1"))).unwrap();
    assert_eq!(
        (user.destinations.len(), id.as_str()),
        (1, "kick"),
        "{text}"
    );
    assert!(text.starts_with("stream_key = \"alice-key-1\"\n"), "{text}");
}

#[test]
fn the_version_follows_the_bytes() {
    assert_eq!(version_of(b"a"), version_of(b"a"));
    assert_ne!(version_of(b"a"), version_of(b"b"));
    assert_eq!(version_of(b"").len(), 16);
}

#[test]
fn an_atomic_write_replaces_the_file_and_leaves_no_temporary() {
    let dir = std::env::temp_dir().join(format!("prism-saved-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("alice.toml");
    std::fs::write(&path, "old").unwrap();
    write_atomically(&path, "new").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["alice.toml"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
