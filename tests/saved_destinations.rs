//! Saved destinations through the API, against the real server: a user's
//! destinations are listed, added, switched off and removed through
//! `/api/v1/users/{user}/destinations`; the user file keeps its comments and
//! order; the next publish starts what the file now says (a real ffmpeg
//! publishing, real nginx-rtmp ingests receiving); `?apply_live=true` changes the
//! live stream at once, without it the live stream is left alone; concurrent
//! edits never lose one (a stale version is refused with 409) and the file is
//! never seen half-written; users' API tokens see and change only their own
//! streams and destinations.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::sinks::NginxSink;
use common::*;
use serde_json::{Value, json};

const ADMIN: &str = "saved-admin-token-0123456789";
const ALICE_TOKEN: &str = "alice-api-token-0123456789";
const BOB_TOKEN: &str = "bob-api-token-0123456789ab";
const ALICE_KEY: &str = "alice-stream-key-1";
const BOB_KEY: &str = "bob-stream-key-22";
const WAIT: Duration = Duration::from_secs(30);

const ALICE_FILE: &str = r#"# Alice's channel. This comment must survive every API edit.
stream_key = "alice-stream-key-1"
api_token = "alice-api-token-0123456789"

# The main channel
[[destinations]]
preset = "youtube"   # keep me too
key = "alice-yt-key-0001"
"#;

