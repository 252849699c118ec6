//! The relay against real ingest servers: nginx-rtmp sinks (`record all`), one
//! behind stunnel for RTMPS, fed by a real ffmpeg publisher through prism.
//! What each sink recorded is compared with the source packet by packet.

mod common;

use std::path::Path;
use std::time::Duration;

use common::sinks::{NginxSink, StunnelFront, process_rss_kib, recording_framemd5};
use common::*;
use prism::Config;
use prism::relay::status::State;

const WAIT: Duration = Duration::from_secs(20);

/// Fast retries so that reconnect tests take seconds, not minutes.
fn quick_backoff(config: &mut Config) {
    config.relay.backoff_initial_ms = 200;
    config.relay.backoff_max_secs = 2;
}

/// Video runs of `got` within the source: each maximal stretch of consecutive source
/// packets, as (first source index, length). Panics on a packet not in the source.
fn video_runs(source: &Path, got: &[Frame]) -> Vec<(usize, usize)> {
    let src: Vec<Frame> = framemd5_of_file(source)
        .into_iter()
        .filter(|f| f.stream == 0)
        .collect();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut next = None;
    for frame in got.iter().filter(|f| f.stream == 0) {
        let at = match next {
            Some(i) if i < src.len() && src[i] == *frame => i,
            _ => src
                .iter()
                .position(|f| f == frame)
                .expect("every packet comes from the source"),
        };
        match runs.last_mut() {
            Some((start, len)) if *start + *len == at => *len += 1,
            _ => runs.push((at, 1)),
        }
        next = Some(at + 1);
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_string_destinations_get_every_packet_over_rtmp_and_rtmps() {
    let youtube = NginxSink::start("live2").await;
    let twitch = NginxSink::start("app").await;
    let facebook = NginxSink::start("rtmp").await;
    let tls = StunnelFront::start(facebook.port()).await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        point_preset(c, "twitch", twitch.url());
        point_preset(c, "facebook", tls.url("rtmp"));
        c.tls.ca_file = Some(tls.ca_pem_path());
    })
    .await;
    let clip = test_flv();
    let keys = [
        "yt-secret-111",
        "live_222_twsecret",
        "FB-333-fbsecret",
        "publisher-secret",
    ];
    let url = prism.url(&format!(
        "live/{}?youtube={}&twitch={}&facebook={}",
        keys[3], keys[0], keys[1], keys[2]
    ));
    let publisher = publish(&clip, &url);
    prism.wait_live("live", keys[3]).await;
    youtube.wait_publishing(keys[0], WAIT).await;
    let status = prism
        .app
        .as_ref()
        .unwrap()
        .relay()
        .destinations("live", keys[3]);
    let ids: Vec<_> = status.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["youtube", "twitch", "facebook"]);
    for d in &status {
        assert!(
            !d.url.contains("secret"),
            "status URLs are masked: {}",
            d.url
        );
    }

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "publisher: {exit}");
    for (sink, key) in [
        (&youtube, keys[0]),
        (&twitch, keys[1]),
        (&facebook, keys[2]),
    ] {
        assert!(
            sink.saw_clean_unpublish(key).await,
            "{key}: FCUnpublish/deleteStream before close"
        );
        let frames = recording_framemd5(&sink.recording(key));
        assert_eq!(
            assert_source_from_keyframe(&clip, &frames),
            0,
            "{key}: from the first keyframe"
        );
    }
    assert_logs_hide(&keys);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_files_start_destinations_and_unknown_keys_are_refused() {
    let youtube = NginxSink::start("live2").await;
    let users =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("users-{}", std::process::id()));
    std::fs::create_dir_all(&users).unwrap();
    std::fs::write(
        users.join("alice.toml"),
        "stream_key = \"alice-key-1234\"\n[[destinations]]\npreset = \"youtube\"\nkey = \"alice-yt-key\"\n",
    )
    .unwrap();
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        c.users.dir = Some(users.clone());
    })
    .await;
    let clip = test_flv();

    let stranger = publish(&clip, &prism.url("live/not-a-user-key"));
    let (exit, _) = finish(stranger).await;
    assert!(!exit.success(), "an unknown key is refused");
    assert!(!prism.hub().is_live("live", "not-a-user-key"));

    let alice = publish(&clip, &prism.url("live/alice-key-1234"));
    let (exit, _) = finish(alice).await;
    assert!(exit.success(), "alice publishes: {exit}");
    assert!(youtube.saw_clean_unpublish("alice-yt-key").await);
    let frames = recording_framemd5(&youtube.recording("alice-yt-key"));
    assert_eq!(assert_source_from_keyframe(&clip, &frames), 0);
    assert_logs_hide(&["alice-key-1234", "alice-yt-key", "not-a-user-key"]);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sink_reconnects_and_the_others_lose_nothing() {
    let mut youtube = NginxSink::start("live2").await;
    let twitch = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        point_preset(c, "twitch", twitch.url());
        quick_backoff(c);
    })
    .await;
    let clip = clip(12);
    let publisher = publish(
        &clip,
        &prism.url("live/killtest?youtube=yt-kill&twitch=tw-kill"),
    );
    youtube.wait_recording("yt-kill", 20_000, WAIT).await;
    youtube.kill();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    youtube.restart().await;
    youtube.wait_publishing("yt-kill", WAIT).await;
    let relay = prism.app.as_ref().unwrap().relay();
    let yt = relay
        .destinations("live", "killtest")
        .into_iter()
        .find(|d| d.id == "youtube")
        .unwrap();
    assert!(yt.reconnects >= 1, "reconnects counted: {yt:?}");
    assert!(yt.last_error.is_some(), "the failure is recorded");
    assert!(!yt.last_error.as_deref().unwrap_or("").contains("yt-kill"));

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "the publisher never noticed: {exit}");
    assert!(twitch.saw_clean_unpublish("tw-kill").await);
    let frames = recording_framemd5(&twitch.recording("tw-kill"));
    assert_eq!(
        assert_source_from_keyframe(&clip, &frames),
        0,
        "twitch got every packet"
    );
    assert!(youtube.saw_clean_unpublish("yt-kill").await);
    let frames = recording_framemd5(&youtube.recording("yt-kill"));
    let start = assert_source_from_keyframe(&clip, &frames);
    assert!(
        start > 0,
        "after the restart youtube resumed from a later keyframe"
    );
    assert_logs_hide(&["yt-kill", "tw-kill", "killtest"]);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sink_drops_to_a_keyframe_while_the_others_keep_every_packet() {
    let mut youtube = NginxSink::start("live2").await;
    let twitch = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        point_preset(c, "twitch", twitch.url());
        c.hub.queue_max_bytes = 2 << 20;
    })
    .await;
    let clip = heavy_clip(30);
    let publisher = publish(
        &clip,
        &prism.url("live/stalltest?youtube=yt-stall&twitch=tw-stall"),
    );
    youtube.wait_recording("yt-stall", 100_000, WAIT).await;
    let rss_before = process_rss_kib(std::process::id());
    youtube.stop_reading().await;
    let mut rss_peak = rss_before;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_peak = rss_peak.max(process_rss_kib(std::process::id()));
    }
    youtube.resume();
    let relay = prism.app.as_ref().unwrap().relay();
    let yt = relay
        .destinations("live", "stalltest")
        .into_iter()
        .find(|d| d.id == "youtube")
        .unwrap();
    assert!(
        yt.dropped_frames > 0,
        "the stalled destination dropped frames: {yt:?}"
    );
    assert!(
        rss_peak < rss_before + 64 * 1024,
        "memory stays bounded while a sink stalls ({rss_before} KiB -> {rss_peak} KiB)"
    );

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "the publisher was never held back: {exit}");
    assert!(twitch.saw_clean_unpublish("tw-stall").await);
    let frames = recording_framemd5(&twitch.recording("tw-stall"));
    assert_eq!(
        assert_source_from_keyframe(&clip, &frames),
        0,
        "twitch got every packet"
    );

    assert!(youtube.saw_clean_unpublish("yt-stall").await);
    let frames = recording_framemd5(&youtube.recording("yt-stall"));
    let keyframes = keyframe_hashes(&clip);
    let source: Vec<Frame> = framemd5_of_file(&clip)
        .into_iter()
        .filter(|f| f.stream == 0)
        .collect();
    let runs = video_runs(&clip, &frames);
    assert!(runs.len() >= 2, "a gap where frames were dropped: {runs:?}");
    for (start, _) in &runs {
        assert!(
            keyframes.contains(&source[*start].hash),
            "every run starts on a keyframe: {runs:?}"
        );
    }
    let (last_start, last_len) = runs[runs.len() - 1];
    assert_eq!(
        last_start + last_len,
        source.len(),
        "it resumed and ran to the end"
    );
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_marked_failed_with_the_ingests_message() {
    // The ingest: another prism that only accepts its users' keys (it answers an
    // unknown key with NetStream.Publish.BadName, as platforms do).
    let users =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sink-users-{}", std::process::id()));
    std::fs::create_dir_all(&users).unwrap();
    std::fs::write(users.join("u.toml"), "stream_key = \"the-right-key\"\n").unwrap();
    let ingest = Prism::start_with(|c| c.users.dir = Some(users.clone())).await;
    let healthy = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", format!("rtmp://{}/live2", ingest.addr));
        point_preset(c, "twitch", healthy.url());
    })
    .await;
    let clip = test_flv();
    let publisher = publish(
        &clip,
        &prism.url("live/failtest?youtube=a-wrong-key&twitch=tw-ok"),
    );
    prism.wait_live("live", "failtest").await;
    // Polled until it exists and is failed: the stream is live in the hub a
    // moment before its relay has registered its destinations.
    let youtube = prism
        .wait_destination("failtest", "youtube", "marked failed", |d| {
            d.state == State::Failed
        })
        .await;
    let error = youtube.last_error.expect("the refusal is recorded");
    assert!(
        error.contains("NetStream.Publish.BadName"),
        "the ingest's code: {error}"
    );
    assert!(
        !error.contains("a-wrong-key"),
        "no key in the error: {error}"
    );
    // The healthy destination is live and measured while the other one failed.
    healthy.wait_publishing("tw-ok", WAIT).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let twitch = prism.destination("failtest", "twitch").unwrap();
    assert_eq!(twitch.state, State::Live);
    assert!(twitch.bitrate_bps > 0 && twitch.bytes_out > 0, "{twitch:?}");
    assert!(twitch.uptime_secs.is_some());

    let (exit, _) = finish(publisher).await;
    assert!(exit.success());
    assert!(healthy.saw_clean_unpublish("tw-ok").await);
    assert_logs_hide(&["a-wrong-key", "tw-ok", "the-right-key", "failtest"]);
    prism.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_drops_and_comes_back_within_the_grace_period_keeps_the_broadcast() {
    let youtube = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        c.relay.publisher_grace_secs = 4;
    })
    .await;
    let url = prism.url("live/gracetest?youtube=yt-grace");
    let mut first = publish(&clip(12), &url);
    youtube.wait_recording("yt-grace", 20_000, WAIT).await;
    // The encoder's connection drops without unpublishing (a network cut).
    first.start_kill().unwrap();
    let _ = first.wait().await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(
        prism.hub().is_live("live", "gracetest"),
        "live during the grace period"
    );
    let second = publish(&test_flv(), &url);
    let (exit, _) = finish(second).await;
    assert!(
        exit.success(),
        "the returning publisher is accepted: {exit}"
    );
    assert!(youtube.saw_clean_unpublish("yt-grace").await);
    assert_eq!(
        youtube.publishes("yt-grace").len(),
        1,
        "one broadcast, never interrupted at the ingest"
    );
    let frames = recording_framemd5(&youtube.recording("yt-grace"));
    let tail = framemd5_of_file(&test_flv());
    let tail_video: Vec<&Frame> = tail.iter().filter(|f| f.stream == 0).collect();
    let got_video: Vec<&Frame> = frames.iter().filter(|f| f.stream == 0).collect();
    assert!(
        got_video.len() > tail_video.len(),
        "both publishers' video is in the one recording"
    );
    assert_eq!(
        &got_video[got_video.len() - tail_video.len()..],
        &tail_video[..],
        "the second publisher's stream arrived whole"
    );
    let mut last = std::collections::HashMap::new();
    for (index, dts) in recording_dts(&youtube.recording("yt-grace")) {
        let previous = last.insert(index, dts).unwrap_or(i64::MIN);
        assert!(
            dts >= previous,
            "timestamps stay monotonic across the publisher's return"
        );
    }
    prism.stop().await;
}

