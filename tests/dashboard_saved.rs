//! The dashboard's sign-in and saved-destination editor, in a real browser:
//! Debian's Chromium driven by playwright-core (tests/browser/saved_destinations.js)
//! on a 390 px wide phone viewport, with the keyboard only. A user signs in with
//! their own API token, sees their own live stream and not another user's, adds a
//! destination, switches it off, changes its profile and removes another; the
//! user file says the same afterwards. Nothing overflows the phone's width, every
//! control has a name and a visible focus. Screenshots (390 px and 1280 px) are
//! kept under the test build directory, `target/tmp/artifacts/dashboard-saved/`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

const ADMIN: &str = "dash-admin-token-0123456789";
const ALICE_TOKEN: &str = "dash-alice-token-0123456789";
const ALICE_KEY: &str = "dash-alice-stream-key";
const BOB_KEY: &str = "dash-bob-stream-key";

/// Where npm installs global packages (playwright-core, by scripts/install-test-deps).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamer_signs_in_and_edits_saved_destinations_on_a_phone_with_the_keyboard() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let users = base.join(format!("dash-users-{}", std::process::id()));
    let artifacts = base.join("artifacts").join("dashboard-saved");
    let _ = std::fs::remove_dir_all(&users);
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&users).unwrap();
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(
        users.join("alice.toml"),
        format!(
            "# Alice's file\nstream_key = \"{ALICE_KEY}\"\napi_token = \"{ALICE_TOKEN}\"\n\n\
             [[destinations]]\npreset = \"youtube\"\nkey = \"dash-yt-key-0001\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        users.join("bob.toml"),
        format!("stream_key = \"{BOB_KEY}\"\n"),
    )
    .unwrap();
    let prism = Prism::start_with(|c| {
        c.users.dir = Some(users.clone());
        c.http.token = Some(ADMIN.to_owned());
        // The destinations go nowhere reachable: this test is about the editor.
        for preset in ["youtube", "twitch"] {
            point_preset(c, preset, "rtmp://127.0.0.1:9/live".into());
        }
    })
    .await;
    let alice = publish(&clip(30), &prism.url(&format!("live/{ALICE_KEY}")));
    let bob = publish(&clip(30), &prism.url(&format!("live/{BOB_KEY}")));
    prism.wait_live("live", ALICE_KEY).await;
    prism.wait_live("live", BOB_KEY).await;

    let http = prism.app.as_ref().unwrap().http_addr();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/saved_destinations.js");
    let run = tokio::process::Command::new(require("node"))
        .arg(&script)
        .arg(format!("http://{http}"))
        .arg(ALICE_TOKEN)
        .arg(&artifacts)
        .env("NODE_PATH", npm_root())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser run finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let seen: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap_or_else(|e| {
            panic!(
                "no report ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(output.status.success(), "browser run failed: {:#}", seen);
    assert_eq!(seen["errors"], serde_json::json!([]), "page errors");

    // Signed in as Alice: her stream, not Bob's (both showed before, reads being
    // open on this prism).
    assert_eq!(
        seen["streamsBefore"],
        serde_json::json!(["live/alice", "live/bob"])
    );
    assert_eq!(seen["signedInAs"], "Signed in: alice");
    assert_eq!(seen["streams"], serde_json::json!(["live/alice"]));
    // The edits, as the page showed them.
    assert_eq!(seen["ids"], serde_json::json!(["twitch"]));
    assert_eq!(seen["profilePicked"], "1080p30");
    assert_eq!(
        seen["twitchTags"],
        serde_json::json!(["re-encode 1080p30"]),
        "{seen:#}"
    );
    assert_eq!(
        seen["editFocus"], "password",
        "Edit puts the focus on the key field"
    );
    assert_eq!(seen["focusAfterAdd"], "sa-preset");
    // Usable on a phone: nothing wider than 390 px, no unnamed control, touch-sized
    // buttons, and the keyboard's focus is drawn.
    for layout in ["layoutSignedIn", "layoutEdited"] {
        let l = &seen[layout];
        assert!(l["scrollWidth"].as_u64().unwrap() <= 390, "{layout}: {l:#}");
        for list in ["outside", "small", "unnamed"] {
            assert_eq!(l[list], serde_json::json!([]), "{layout} {list}");
        }
    }
    for stop in seen["addStops"].as_array().unwrap() {
        assert_ne!(stop["outline"], "none", "focus not drawn on {stop}");
        assert_ne!(stop["name"], "", "a focus stop without a name: {stop}");
    }
    // No key on the page, ever.
    let html = seen["html"].as_str().unwrap();
    for secret in ["dash-yt-key-0001", "dash-twitch-key-1", ALICE_KEY, BOB_KEY] {
        assert!(!html.contains(secret), "{secret} on the page");
    }

    // The file says what the page did, its comment kept.
    let text = std::fs::read_to_string(users.join("alice.toml")).unwrap();
    assert!(text.starts_with("# Alice's file\n"), "{text}");
    assert!(!text.contains("dash-yt-key-0001"), "{text}");
    for line in [
        "preset = \"twitch\"",
        "key = \"dash-twitch-key-1\"",
        "enabled = false",
        "profile = \"1080p30\"",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    for shot in ["signed-in-390.png", "edited-390.png", "edited-1280.png"] {
        let size = std::fs::metadata(artifacts.join(shot)).map(|m| m.len());
        assert!(size.as_ref().is_ok_and(|n| *n > 10_000), "{shot}: {size:?}");
    }
    eprintln!("screenshots: {}", artifacts.display());

    for mut child in [alice, bob] {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    prism.stop().await;
    assert_logs_hide(&[ALICE_TOKEN, ADMIN, "dash-twitch-key-1", "dash-yt-key-0001"]);
    let _ = std::fs::remove_dir_all(&users);
}
