//! Faults at the destinations and in the publisher's clock: each ends in the right
//! state with a clear error, and disturbs no other destination and not the
//! publisher.

mod common;

use std::time::Duration;

use common::sinks::{Ending, NginxSink, StunnelFront, recording_framemd5};
use common::*;
use prism::Config;
use prism::relay::status::{DestinationSnapshot, State};

const WAIT: Duration = Duration::from_secs(20);

fn quick(config: &mut Config) {
    config.relay.backoff_initial_ms = 100;
    config.relay.backoff_max_secs = 1;
    config.relay.connect_timeout_secs = 1;
}

async fn wait_for(
    prism: &Prism,
    name: &str,
    id: &str,
    what: &str,
    check: impl Fn(&DestinationSnapshot) -> bool,
) -> DestinationSnapshot {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let relay = prism.app.as_ref().unwrap().relay();
        if let Some(d) = relay
            .destinations("live", name)
            .into_iter()
            .find(|d| d.id == id)
            && check(&d)
        {
            return d;
        }
        assert!(tokio::time::Instant::now() < deadline, "{id}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_ingest_and_a_wrong_certificate_fail_alone() {
    // Accepts TCP, then never answers the handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(3).collect();
        std::thread::sleep(Duration::from_secs(30));
        drop(held);
    });
    // RTMPS with a certificate prism does not trust (no tls.ca_file).
    let facebook = NginxSink::start("rtmp").await;
    let untrusted = StunnelFront::start(facebook.port()).await;
    let twitch = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", format!("rtmp://{silent_addr}/live2"));
        point_preset(c, "facebook", untrusted.url("rtmp"));
        point_preset(c, "twitch", twitch.url());
        quick(c);
    })
    .await;
    let clip = clip(8);
    let publisher = publish(
        &clip,
        &prism.url("live/faults?youtube=yt-f&facebook=fb-f&twitch=tw-f"),
    );
    let yt = wait_for(
        &prism,
        "faults",
        "youtube",
        "times out in the handshake",
        |d| {
            d.last_error
                .as_deref()
                .is_some_and(|e| e.contains("not publishing after"))
        },
    )
    .await;
    assert!(
        matches!(yt.state, State::Backoff | State::Connecting),
        "{yt:?}"
    );
    let fb = wait_for(
        &prism,
        "faults",
        "facebook",
        "refuses the certificate",
        |d| {
            d.last_error
                .as_deref()
                .is_some_and(|e| e.contains("certificate"))
        },
    )
    .await;
    assert!(
        matches!(fb.state, State::Backoff | State::Connecting),
        "{fb:?}"
    );
    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "the publisher never noticed: {exit}");
    assert!(twitch.saw_clean_unpublish("tw-f").await);
    let frames = recording_framemd5(&twitch.recording("tw-f"));
    assert_eq!(
        assert_source_from_keyframe(&clip, &frames),
        0,
        "twitch got every packet"
    );
    assert!(
        facebook.publishes("fb-f").is_empty(),
        "nothing reached the untrusted ingest"
    );
    prism.stop().await;
    drop(holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_killed_ten_times_reconnects_ten_times_and_the_others_lose_nothing() {
    let mut youtube = NginxSink::start("live2").await;
    let twitch = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        point_preset(c, "twitch", twitch.url());
        quick(c);
    })
    .await;
    let clip = clip(30);
    let publisher = publish(
        &clip,
        &prism.url("live/tenkills?youtube=yt-ten&twitch=tw-ten"),
    );
    youtube.wait_publishing("yt-ten", WAIT).await;
    for round in 1..=10u64 {
        youtube.kill();
        youtube.restart().await;
        youtube.wait_publishing("yt-ten", WAIT).await;
        wait_for(&prism, "tenkills", "youtube", "live again", |d| {
            d.state == State::Live && d.reconnects >= round
        })
        .await;
    }
    let yt = wait_for(&prism, "tenkills", "youtube", "counted", |_| true).await;
    assert!(yt.reconnects >= 10, "{yt:?}");
    let (exit, _) = finish(publisher).await;
    assert!(
        exit.success(),
        "the publisher was never disconnected: {exit}"
    );
    assert!(twitch.saw_clean_unpublish("tw-ten").await);
    let frames = recording_framemd5(&twitch.recording("tw-ten"));
    assert_eq!(
        assert_source_from_keyframe(&clip, &frames),
        0,
        "twitch got every packet"
    );
    prism.stop().await;
}

