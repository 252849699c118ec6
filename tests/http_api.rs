//! The status and control API against a real relay run: ffmpeg publishing,
//! nginx-rtmp sinks receiving, the JSON, the control endpoints and /metrics read
//! over real HTTP.

mod common;

use std::time::Duration;

use common::sinks::NginxSink;
use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

fn api(prism: &Prism, path: &str) -> String {
    format!("http://{}{path}", prism.app.as_ref().unwrap().http_addr())
}

async fn streams(client: &reqwest::Client, prism: &Prism) -> Value {
    let response = client
        .get(api(prism, "/api/v1/streams"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// `/metrics` as text and parsed as the Prometheus text format (which it must be).
async fn scrape(client: &reqwest::Client, prism: &Prism) -> (String, prometheus_parse::Scrape) {
    let text = client
        .get(api(prism, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format");
    (text, scrape)
}

/// `POST` of a destination request to a stream's destinations, with the token.
async fn add_destination(client: &reqwest::Client, url: &str, body: &Value) -> reqwest::Response {
    client
        .post(url)
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn destination<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["streams"][0]["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("no destination {id} in {list}"))
}

/// Polls the stream list until `check` holds.
async fn until(
    client: &reqwest::Client,
    prism: &Prism,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = streams(client, prism).await;
        if check(&list) {
            return list;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {list:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_every_leg_and_control_adds_and_removes_destinations() {
    let youtube = NginxSink::start("live2").await;
    let mut twitch = NginxSink::start("app").await;
    let facebook = NginxSink::start("rtmp").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        point_preset(c, "twitch", twitch.url());
        point_preset(c, "facebook", facebook.url());
        c.relay.backoff_initial_ms = 200;
        c.relay.backoff_max_secs = 2;
        c.http.token = Some(TOKEN.to_owned());
    })
    .await;
    let client = common::http_client();
    let clip = clip(16);
    let keys = [
        "api-publisher-key",
        "api-yt-key",
        "api-tw-key",
        "api-fb-key",
    ];
    let url = prism.url(&format!(
        "live/{}?youtube={}&twitch={}",
        keys[0], keys[1], keys[2]
    ));
    let publisher = publish(&clip, &url);

    // Both legs live, with growing byte counts. Legs can be live before the
    // publisher's sequence headers arrive (connecting takes milliseconds), so wait
    // for the codecs too.
    let list = until(&client, &prism, "both live, codecs known", |l| {
        l["streams"][0]["destinations"]
            .as_array()
            .is_some_and(|d| d.len() == 2 && d.iter().all(|d| d["state"] == "live"))
            && l["streams"][0]["publisher"]["video"]["codec"].is_string()
            && l["streams"][0]["publisher"]["audio"]["codec"].is_string()
    })
    .await;
    let stream = &list["streams"][0];
    assert_eq!(stream["app"], "live");
    let name = stream["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("****"), "the key is masked: {name}");
    assert_eq!(stream["publisher"]["video"]["codec"], "h264");
    assert_eq!(stream["publisher"]["audio"]["codec"], "aac");
    let before = destination(&list, "youtube")["bytes_out"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let list = streams(&client, &prism).await;
    assert!(destination(&list, "youtube")["bytes_out"].as_u64().unwrap() > before);
    assert!(
        destination(&list, "youtube")["bitrate_bps"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(list["streams"][0]["publisher"]["video"]["width"], 320);

    // A killed sink: backoff or connecting with its error, then live again.
    twitch.kill();
    let list = until(&client, &prism, "twitch failing", |l| {
        let d = destination(l, "twitch");
        (d["state"] == "backoff" || d["state"] == "connecting") && !d["last_error"].is_null()
    })
    .await;
    assert!(destination(&list, "twitch")["last_error_at"].is_string());
    twitch.restart().await;
    until(&client, &prism, "twitch live again", |l| {
        let d = destination(l, "twitch");
        d["state"] == "live" && d["reconnects"].as_u64().unwrap_or(0) >= 1
    })
    .await;

    // Control needs the token.
    let add_url = api(&prism, &format!("/api/v1/streams/live/{name}/destinations"));
    let body = serde_json::json!({ "preset": "facebook", "key": keys[3] });
    let response = client.post(&add_url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 401, "missing token refused");
    let response = client
        .post(&add_url)
        .bearer_auth("wrong-token-000000000")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "wrong token refused");
    let response = client
        .post(&add_url)
        .bearer_auth(TOKEN)
        .body("not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    // Checked like a user file's destination: the same rules, the same reasons.
    for (invalid, reason) in [
        (json!({"preset": "facebook"}), "a preset needs a key"),
        (json!({"preset": "facebook", "key": ""}), "the key is empty"),
        (
            json!({"preset": "nope", "key": "k"}),
            "unknown preset `nope`",
        ),
        (
            json!({"preset": "facebook", "key": "k", "profile": "nope"}),
            "unknown profile `nope`",
        ),
    ] {
        let response = add_destination(&client, &add_url, &invalid).await;
        assert_eq!(response.status(), 422, "{invalid}");
        let error = response.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(error.contains(reason), "{invalid}: {error}");
    }

    // Add facebook: it goes live.
    let response = add_destination(&client, &add_url, &body).await;
    assert_eq!(response.status(), 201);
    let added: Value = response.json().await.unwrap();
    assert_eq!(added["id"], "facebook");
    facebook.wait_publishing(keys[3], WAIT).await;
    let response = add_destination(&client, &add_url, &body).await;
    assert_eq!(response.status(), 409, "the same destination twice");

    // Remove youtube: a clean unpublish there, the others go on.
    let remove_url = api(
        &prism,
        &format!("/api/v1/streams/live/{name}/destinations/youtube"),
    );
    let response = client
        .delete(&remove_url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(
        youtube.saw_clean_unpublish(keys[1]).await,
        "removed with FCUnpublish/deleteStream"
    );
    let list = streams(&client, &prism).await;
    let ids: Vec<_> = list["streams"][0]["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    assert_eq!(ids, ["twitch", "facebook"]);
    let response = client
        .delete(&remove_url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // Metrics parse and carry the series, without keys.
    let (text, scrape) = scrape(&client, &prism).await;
    for series in [
        "prism_connections",
        "prism_streams",
        "prism_encoders",
        "prism_stream_bytes_in_total",
        "prism_destination_bytes_out_total",
        "prism_destination_bitrate_bps",
        "prism_destination_state",
        "prism_destination_dropped_frames_total",
        "prism_destination_reconnects_total",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == series),
            "{series} in {text}"
        );
    }
    let live = scrape.samples.iter().any(|s| {
        s.metric == "prism_destination_state"
            && s.labels.get("destination") == Some("facebook")
            && s.labels.get("state") == Some("live")
            && matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 1.0)
    });
    assert!(live, "facebook is live in the metrics");

    // Kick the publisher.
    let kick_url = api(&prism, &format!("/api/v1/streams/live/{name}"));
    let response = client
        .delete(&kick_url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (exit, _) = finish(publisher).await;
    assert!(
        !exit.success(),
        "the kicked publisher's connection was closed"
    );
    assert!(twitch.saw_clean_unpublish(keys[2]).await);
    assert!(facebook.saw_clean_unpublish(keys[3]).await);

    let everything = format!("{text}{list}{}", captured_logs());
    for key in keys {
        assert!(
            !everything.contains(key),
            "a key leaked into status, metrics or logs"
        );
    }
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_is_disabled_without_a_token_and_errors_are_json() {
    let prism = Prism::start().await;
    let client = common::http_client();
    let response = client.get(api(&prism, "/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = client.get(api(&prism, "/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("<html"));
    let response = client
        .get(api(&prism, "/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    let openapi: Value = response.json().await.unwrap();
    assert_eq!(openapi["openapi"], "3.0.3");
    let response = client
        .delete(api(&prism, "/api/v1/streams/live/x"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("[http] token"),
        "{error}"
    );
    let response = client
        .post(api(&prism, "/api/v1/reload"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "reload is control too");
    let response = client
        .get(api(&prism, "/api/v1/streams/live/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    let response = client.get(api(&prism, "/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        streams(&client, &prism).await,
        serde_json::json!({ "streams": [] })
    );
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_new_user_file_and_a_broken_one_keeps_the_old_configuration() {
    let sink = NginxSink::start("app").await;
    let users = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("api-reload-users-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&users);
    std::fs::create_dir_all(&users).unwrap();
    std::fs::write(users.join("a.toml"), "stream_key = \"reload-user-a-key\"\n").unwrap();
    let prism = Prism::start_with(|c| {
        c.users.dir = Some(users.clone());
        c.http.token = Some(TOKEN.to_owned());
    })
    .await;
    let client = common::http_client();
    let reload_url = api(&prism, "/api/v1/reload");
    let clip = clip(2);
    let publishes = |key: &str| {
        let child = publish(&clip, &prism.url(&format!("live/{key}")));
        async move { finish(child).await.0.success() }
    };

    let reload = || async {
        client
            .post(&reload_url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    };
    // Reload is a control endpoint.
    let response = client.post(&reload_url).send().await.unwrap();
    assert_eq!(response.status(), 401, "missing token refused");
    let response = client
        .post(&reload_url)
        .bearer_auth("wrong-token-000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "wrong token refused");

    assert!(publishes("reload-user-a-key").await, "user a publishes");
    assert!(
        !publishes("reload-user-b-key").await,
        "user b is not known yet"
    );

    // A new user file, with a destination: it applies to b's new stream.
    std::fs::write(
        users.join("b.toml"),
        format!(
            "stream_key = \"reload-user-b-key\"\n[[destinations]]\nurl = \"{}/reload-b-dest\"\n",
            sink.url()
        ),
    )
    .unwrap();
    let response = reload().await;
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["users"], 2, "{report}");
    assert_eq!(
        report["reloaded"],
        serde_json::json!(["presets", "users", "profiles", "auth"])
    );
    assert!(report["presets"].as_u64().unwrap() >= 5, "{report}");
    assert_eq!(report["auth_callback"], false, "{report}");
    assert_eq!(report["needs_restart"], serde_json::json!([]));
    assert!(publishes("reload-user-b-key").await, "user b publishes");
    assert!(
        sink.saw_clean_unpublish("reload-b-dest").await,
        "b's destination from the new file got the stream"
    );

    // A broken file: refused with its name, and the configuration before stays.
    std::fs::write(users.join("c.toml"), "stream_key = \"broken\n").unwrap();
    let response = reload().await;
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.unwrap();
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains("c.toml"),
        "names the broken file: {message}"
    );
    assert!(
        message.contains("previous configuration stays"),
        "{message}"
    );
    assert!(publishes("reload-user-a-key").await, "a still publishes");
    assert!(publishes("reload-user-b-key").await, "b still publishes");
    assert_logs_hide(&["reload-user-a-key", "reload-user-b-key", "reload-b-dest"]);
    prism.stop().await;
    let _ = std::fs::remove_dir_all(&users);
}

/// The `prism_stream_reconnecting` gauge of the only stream.
async fn reconnecting_gauge(client: &reqwest::Client, prism: &Prism) -> f64 {
    let (text, scrape) = scrape(client, prism).await;
    scrape
        .samples
        .iter()
        .find(|s| s.metric == "prism_stream_reconnecting")
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            ref other => panic!("a gauge: {other:?}"),
        })
        .unwrap_or_else(|| panic!("prism_stream_reconnecting in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_publisher_shows_reconnecting_with_live_destinations_until_one_takes_over() {
    let youtube = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        // Long enough that only the returning publisher ends the grace period.
        c.relay.publisher_grace_secs = 60;
    })
    .await;
    let client = common::http_client();
    let url = prism.url("live/reconnect-publisher-key?youtube=yt-reconnect-key");
    let mut first = publish(&clip(30), &url);
    let list = until(&client, &prism, "live", |l| {
        l["streams"][0]["state"] == "live" && destination(l, "youtube")["state"] == "live"
    })
    .await;
    let name = list["streams"][0]["name"].as_str().unwrap().to_owned();
    let id = list["streams"][0]["id"].as_str().unwrap().to_owned();
    youtube
        .wait_recording("yt-reconnect-key", 20_000, WAIT)
        .await;
    assert_eq!(reconnecting_gauge(&client, &prism).await, 0.0);

    // The encoder's connection drops without unpublishing (SIGKILL).
    first.start_kill().unwrap();
    let _ = first.wait().await;
    let list = until(&client, &prism, "reconnecting", |l| {
        l["streams"][0]["state"] == "reconnecting"
    })
    .await;
    let stream = &list["streams"][0];
    assert_eq!(stream["name"], name.as_str(), "the same stream");
    assert!(stream["publisher"].is_null(), "no publisher: {stream}");
    assert!(stream["reconnecting_since"].is_string(), "{stream}");
    // The destination stays connected while it waits.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let list = streams(&client, &prism).await;
    assert_eq!(list["streams"][0]["state"], "reconnecting");
    assert_eq!(destination(&list, "youtube")["state"], "live");
    let one = client
        .get(api(&prism, &format!("/api/v1/streams/live/{name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200, "the stream is found by its name");
    assert_eq!(one.json::<Value>().await.unwrap()["state"], "reconnecting");
    assert_eq!(reconnecting_gauge(&client, &prism).await, 1.0);
    assert_eq!(
        youtube.publishes("yt-reconnect-key").last().unwrap().ending,
        common::sinks::Ending::Live,
        "the ingest still has the broadcast"
    );

    // A new publisher takes the stream over: live again, same destination.
    let second = publish(&clip(6), &url);
    let list = until(&client, &prism, "live again", |l| {
        l["streams"][0]["state"] == "live" && !l["streams"][0]["publisher"].is_null()
    })
    .await;
    assert!(list["streams"][0]["reconnecting_since"].is_null());
    assert_eq!(
        list["streams"][0]["id"],
        id.as_str(),
        "the same stream id across the reconnect"
    );
    assert_eq!(destination(&list, "youtube")["state"], "live");
    assert_eq!(reconnecting_gauge(&client, &prism).await, 0.0);
    let (exit, _) = finish(second).await;
    assert!(exit.success(), "the returning publisher finished: {exit}");
    assert!(youtube.saw_clean_unpublish("yt-reconnect-key").await);
    assert_eq!(
        youtube.publishes("yt-reconnect-key").len(),
        1,
        "one broadcast at the ingest throughout"
    );
    until(&client, &prism, "gone", |l| {
        l["streams"].as_array().is_some_and(|s| s.is_empty())
    })
    .await;
    let everything = format!("{list}{}", captured_logs());
    for key in ["reconnect-publisher-key", "yt-reconnect-key"] {
        assert!(!everything.contains(key), "a key leaked");
    }
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_shows_in_the_status_and_the_metrics() {
    // A small queue, so that a subscriber that never reads overflows at once.
    let prism = Prism::start_with(|c| c.hub.queue_max_bytes = 64 * 1024).await;
    let client = common::http_client();
    let key = "falls-behind-key";
    let mut publisher = publish(&clip(30), &prism.url(&format!("live/{key}")));
    let list = until(&client, &prism, "live", |l| {
        l["streams"][0]["state"] == "live"
    })
    .await;
    assert_eq!(list["streams"][0]["drop_episodes"], 0, "no one fell behind");

    let stalled = prism.hub().subscribe("live", key).unwrap();
    let list = until(&client, &prism, "a drop episode", |l| {
        l["streams"][0]["drop_episodes"].as_u64() >= Some(1)
    })
    .await;
    assert!(
        stalled.dropped() > 0,
        "the stalled subscriber dropped frames"
    );
    let (text, scrape) = scrape(&client, &prism).await;
    let episodes = scrape
        .samples
        .iter()
        .find(|s| s.metric == "prism_stream_drop_episodes_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            ref other => panic!("a counter: {other:?}"),
        })
        .unwrap_or_else(|| panic!("prism_stream_drop_episodes_total in {text}"));
    assert!(episodes >= 1.0, "{text}");
    assert!(
        !format!("{text}{list}").contains(key),
        "the key stays out of status and metrics"
    );

    drop(stalled);
    publisher.kill().await.unwrap();
    prism.stop().await;
}