fn users_dir(test: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("saved-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("alice.toml"), ALICE_FILE).unwrap();
    std::fs::write(
        dir.join("bob.toml"),
        format!("stream_key = \"{BOB_KEY}\"\napi_token = \"{BOB_TOKEN}\"\n"),
    )
    .unwrap();
    dir
}

async fn start(users: &Path, sink: Option<&NginxSink>, protect_reads: bool) -> Prism {
    Prism::start_with(|c| {
        c.users.dir = Some(users.to_owned());
        c.http.token = Some(ADMIN.to_owned());
        c.http.protect_reads = protect_reads;
        if let Some(sink) = sink {
            for preset in ["youtube", "twitch", "kick"] {
                point_preset(c, preset, sink.url());
            }
        }
    })
    .await
}

fn api(prism: &Prism, path: &str) -> String {
    format!("http://{}{path}", prism.app.as_ref().unwrap().http_addr())
}

/// A request with `token`, its status, `ETag` and JSON body.
async fn call(
    prism: &Prism,
    method: reqwest::Method,
    path: &str,
    token: &str,
    version: Option<&str>,
    body: Option<Value>,
) -> (u16, Option<String>, Value) {
    let mut request = http_client()
        .request(method, api(prism, path))
        .bearer_auth(token);
    if let Some(version) = version {
        request = request.header("If-Match", format!("\"{version}\""));
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().trim_matches('"').to_owned());
    let text = response.text().await.unwrap();
    (
        status,
        etag,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn list(prism: &Prism, user: &str, token: &str) -> Value {
    let path = format!("/api/v1/users/{user}/destinations");
    let (status, etag, body) = call(prism, reqwest::Method::GET, &path, token, None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        etag.as_deref(),
        body["version"].as_str(),
        "ETag is the version"
    );
    body
}

fn ids(list: &Value) -> Vec<String> {
    list["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The ids of the live stream `live/<key>`'s destinations, from the relay.
fn live_ids(prism: &Prism, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = prism
        .app
        .as_ref()
        .unwrap()
        .relay()
        .destinations("live", key)
        .into_iter()
        .map(|d| d.id)
        .collect();
    ids.sort();
    ids
}

async fn wait_live_ids(prism: &Prism, key: &str, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = live_ids(prism, key);
        if now == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "live destinations {now:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_destinations_persist_and_reach_the_next_publish_and_the_live_stream_when_asked() {
    let sink = NginxSink::start("live").await;
    let users = users_dir("persist");
    let prism = start(&users, Some(&sink), false).await;
    let file = users.join("alice.toml");
    let path = "/api/v1/users/alice/destinations";
    use reqwest::Method;

    // The file's one destination, without its key.
    let first = list(&prism, "alice", ALICE_TOKEN).await;
    assert_eq!(ids(&first), ["youtube"]);
    assert_eq!(first["destinations"][0]["enabled"], true);
    assert!(!first.to_string().contains("alice-yt-key-0001"), "{first}");

    // Saved, not live: no stream yet.
    let twitch = json!({"preset": "twitch", "key": "alice-twitch-key-1"});
    let (status, _, added) =
        call(&prism, Method::POST, path, ALICE_TOKEN, None, Some(twitch)).await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["destination"]["id"], "twitch");
    assert!(!added.to_string().contains("alice-twitch-key-1"), "{added}");
    let text = std::fs::read_to_string(&file).unwrap();
    for kept in [
        "# Alice's channel. This comment must survive every API edit.",
        "# The main channel",
        "preset = \"youtube\"   # keep me too",
        "key = \"alice-twitch-key-1\"",
    ] {
        assert!(text.contains(kept), "{kept:?} missing:\n{text}");
    }
    assert!(text.find("alice-yt-key-0001") < text.find("alice-twitch-key-1"));

    // The next publish starts both.
    let publisher = publish(&clip(40), &prism.url(&format!("live/{ALICE_KEY}")));
    prism.wait_live("live", ALICE_KEY).await;
    wait_live_ids(&prism, ALICE_KEY, &["twitch", "youtube"]).await;
    sink.wait_publishing("alice-twitch-key-1", WAIT).await;
    sink.wait_publishing("alice-yt-key-0001", WAIT).await;

    // Added with apply_live: the live stream starts it now.
    let kick = json!({"preset": "kick", "key": "alice-kick-key-1", "profile": null});
    let (status, _, added) = call(
        &prism,
        Method::POST,
        &format!("{path}?apply_live=true"),
        ALICE_TOKEN,
        None,
        Some(kick),
    )
    .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["live"][0]["result"], "started", "{added}");
    wait_live_ids(&prism, ALICE_KEY, &["kick", "twitch", "youtube"]).await;
    sink.wait_publishing("alice-kick-key-1", WAIT).await;

    // Switched off with apply_live: stopped on the live stream, kept in the file.
    let (status, _, changed) = call(
        &prism,
        Method::PATCH,
        &format!("{path}/twitch?apply_live=true"),
        ALICE_TOKEN,
        None,
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["destination"]["enabled"], false);
    assert_eq!(changed["live"][0]["result"], "stopped", "{changed}");
    wait_live_ids(&prism, ALICE_KEY, &["kick", "youtube"]).await;
    assert!(sink.saw_clean_unpublish("alice-twitch-key-1").await);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("enabled = false")
    );

    // Removed without apply_live: the live stream keeps pushing to it.
    let (status, _, removed) = call(
        &prism,
        Method::DELETE,
        &format!("{path}/youtube"),
        ALICE_TOKEN,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{removed}");
    assert!(removed["live"].as_array().unwrap().is_empty());
    assert_eq!(live_ids(&prism, ALICE_KEY), ["kick", "youtube"]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("alice-yt-key-0001"), "{text}");
    assert!(text.contains("# Alice's channel. This comment must survive every API edit."));
    assert_eq!(
        ids(&list(&prism, "alice", ALICE_TOKEN).await),
        ["twitch", "kick"]
    );

    // The next publish starts what the file says now: kick only (twitch is off).
    stop_publisher(publisher).await;
    wait_stream_gone(&prism, ALICE_KEY).await;
    let publisher = publish(&clip(12), &prism.url(&format!("live/{ALICE_KEY}")));
    prism.wait_live("live", ALICE_KEY).await;
    wait_live_ids(&prism, ALICE_KEY, &["kick"]).await;
    stop_publisher(publisher).await;

    // And after a restart of prism, the same: the change was to the file.
    prism.stop().await;
    let prism = start(&users, Some(&sink), false).await;
    assert_eq!(ids(&list(&prism, "alice", ADMIN).await), ["twitch", "kick"]);
    prism.stop().await;

    assert_logs_hide(&[
        "alice-yt-key-0001",
        "alice-twitch-key-1",
        "alice-kick-key-1",
        ALICE_TOKEN,
        ADMIN,
    ]);
    let _ = std::fs::remove_dir_all(&users);
}

/// Stops a publisher (by its PID) and reaps it.
async fn stop_publisher(mut child: tokio::process::Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

async fn wait_stream_gone(prism: &Prism, key: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while prism.hub().is_live("live", key) || !live_ids(prism, key).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "stream never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_never_lose_one_and_the_file_is_never_half_written() {
    use reqwest::Method;
    let users = users_dir("cas");
    let prism = start(&users, None, false).await;
    let file = users.join("alice.toml");
    let path = "/api/v1/users/alice/destinations";

    // A reader that parses the file as fast as it can while the edits land:
    // with a temporary file and a rename, it never sees a partial one.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (file, stop) = (file.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = std::fs::read_to_string(&file).unwrap();
                let parsed: toml::Value = toml::from_str(&text)
                    .unwrap_or_else(|e| panic!("read a broken file: {e}\n{text}"));
                assert!(parsed.get("stream_key").is_some(), "{text}");
                reads += 1;
            }
            reads
        })
    };

    // Eight adds at once, none based on a version: every one lands.
    let mut adds = tokio::task::JoinSet::new();
    for i in 0..8 {
        let request = http_client()
            .post(api(&prism, path))
            .bearer_auth(ALICE_TOKEN)
            .json(&json!({"preset": "kick", "key": format!("alice-kick-key-{i}")}));
        adds.spawn(async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        });
    }
    while let Some(done) = adds.join_next().await {
        let (status, body) = done.unwrap();
        assert_eq!(status, 201, "{body}");
    }
    let now = list(&prism, "alice", ALICE_TOKEN).await;
    assert_eq!(now["destinations"].as_array().unwrap().len(), 9, "{now}");
    let text = std::fs::read_to_string(&file).unwrap();
    for i in 0..8 {
        assert!(text.contains(&format!("alice-kick-key-{i}")), "{text}");
    }

    // Two edits from the same version: one lands, the other is refused with 409
    // and the version it should have used.
    let version = now["version"].as_str().unwrap().to_owned();
    let (kick_path, kick2_path) = (format!("{path}/kick"), format!("{path}/kick-2"));
    let a = call(
        &prism,
        Method::PATCH,
        &kick_path,
        ALICE_TOKEN,
        Some(&version),
        Some(json!({"profile": "720p30"})),
    );
    let b = call(
        &prism,
        Method::PATCH,
        &kick2_path,
        ALICE_TOKEN,
        Some(&version),
        Some(json!({"enabled": false})),
    );
    let (a, b) = tokio::join!(a, b);
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let (winner, loser) = if a.0 == 200 { (a, b) } else { (b, a) };
    let current = list(&prism, "alice", ALICE_TOKEN).await;
    assert_eq!(winner.1.as_deref(), current["version"].as_str());
    let message = loser.2["error"].as_str().unwrap();
    assert!(
        message.contains(current["version"].as_str().unwrap()),
        "{message}"
    );

    // The reader stops before the hand edit below, which is not atomic.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);

    // A hand edit changes the version too: an edit based on the old one is refused.
    let old = current["version"].as_str().unwrap().to_owned();
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("# edited by hand\n");
    std::fs::write(&file, &text).unwrap();
    let (status, _, body) = call(
        &prism,
        Method::DELETE,
        &format!("{path}/kick-3"),
        ALICE_TOKEN,
        Some(&old),
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("alice-kick-key-")
    );

    // Refusals: each with its status, none quoting a key.
    let refusals = [
        (
            Method::POST,
            path.to_owned(),
            json!({"preset": "youtub", "key": "alice-secret-kk"}),
            422,
        ),
        (
            Method::POST,
            path.to_owned(),
            json!({"preset": "youtube", "key": "alice-yt-key-0001"}),
            409,
        ),
        (
            Method::POST,
            path.to_owned(),
            json!({"preset": "twitch", "key": "alice-secret-kk", "nope": 1}),
            400,
        ),
        (
            Method::PATCH,
            format!("{path}/missing"),
            json!({"enabled": false}),
            404,
        ),
        (
            Method::PATCH,
            format!("{path}/kick"),
            json!({"profile": "480p"}),
            422,
        ),
    ];
    for (method, path, body, want) in refusals {
        let (status, _, answer) = call(&prism, method, &path, ALICE_TOKEN, None, Some(body)).await;
        assert_eq!(status, want, "{path}: {answer}");
        assert!(!answer.to_string().contains("alice-secret-kk"), "{answer}");
    }

    let leftovers: Vec<_> = std::fs::read_dir(&users)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".toml"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    prism.stop().await;
    let _ = std::fs::remove_dir_all(&users);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_token_sees_and_changes_only_their_own_streams_and_destinations() {
    use reqwest::Method;
    let users = users_dir("tokens");
    let prism = start(&users, None, true).await;
    let alice = publish(&clip(30), &prism.url(&format!("live/{ALICE_KEY}")));
    let bob = publish(&clip(30), &prism.url(&format!("live/{BOB_KEY}")));
    prism.wait_live("live", ALICE_KEY).await;
    prism.wait_live("live", BOB_KEY).await;

    let streams = |token: &'static str| {
        let prism = &prism;
        async move {
            let (status, _, body) =
                call(prism, Method::GET, "/api/v1/streams", token, None, None).await;
            assert_eq!(status, 200, "{body}");
            let mut names: Vec<String> = body["streams"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_owned())
                .collect();
            names.sort();
            (names, body)
        }
    };
    let (all, body) = streams(ADMIN).await;
    assert_eq!(all, ["alice", "bob"]);
    let bob_id = body["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "bob")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(streams(ALICE_TOKEN).await.0, ["alice"]);
    assert_eq!(streams(BOB_TOKEN).await.0, ["bob"]);

    // Bob's stream does not exist for Alice's token, by id or by name.
    for (method, path) in [
        (Method::GET, format!("/api/v1/streams/{bob_id}")),
        (Method::GET, "/api/v1/streams/live/bob".to_owned()),
        (Method::DELETE, format!("/api/v1/streams/{bob_id}")),
        (
            Method::POST,
            format!("/api/v1/streams/{bob_id}/destinations/x/restart"),
        ),
        (Method::GET, "/api/v1/users/bob/destinations".to_owned()),
        (
            Method::DELETE,
            "/api/v1/users/bob/destinations/x".to_owned(),
        ),
    ] {
        let (status, _, body) = call(&prism, method.clone(), &path, ALICE_TOKEN, None, None).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    let (status, _, body) = call(
        &prism,
        Method::POST,
        "/api/v1/users/bob/destinations",
        ALICE_TOKEN,
        None,
        Some(json!({"preset": "twitch", "key": "alice-into-bob"})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        !std::fs::read_to_string(users.join("bob.toml"))
            .unwrap()
            .contains("alice-into-bob")
    );

    // Her own stream and user are hers to see and change.
    let (status, _, body) = call(
        &prism,
        Method::GET,
        "/api/v1/streams/live/alice",
        ALICE_TOKEN,
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, body["name"].as_str()),
        (200, Some("alice")),
        "{body}"
    );
    let (status, _, who) = call(
        &prism,
        Method::GET,
        "/api/v1/users",
        ALICE_TOKEN,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(who, json!({"access": "user", "users": ["alice"]}));
    let (_, _, who) = call(&prism, Method::GET, "/api/v1/users", ADMIN, None, None).await;
    assert_eq!(who["access"], "admin");
    assert_eq!(ids(&list(&prism, "bob", ADMIN).await), Vec::<String>::new());

    // Configuration-wide things are the admin's.
    let (status, _, body) = call(
        &prism,
        Method::POST,
        "/api/v1/reload",
        ALICE_TOKEN,
        None,
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let metrics = |token: Option<&'static str>| {
        let url = api(&prism, "/metrics");
        async move {
            let mut request = http_client().get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(metrics(Some(ALICE_TOKEN)).await, 403);
    assert_eq!(metrics(None).await, 401);
    assert_eq!(metrics(Some(ADMIN)).await, 200);

    // Without a token, or with a wrong one, nothing (reads are protected here).
    let (status, _, _) = call(
        &prism,
        Method::GET,
        "/api/v1/streams",
        "not-a-token-at-all",
        None,
        None,
    )
    .await;
    assert_eq!(status, 401);
    let response = http_client()
        .get(api(&prism, "/api/v1/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // Alice may kick her own publisher.
    let (status, _, body) = call(
        &prism,
        Method::DELETE,
        "/api/v1/streams/live/alice",
        ALICE_TOKEN,
        None,
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert!(prism.hub().is_live("live", BOB_KEY), "bob untouched");

    for child in [alice, bob] {
        stop_publisher(child).await;
    }
    prism.stop().await;
    assert_logs_hide(&[ALICE_TOKEN, BOB_TOKEN, ADMIN]);
    let _ = std::fs::remove_dir_all(&users);
}