/// An ingest that stops reading (its socket buffers full) is dropped once a write has
/// waited `stall_timeout`, with that reason in the status and the log, and reconnected
/// once it reads again; the other destination and the publisher never notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_that_stops_reading_is_dropped_after_the_stall_timeout_and_reconnected() {
    let mut youtube = NginxSink::start("live2").await;
    let twitch = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        point_preset(c, "twitch", twitch.url());
        quick(c);
        c.relay.stall_timeout_secs = 2;
    })
    .await;
    let clip = heavy_clip(30);
    let publisher = publish(
        &clip,
        &prism.url("live/stalls?youtube=yt-stalls&twitch=tw-stalls"),
    );
    youtube.wait_recording("yt-stalls", 100_000, WAIT).await;
    youtube.stop_reading().await;
    // Filling the socket buffers (a few MB at 4 Mbit/s) takes a while; then the
    // write waits 2 s and the connection is dropped.
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    while !captured_logs().contains("ingest did not read for 2s") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled ingest was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    youtube.resume();
    let yt = wait_for(&prism, "stalls", "youtube", "live again", |d| {
        d.state == State::Live && d.reconnects >= 1
    })
    .await;
    assert!(
        yt.last_error.is_some(),
        "the failure is in the status: {yt:?}"
    );

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "the publisher was never held back: {exit}");
    assert!(twitch.saw_clean_unpublish("tw-stalls").await);
    let frames = recording_framemd5(&twitch.recording("tw-stalls"));
    assert_eq!(
        assert_source_from_keyframe(&clip, &frames),
        0,
        "twitch got every packet"
    );
    assert!(
        youtube.saw_clean_unpublish("yt-stalls").await,
        "the new connection ends cleanly"
    );
    let publishes = youtube.publishes("yt-stalls");
    assert!(
        publishes.len() >= 2 && publishes[0].ending == Ending::Dropped,
        "the stalled connection was dropped, then another one published: {publishes:?}"
    );
    assert_logs_hide(&["yt-stalls", "tw-stalls"]);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_stay_monotonic_across_the_32_bit_wrap() {
    let youtube = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| point_preset(c, "youtube", youtube.url())).await;
    let player = play_framemd5(&prism.url("live/wrap"));
    prism.wait_subscribers("live", "wrap", 1).await;
    let clip = test_flv();
    // The publisher's clock crosses 2^32 ms about 3 s into the clip.
    let offset = u32::MAX - 3_000;
    let publishing = tokio::spawn({
        let addr = prism.addr;
        let clip = clip.clone();
        async move {
            publish_with_timestamp_offset(addr, "live", "wrap?youtube=yt-wrap", &clip, offset).await
        }
    });
    publishing.await.unwrap();
    let (status, out) = finish(player).await;
    assert!(status.success());
    assert_eq!(
        assert_source_from_keyframe(&clip, &parse_framemd5(&out)),
        0,
        "the player got every packet"
    );
    assert!(youtube.saw_clean_unpublish("yt-wrap").await);
    let recording = youtube.recording("yt-wrap");
    assert_eq!(
        assert_source_from_keyframe(&clip, &recording_framemd5(&recording)),
        0
    );
    let dts = recording_dts(&recording);
    let mut last = std::collections::HashMap::new();
    for (index, ts) in dts {
        let previous = last.insert(index, ts).unwrap_or(i64::MIN);
        assert!(
            ts >= previous,
            "monotonic across the wrap: {previous} -> {ts}"
        );
    }
    assert!(
        last.values().all(|&ts| ts < 10_000),
        "rebased near 0, not near 2^32: {last:?}"
    );
    prism.stop().await;
}

