//! Destination keys are held to the key rules wherever they come from: a real
//! ffmpeg publishes with destinations whose keys carry a newline, a NUL, `../`
//! and 3000 characters (and a passed-through parameter with a CRLF), beside one
//! valid destination, every preset pointed at one real nginx-rtmp. The valid one
//! gets every packet; nginx never sees the others; the status API says why each
//! was refused, without a key; the API refuses such keys with 422; a user file
//! with one stops prism at start with the file named.

mod common;

use std::path::Path;
use std::time::Duration;

use common::sinks::{NginxSink, recording_framemd5};
use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "keys-test-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

fn api(prism: &Prism, path: &str) -> String {
    format!("http://{}{path}", prism.app.as_ref().unwrap().http_addr())
}

async fn get_text(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.unwrap()
}

/// Every file nginx wrote (logs, recordings), as text: what a key that reached
/// it would be found in.
fn everything_nginx_wrote(sink: &NginxSink) -> String {
    let mut text = String::new();
    let mut dirs = vec![sink.dir().to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                text.push_str(&path.display().to_string());
                text.push('\n');
                text.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
            }
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_destination_keys_never_reach_the_ingest_and_say_why_in_the_status() {
    let sink = NginxSink::start("live").await;
    let prism = Prism::start_with(|c| {
        // Every preset, and two of the operator's own, lead to the same nginx:
        // whatever prism sends to any of them, nginx logs and records.
        for preset in [
            "youtube", "twitch", "facebook", "kick", "trovo", "rawnl", "mycdn",
        ] {
            point_preset(c, preset, sink.url());
        }
        c.http.token = Some(TOKEN.to_owned());
    })
    .await;
    let client = http_client();
    let clip = clip(12);

    let publisher_key = "kt-publisher-key";
    let good = "kt-good-twitch-key";
    let long = format!("kt-trovo-secret{}", "x".repeat(3000 - 15));
    assert_eq!(long.len(), 3000);
    // The secret part of each hostile key: none may reach nginx, the log, the
    // status or the metrics.
    let secrets = [
        "kt-yt-secret",
        "kt-fb-secret",
        "kt-kick-secret",
        "kt-trovo-secret",
        "kt-raw-secret",
        "kt-cdn-secret",
        "kt-injected",
    ];
    // ffmpeg sends the stream name as given (`-rtmp_playpath`: a URL's path is cut
    // at 1 KiB by ffmpeg, and the 3000-character key must arrive whole). The query
    // is percent-encoded as a publish URL is, except for one raw newline.
    let playpath = format!(
        "{publisher_key}?youtube=kt-yt-secret%0Anewline&facebook=kt-fb-secret%00nul\
         &kick=..%2F..%2Fkt-kick-secret&trovo={long}&twitch={good}\
         &rawnl=kt-raw-secret\nnewline\
         &mycdn=kt-cdn-secret&mycdn_s_bl=1%0D%0Akt-injected%3A%201"
    );
    let publisher = publish_with(
        &clip,
        &prism.url("live/placeholder"),
        &["-rtmp_playpath", &playpath],
    );
    prism.wait_live("live", publisher_key).await;
    sink.wait_publishing(good, WAIT).await;

    // The stream's warnings say, for each refused destination, which one and what
    // is wrong, and quote no key.
    let list: Value =
        serde_json::from_str(&get_text(&client, &api(&prism, "/api/v1/streams")).await).unwrap();
    let stream = &list["streams"][0];
    let warnings: Vec<&str> = stream["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    let control =
        "contains a control character (such as a newline or NUL); destination not started";
    assert_eq!(
        warnings,
        [
            format!("youtube: the key {control}"),
            format!("facebook: the key {control}"),
            "kick: the key contains a path separator ('/' or '\\'); destination not started"
                .to_owned(),
            "trovo: the key is 3000 bytes long, over the limit of 512; destination not started"
                .to_owned(),
            format!("rawnl: the key {control}"),
            format!("mycdn: the value of parameter `s_bl` {control}"),
        ],
        "{stream:#}"
    );
    let ids: Vec<&str> = stream["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["twitch"], "only the valid destination started");

    // The API's add-destination refuses such keys with 422 and the reason.
    let stream_id = stream["id"].as_str().unwrap();
    let add_url = api(&prism, &format!("/api/v1/streams/{stream_id}/destinations"));
    for (key, reason) in [
        (
            "kt-api-secret\nnewline",
            "the key contains a control character",
        ),
        ("kt-api-secret\0nul", "the key contains a control character"),
        ("../../kt-api-secret", "the key contains a path separator"),
        (
            long.as_str(),
            "the key is 3000 bytes long, over the limit of 512",
        ),
    ] {
        let response = client
            .post(&add_url)
            .bearer_auth(TOKEN)
            .json(&json!({"preset": "youtube", "key": key}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422);
        let body = response.text().await.unwrap();
        let error: Value = serde_json::from_str(&body).unwrap();
        let error = error["error"].as_str().unwrap();
        assert!(error.contains(reason), "{error}");
        assert!(
            !body.contains("kt-api-secret") && !body.contains("kt-trovo-secret"),
            "{body}"
        );
    }

    // While it runs: no key in the status or the metrics.
    let status = get_text(&client, &api(&prism, "/api/v1/streams")).await;
    let metrics = get_text(&client, &api(&prism, "/metrics")).await;
    for secret in secrets
        .iter()
        .chain(&["kt-api-secret", good, publisher_key])
    {
        assert!(!status.contains(secret), "a key in the status: {secret}");
        assert!(!metrics.contains(secret), "a key in the metrics: {secret}");
    }
    assert!(
        metrics.contains("destination=\"twitch\""),
        "the valid destination is in the metrics"
    );

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "the publisher never noticed: {exit}");
    assert!(sink.saw_clean_unpublish(good).await);
    let frames = recording_framemd5(&sink.recording(good));
    assert_eq!(
        assert_source_from_keyframe(&clip, &frames),
        0,
        "the valid destination got every packet"
    );

    // nginx saw exactly one publish, the valid one, and holds no other recording.
    let log = std::fs::read_to_string(sink.error_log()).unwrap();
    assert_eq!(
        log.matches("publish: name=").count(),
        1,
        "one publish reached nginx:\n{log}"
    );
    let publishes = sink.publishes(good);
    assert_eq!(publishes.len(), 1, "{publishes:?}");
    let recordings: Vec<String> = std::fs::read_dir(sink.dir().join("rec"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !recordings.is_empty() && recordings.iter().all(|r| r.starts_with(good)),
        "{recordings:?}"
    );
    let written = everything_nginx_wrote(&sink);
    for secret in &secrets {
        assert!(!written.contains(secret), "{secret} reached nginx");
    }

    // Logged once per publish, without a key.
    let logs = captured_logs();
    let line = logs
        .lines()
        .find(|l| l.contains("destinations: ") && l.contains("trovo: the key is 3000 bytes"))
        .expect("the publish's problems are logged");
    assert!(
        line.contains("kick: the key contains a path separator"),
        "{line}"
    );
    assert_logs_hide(&[&secrets[..], &["kt-api-secret", good, publisher_key]].concat());
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_file_with_a_bad_destination_key_stops_prism_at_start_naming_the_file() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("keys-users-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("mallory.toml"),
        "stream_key = \"mallory-key-123\"\n[[destinations]]\npreset = \"twitch\"\n\
         key = \"../kt-file-secret\\nX\"\n",
    )
    .unwrap();
    let config = dir.join("prism.toml");
    std::fs::write(
        &config,
        format!("[users]\ndir = {:?}\n", dir.display().to_string()),
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(["serve", "--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(CHILD_TIMEOUT, output)
        .await
        .expect("prism exits at start")
        .unwrap();
    assert!(!output.status.success(), "prism refused to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let file = dir.join("mallory.toml");
    assert!(
        stderr.contains(&format!(
            "user file {}: destination 1: the key contains a path separator",
            file.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("kt-file-secret"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The warnings of the only live stream, as the API shows them.
async fn stream_warnings(client: &reqwest::Client, prism: &Prism) -> (Value, Vec<String>) {
    let list: Value =
        serde_json::from_str(&get_text(client, &api(prism, "/api/v1/streams")).await).unwrap();
    let stream = list["streams"][0].clone();
    let warnings = stream["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no live stream: {list:#}"))
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect();
    (stream, warnings)
}

/// Issue 19, bug 3: a publish URL typed by hand, as a streamer does in OBS, with
/// four mistakes beside two good destinations: a profile that does not exist
/// (`youtube_profile=360p`), a misspelt preset (`youtub=KEY`), an empty key
/// (`kick=`) and a misspelt `_profile` (`facebook_profle=720p30`, which used to
/// be passed through onto the stream name). Each is refused, not started, with a
/// reason in the stream's warnings that quotes no key (and names the preset
/// meant), and the dashboard, rendered by headless Chromium, shows the same
/// lines; the good destinations go live and get every packet; nothing is left
/// retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistyped_query_destinations_are_refused_with_a_warning_and_the_rest_go_live() {
    let sink = NginxSink::start("live").await;
    let prism = Prism::start_with(|c| {
        for preset in ["youtube", "twitch", "trovo", "kick", "facebook"] {
            point_preset(c, preset, sink.url());
        }
    })
    .await;
    let client = http_client();
    // Long enough for two runs of Chromium while it is live.
    let clip = clip(20);

    let publisher_key = "mq-publisher-key";
    let twitch = "mq-good-twitch-key";
    let trovo = "mq-good-trovo-key";
    let secrets = ["mq-yt-secret", "mq-typo-secret", "mq-fb-secret"];
    let url = prism.url(&format!(
        "live/{publisher_key}?twitch={twitch}&youtube=mq-yt-secret&youtube_profile=360p\
         &youtub=mq-typo-secret&kick=&trovo={trovo}&facebook=mq-fb-secret&facebook_profle=720p30"
    ));
    let publisher = publish(&clip, &url);
    prism.wait_live("live", publisher_key).await;
    sink.wait_publishing(twitch, WAIT).await;
    sink.wait_publishing(trovo, WAIT).await;

    let (stream, warnings) = stream_warnings(&client, &prism).await;
    assert_eq!(
        warnings,
        [
            "ignored 1 unknown query parameter (`youtub` (did you mean `youtube`?)): it \
             names no preset, no destination started for it",
            "youtube: unknown profile (known: 1080p30, 480p30, 720p30, h264); destination not started",
            "kick: the key is empty; destination not started",
            "facebook: `facebook_profle` is not a parameter (did you mean \
             `facebook_profile`?); destination not started",
        ],
        "one warning per mistake: {stream:#}"
    );
    for warning in &warnings {
        for secret in secrets.iter().chain(&[twitch, trovo, publisher_key]) {
            assert!(!warning.contains(secret), "a key in a warning: {warning}");
        }
    }

    // Only the good destinations exist, and both are live (none left retrying).
    let destinations = stream["destinations"].as_array().unwrap();
    let mut ids: Vec<&str> = destinations
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["trovo", "twitch"], "{stream:#}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (stream, _) = stream_warnings(&client, &prism).await;
        let states: Vec<&str> = stream["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["state"].as_str().unwrap())
            .collect();
        let reconnects: Vec<u64> = stream["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["reconnects"].as_u64().unwrap())
            .collect();
        assert_eq!(reconnects, [0, 0], "none retries: {stream:#}");
        if states == ["live", "live"] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stream:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The dashboard shows the same warnings, as a real browser renders it (a
    // 390 px wide screenshot is kept as the test's artifact).
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("mistyped-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dashboard = api(&prism, "/");
    let dom = chromium(&dashboard, &dir, &["--dump-dom"]).await;
    let shown = dom
        .split("<ul class=\"warns\"")
        .nth(1)
        .and_then(|rest| rest.split("</ul>").next())
        .unwrap_or_else(|| panic!("no warnings list on the dashboard:\n{dom}"));
    for warning in &warnings {
        assert!(
            shown.contains(&format!("<li>{warning}</li>")),
            "the dashboard shows {warning:?}:\n{shown}"
        );
    }
    for secret in secrets.iter().chain(&[twitch, trovo, publisher_key]) {
        assert!(!dom.contains(secret), "a key on the dashboard: {secret}");
    }
    let screenshot = dir.join("dashboard-390.png");
    chromium(
        &dashboard,
        &dir,
        &[
            "--window-size=390,1400",
            &format!("--screenshot={}", screenshot.display()),
        ],
    )
    .await;
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 0);
    eprintln!("dashboard screenshot kept: {}", screenshot.display());
    let _ = std::fs::remove_dir_all(dir.join("profile"));

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "the publisher never noticed: {exit}");
    for good in [twitch, trovo] {
        assert!(sink.saw_clean_unpublish(good).await);
        let frames = recording_framemd5(&sink.recording(good));
        assert_eq!(
            assert_source_from_keyframe(&clip, &frames),
            0,
            "{good} got every packet"
        );
    }
    let log = std::fs::read_to_string(sink.error_log()).unwrap();
    assert_eq!(
        log.matches("publish: name=").count(),
        2,
        "only the two good destinations reached nginx:\n{log}"
    );
    let written = everything_nginx_wrote(&sink);
    for secret in &secrets {
        assert!(!written.contains(secret), "{secret} reached nginx");
    }
    assert_logs_hide(&[&secrets[..], &[twitch, trovo, publisher_key]].concat());
    prism.stop().await;
}

/// A streamer who fixes a typo in the publish URL and reconnects within the
/// grace period resumes the first publish's stream, whose destinations stay as
/// they were: that is said in the stream's warnings (quoting neither query),
/// not left silent, and the new query's destinations never reach an ingest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_back_within_its_grace_period_with_another_query_is_told_it_was_not_applied() {
    let sink = NginxSink::start("live").await;
    let prism = Prism::start_with(|c| {
        for preset in ["youtube", "twitch"] {
            point_preset(c, preset, sink.url());
        }
        // Far longer than the test: the second publish is a return, however slow.
        c.relay.publisher_grace_secs = 600;
    })
    .await;
    let client = http_client();
    let publisher_key = "gq-publisher-key";
    let twitch = "gq-good-twitch-key";
    let mut first = publish(
        &clip(12),
        &prism.url(&format!(
            "live/{publisher_key}?twitch={twitch}&youtub=gq-yt-secret"
        )),
    );
    sink.wait_publishing(twitch, WAIT).await;
    let (stream, warnings) = stream_warnings(&client, &prism).await;
    let id = stream["id"].as_str().unwrap().to_owned();
    assert_eq!(warnings.len(), 1, "the typo: {warnings:?}");

    // The encoder's connection drops (the streamer stops OBS), and it comes back
    // with the typo fixed.
    first.start_kill().unwrap();
    let _ = first.wait().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while stream_warnings(&client, &prism).await.0["state"] != "reconnecting" {
        assert!(tokio::time::Instant::now() < deadline, "never reconnecting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = publish(
        &clip(8),
        &prism.url(&format!(
            "live/{publisher_key}?twitch={twitch}&youtube=gq-yt-secret"
        )),
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    let (stream, warnings) = loop {
        let (stream, warnings) = stream_warnings(&client, &prism).await;
        if stream["state"] == "live" && warnings.len() > 1 {
            break (stream, warnings);
        }
        assert!(tokio::time::Instant::now() < deadline, "{stream:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stream["id"], id.as_str(), "the same stream, resumed");
    assert_eq!(
        warnings[1],
        "the publisher came back within its grace period with another query string in \
         its publish URL, which was not applied: the destinations of the first publish \
         continue (to change them, publish again once the stream has ended, or use the API)"
    );
    let ids: Vec<&str> = stream["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["twitch"], "{stream:#}");
    let status = get_text(&client, &api(&prism, "/api/v1/streams")).await;
    for key in ["gq-yt-secret", twitch, publisher_key] {
        assert!(!status.contains(key), "a key in the status: {key}");
    }

    let (exit, _) = finish(second).await;
    assert!(
        exit.success(),
        "the returning publisher was accepted: {exit}"
    );
    prism.stop().await;
    assert!(sink.saw_clean_unpublish(twitch).await);
    assert_eq!(sink.publishes(twitch).len(), 1, "one broadcast throughout");
    assert!(
        !everything_nginx_wrote(&sink).contains("gq-yt-secret"),
        "the new query's destination never reached the ingest"
    );
    assert_logs_hide(&["gq-yt-secret", twitch, publisher_key]);
}
