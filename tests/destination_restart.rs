//! Restarting a live destination through the API (what the dashboard's Restart
//! button does), for a re-encoded destination: the old session unpublishes
//! cleanly, a new one goes live on the stream's encoder for its profile (shared,
//! so a restart of one destination never restarts the encoder others use) and
//! stays live, and the passthrough destinations of the same stream never notice. Real ffmpeg
//! publisher and encoders, real nginx-rtmp sinks, the real prism's HTTP API,
//! everything on 127.0.0.1; every process this file starts is stopped by PID.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::sinks::{Ending, NginxSink, file_len, recording_framemd5};
use common::*;
use prism::relay::status::{DestinationSnapshot, State};
use tokio::time::{Instant, sleep};

const TOKEN: &str = "restart-token-0123456789";

/// Bound for anything the relay does on its own (connect, start an encoder).
const WAIT: Duration = Duration::from_secs(30);

/// Bound for a re-encoded destination to end once the publisher has: the encoder
/// may lag behind real time on a busy 2-core machine and drains its backlog first.
const ENCODE_DRAIN: Duration = Duration::from_secs(40);

/// How long a restarted destination must stay live to count as back: the bug
/// this guards against reported `live` for 32 ms, then ended for good.
const STAYS_LIVE: Duration = Duration::from_secs(4);

const POLL: Duration = Duration::from_millis(50);

/// 30 s of 640x360 30 fps H.264 (2 s GOPs) and AAC: long enough for two rounds of
/// restarts while the publisher is still sending.
fn clip_360p_30s() -> PathBuf {
    h264_clip(
        "restart-360p-30s.flv",
        30,
        "testsrc2=size=640x360:rate=30",
        "",
    )
}

/// Asserts that destination `id` stays `live` on the same session (same
/// reconnect count, same encoder) for [`STAYS_LIVE`].
async fn assert_stays_live(prism: &Prism, stream: &str, id: &str, live: &DestinationSnapshot) {
    let until = Instant::now() + STAYS_LIVE;
    while Instant::now() < until {
        let now = prism
            .destination(stream, id)
            .expect("the destination is still listed");
        assert!(
            now.state == State::Live
                && now.reconnects == live.reconnects
                && encoder_pid(&now) == encoder_pid(live),
            "{id} went live after the restart and then left it: {now:#?}"
        );
        sleep(POLL).await;
    }
}

/// `POST .../destinations/{id}/restart` on the stream with this key, by the
/// stream's id as the dashboard does; asserts the 204.
async fn restart(client: &reqwest::Client, prism: &Prism, key: &str, id: &str) {
    let app = prism.app.as_ref().unwrap();
    let stream_id = app
        .relay()
        .streams()
        .into_iter()
        .find(|s| s.key() == key)
        .expect("the stream is live")
        .id()
        .to_string();
    let response = client
        .post(format!(
            "http://{}/api/v1/streams/{stream_id}/destinations/{id}/restart",
            app.http_addr()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "restart {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_a_live_re_encoded_destination_brings_it_back_live() {
    let youtube = NginxSink::start("live2").await;
    let twitch = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        point_preset(c, "twitch", twitch.url());
        c.http.token = Some(TOKEN.to_owned());
    })
    .await;
    let client = http_client();
    let clip = clip_360p_30s();
    let publisher = publish(
        &clip,
        &prism.url("live/txrs?youtube=yt-txrs&twitch=tw-txrs&twitch_profile=720p30"),
    );

    let first = prism
        .wait_destination("txrs", "twitch", "live through its encoder", |d| {
            d.state == State::Live && encoder_pid(d).is_some()
        })
        .await;
    twitch.wait_recording("tw-txrs", 50_000, WAIT).await;
    youtube.wait_publishing("yt-txrs", WAIT).await;

    // The sink names a recording by the second its publish began (two publishes in
    // one second share a file): let that second pass, so the next session's
    // recording is a file of its own.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // One restart: the old session unpublishes cleanly; a new session goes live
    // on the same encoder (it is the profile's, not the session's) and stays live.
    restart(&client, &prism, "txrs", "twitch").await;
    let second = prism
        .wait_destination("txrs", "twitch", "live again", |d| {
            d.state == State::Live && d.reconnects == 1
        })
        .await;
    assert_stays_live(&prism, "txrs", "twitch", &second).await;
    let encoder = encoder_pid(&first).unwrap();
    assert_eq!(
        encoder_pid(&second),
        Some(encoder),
        "the same encoder: {second:#?}"
    );
    let publishes = twitch.publishes("tw-txrs");
    assert_eq!(publishes.len(), 2, "one publish per session: {publishes:?}");
    assert_eq!(publishes[0].ending, Ending::Clean, "{publishes:?}");
    assert_eq!(publishes[1].ending, Ending::Live, "{publishes:?}");
    // The second publish carries media that decodes as the profile's output.
    let recording = twitch.wait_recording("tw-txrs", 50_000, WAIT).await;
    assert_eq!(twitch.recordings("tw-txrs").len(), 2, "two recordings");
    let video = ffprobe_video(&recording);
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("h264", 1280, 720),
        "{video:?}"
    );
    assert!(video.frames >= 30, "a second of video or more: {video:?}");

    // Twice in a row: the second restart lands while the first one's session
    // waits for its encoder. The destination ends up live, once.
    restart(&client, &prism, "txrs", "twitch").await;
    restart(&client, &prism, "txrs", "twitch").await;
    let third = prism
        .wait_destination("txrs", "twitch", "live after two restarts", |d| {
            d.state == State::Live && d.reconnects == 3
        })
        .await;
    assert_stays_live(&prism, "txrs", "twitch", &third).await;
    let publishes = twitch.publishes("tw-txrs");
    let live = publishes
        .iter()
        .filter(|p| p.ending == Ending::Live)
        .count();
    assert_eq!(live, 1, "one live session at the ingest: {publishes:?}");
    assert_eq!(publishes.last().unwrap().ending, Ending::Live);
    let latest = twitch.recording("tw-txrs");
    let before = file_len(&latest);
    let deadline = Instant::now() + WAIT;
    while file_len(&latest) < before + 50_000 {
        assert!(
            Instant::now() < deadline,
            "the restarted session's recording stopped growing at {before} bytes"
        );
        sleep(POLL).await;
    }

    // The passthrough destination never noticed: one publish, every packet.
    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "the publisher never noticed: {exit}");
    assert!(
        youtube.saw_clean_unpublish("yt-txrs").await,
        "youtube: a clean unpublish"
    );
    assert_eq!(
        youtube.publishes("yt-txrs").len(),
        1,
        "youtube published once"
    );
    let frames = recording_framemd5(&youtube.recording("yt-txrs"));
    assert_eq!(
        assert_source_from_keyframe(&clip, &frames),
        0,
        "the passthrough got every packet across the restarts"
    );
    assert_eq!(
        twitch.wait_unpublished("tw-txrs", ENCODE_DRAIN).await,
        Ending::Clean,
        "twitch: a clean unpublish once the encoder drained"
    );
    assert_logs_hide(&["yt-txrs", "tw-txrs"]);
    prism.stop().await;
}