/// The grace period's wait is a task in the shutdown tree: stopping prism while a
/// dropped publisher's stream is held ends the stream at once (not after the grace
/// period), the destination gets a clean unpublish, and shutdown waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_the_grace_period_ends_the_held_stream_promptly_and_cleanly() {
    let youtube = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        // Far longer than the shutdown's own deadline (5 s in `Prism::stop`).
        c.relay.publisher_grace_secs = 600;
    })
    .await;
    let mut publisher = publish(&clip(12), &prism.url("live/held?youtube=yt-held"));
    youtube.wait_recording("yt-held", 20_000, WAIT).await;
    // The encoder's connection drops without unpublishing (a network cut).
    publisher.start_kill().unwrap();
    let _ = publisher.wait().await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let hub = std::sync::Arc::clone(prism.hub());
    assert!(hub.is_live("live", "held"), "held for the grace period");
    // Panics unless every task, the grace period's among them, ended in time.
    prism.stop().await;
    assert!(
        !hub.is_live("live", "held"),
        "the held stream ended before shutdown returned"
    );
    assert!(
        youtube.saw_clean_unpublish("yt-held").await,
        "the destination got a clean unpublish"
    );
    assert_eq!(youtube.publishes("yt-held").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_grace_period_destinations_get_a_clean_unpublish() {
    let youtube = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        c.relay.publisher_grace_secs = 2;
    })
    .await;
    let mut publisher = publish(&clip(12), &prism.url("live/gone?youtube=yt-gone"));
    youtube.wait_recording("yt-gone", 20_000, WAIT).await;
    publisher.start_kill().unwrap();
    let _ = publisher.wait().await;
    let dropped_at = tokio::time::Instant::now();
    assert!(
        youtube.saw_clean_unpublish("yt-gone").await,
        "a clean end after the grace period"
    );
    assert!(
        dropped_at.elapsed() >= Duration::from_millis(1_500),
        "not before the grace period"
    );
    assert!(!prism.hub().is_live("live", "gone"));
    prism.stop().await;
}
