//! Ingest and local playback with real third-party clients: ffmpeg publishes and
//! plays, GStreamer's rtmp2sink publishes, rtmpdump plays. Packets are compared
//! with the source by hash (`-f framemd5`), timestamps aside.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_and_a_waiting_player_gets_every_packet() {
    let prism = Prism::start().await;
    let clip = test_flv();
    // The player connects first and waits for the stream, like an idle nginx-rtmp play.
    let player = play_framemd5(&prism.url("live/key1"));
    prism.wait_subscribers("live", "key1", 1).await;
    let publisher = publish(&clip, &prism.url("live/key1"));
    let (status, _) = finish(publisher).await;
    assert!(status.success(), "publisher exited cleanly: {status}");
    // The publisher's disconnect ends the player cleanly.
    let (status, out) = finish(player).await;
    assert!(status.success(), "player exited cleanly: {status}");
    let start = assert_source_from_keyframe(&clip, &parse_framemd5(&out));
    assert_eq!(
        start, 0,
        "a waiting player gets the stream from its first keyframe"
    );
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_player_starts_on_a_keyframe_and_two_players_play_at_once() {
    let prism = Prism::start().await;
    let clip = test_flv();
    let publisher = publish(&clip, &prism.url("live/key2"));
    prism.wait_live("live", "key2").await;
    let early = play_framemd5(&prism.url("live/key2"));
    // Join after the first keyframe interval (2 s) so the GOP cache is not the first GOP.
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let late = play_framemd5(&prism.url("live/key2"));
    prism.wait_subscribers("live", "key2", 2).await;
    let (status, _) = finish(publisher).await;
    assert!(status.success());
    let (early_status, early_out) = finish(early).await;
    let (late_status, late_out) = finish(late).await;
    assert!(early_status.success() && late_status.success());
    let early_start = assert_source_from_keyframe(&clip, &parse_framemd5(&early_out));
    let late_start = assert_source_from_keyframe(&clip, &parse_framemd5(&late_out));
    assert!(
        late_start > 0,
        "the late player joined a later GOP ({late_start})"
    );
    assert!(late_start >= early_start);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_string_in_the_stream_key_is_kept_apart_from_the_name() {
    // The query names relay destinations; keep them on loopback (port 9 is
    // "discard", nothing listens there) so that no test reaches for the internet.
    let prism = Prism::start_with(|c| {
        for preset in ["youtube", "twitch"] {
            c.presets.insert(
                preset.to_owned(),
                prism::presets::PresetOverride {
                    url: Some("rtmp://127.0.0.1:9/app".to_owned()),
                    ..Default::default()
                },
            );
        }
    })
    .await;
    let clip = test_flv();
    let publisher = publish(
        &clip,
        &prism.url("live/key3?youtube=yt-secret&twitch=tw-secret"),
    );
    prism.wait_live("live", "key3").await;
    let stream = prism
        .hub()
        .stream("live", "key3")
        .expect("live under its bare name");
    assert_eq!(stream.query(), "youtube=yt-secret&twitch=tw-secret");
    assert_eq!(prism.hub().live_streams().len(), 1);
    let player = play_framemd5(&prism.url("live/key3"));
    let (status, _) = finish(publisher).await;
    assert!(status.success());
    let (status, out) = finish(player).await;
    assert!(status.success());
    assert_source_from_keyframe(&clip, &parse_framemd5(&out));
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publisher_on_a_live_name_is_refused_and_the_first_goes_on() {
    let prism = Prism::start().await;
    let clip = test_flv();
    let player = play_framemd5(&prism.url("live/key4"));
    prism.wait_subscribers("live", "key4", 1).await;
    let first = publish(&clip, &prism.url("live/key4"));
    prism.wait_live("live", "key4").await;
    let second = publish(&clip, &prism.url("live/key4"));
    let (status, _) = finish(second).await;
    assert!(
        !status.success(),
        "the second publisher is refused (NetStream.Publish.BadName)"
    );
    let (status, _) = finish(first).await;
    assert!(status.success());
    let (status, out) = finish(player).await;
    assert!(status.success());
    assert_eq!(assert_source_from_keyframe(&clip, &parse_framemd5(&out)), 0);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_rtmp2sink_publishes() {
    let prism = Prism::start().await;
    let clip = test_flv();
    let player = play_framemd5(&prism.url("live/gst"));
    prism.wait_subscribers("live", "gst", 1).await;
    let location = format!("location={}", prism.url("live/gst"));
    let file = format!("location={}", clip.display());
    // Demux the clip and mux it again, so the packets stay the source's own.
    let gst = spawn(
        "gst-launch-1.0",
        &[
            "-q",
            "filesrc",
            &file,
            "!",
            "flvdemux",
            "name=d",
            "d.video",
            "!",
            "queue",
            "!",
            "h264parse",
            "!",
            "flvmux",
            "name=m",
            "streamable=true",
            "!",
            "rtmp2sink",
            &location,
            "d.audio",
            "!",
            "queue",
            "!",
            "aacparse",
            "!",
            "m.",
        ],
    );
    let (status, _) = finish(gst).await;
    assert!(status.success(), "gst-launch exited cleanly: {status}");
    let (status, out) = finish(player).await;
    assert!(status.success(), "player exited cleanly: {status}");
    let frames = parse_framemd5(&out);
    assert_eq!(assert_source_from_keyframe(&clip, &frames), 0);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmpdump_plays() {
    let prism = Prism::start().await;
    let clip = test_flv();
    let out_dir = tempdir();
    let recording = out_dir.join("rtmpdump.flv");
    let dump = spawn(
        "rtmpdump",
        &[
            "-q",
            "--live",
            "-r",
            &prism.url("live/dump"),
            "-o",
            recording.to_str().unwrap(),
        ],
    );
    prism.wait_subscribers("live", "dump", 1).await;
    let publisher = publish(&clip, &prism.url("live/dump"));
    let (status, _) = finish(publisher).await;
    assert!(status.success());
    let (status, _) = finish(dump).await;
    // rtmpdump reports a live stream that ended as "incomplete" (exit code 2).
    assert!(
        matches!(status.code(), Some(0) | Some(2)),
        "rtmpdump: {status}"
    );
    let frames = framemd5_of_file(&recording);
    assert_eq!(assert_source_from_keyframe(&clip, &frames), 0);
    prism.stop().await;
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "run-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