/// Issue 19, item 10: an ingest that closes the connection right after the
/// publish command (nginx-rtmp whose `on_publish` check says no; many platforms
/// for a wrong key) is reported as a URL or key problem, not as a network drop,
/// and after three such closes it is retried as slowly as a refused key. The other
/// destination is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_that_closes_right_after_publish_is_reported_as_a_key_problem_and_slowed() {
    let refusing = NginxSink::start_refusing_publish("live2").await;
    let good = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        quick(c);
        point_preset(c, "youtube", refusing.url());
        point_preset(c, "twitch", good.url());
    })
    .await;
    let publisher = publish(
        &clip(20),
        &prism.url("live/closing?youtube=yt-wrong-key&twitch=tw-fine"),
    );
    let refused = wait_for(
        &prism,
        "closing",
        "youtube",
        "refused after quick closes",
        |d| d.state == State::Failed,
    )
    .await;
    assert_eq!(
        refused.last_error.as_deref(),
        Some(prism::relay::push::CLOSED_AFTER_PUBLISH),
        "named as a URL or key problem"
    );
    assert_eq!(
        refused.reconnects, 2,
        "three quick closes, then the slow retry"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = prism.destination("closing", "youtube").unwrap();
    assert_eq!(still.reconnects, 2, "no fast retries after that");
    let fine = prism.destination("closing", "twitch").unwrap();
    assert_eq!(
        fine.state,
        State::Live,
        "the other destination is untouched"
    );
    good.wait_recording("tw-fine", 20_000, WAIT).await;
    let _ = finish(publisher).await;
    assert_logs_hide(&["yt-wrong-key", "tw-fine"]);
    prism.stop().await;
}

/// Issue 19, item 9: each destination keeps its recent history (connect, live,
/// drop with the reason, backoff), in the API and on the dashboard, not only the
/// last error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destinations_history_shows_its_drop_with_the_reason_and_its_return() {
    let mut youtube = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        quick(c);
    })
    .await;
    let publisher = publish(&clip(20), &prism.url("live/history?youtube=yt-history"));
    youtube.wait_publishing("yt-history", WAIT).await;
    youtube.kill();
    youtube.restart().await;
    let back = wait_for(&prism, "history", "youtube", "live again", |d| {
        d.state == State::Live && d.reconnects >= 1
    })
    .await;
    let events: Vec<&str> = back.events.iter().map(|e| e.event).collect();
    let expected = [
        "connecting",
        "live",
        "dropped",
        "backoff",
        "connecting",
        "live",
    ];
    let mut at = 0;
    for event in &events {
        if at < expected.len() && *event == expected[at] {
            at += 1;
        }
    }
    assert_eq!(at, expected.len(), "in this order: {events:?}");
    let dropped = back.events.iter().find(|e| e.event == "dropped").unwrap();
    assert!(
        dropped.detail.as_deref().is_some_and(|d| !d.is_empty()),
        "{dropped:?}"
    );
    assert!(back.events.windows(2).all(|w| w[0].at <= w[1].at));
    let addr = prism.app.as_ref().unwrap().http_addr();
    let json = prism.streams_json().await;
    let api_events = json["streams"][0]["destinations"][0]["events"]
        .as_array()
        .unwrap();
    assert!(
        api_events
            .iter()
            .any(|e| e["event"] == "dropped" && e["detail"].is_string())
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("history-dashboard");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dom = chromium(&format!("http://{addr}/"), &dir, &["--dump-dom"]).await;
    assert!(
        dom.contains("History ("),
        "the dashboard has the history:\n{dom}"
    );
    assert!(dom.contains("<b>dropped</b>"), "and the drop in it:\n{dom}");
    assert!(!dom.contains("yt-history"), "no key on the dashboard");
    drop(publisher);
    prism.stop().await;
}
