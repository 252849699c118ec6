//! Several profiles of one stream from ONE ffmpeg: the destinations a publish
//! starts on different profiles get one process with one decode and one encode
//! per profile, each output at its own size; and a profile ffmpeg cannot run
//! takes down only the destinations on it (the process splits, one per
//! profile). Real ffmpeg publishers and encoders, real nginx-rtmp sinks, all on
//! 127.0.0.1; every process this file starts is stopped by PID.

mod common;

use std::time::Duration;

use common::sinks::{Ending, NginxSink, recording_framemd5};
use common::*;
use prism::relay::status::State;
use tokio::time::sleep;

/// A re-encoded destination may end a while after the publisher: the encoder
/// drains its backlog on a busy machine first.
const ENCODE_DRAIN: Duration = Duration::from_secs(40);

/// This process's ffmpeg children that read a stream from prism: PID and
/// command line (publishers read files, encoders `pipe:0`).
fn encoder_children() -> Vec<(u32, String)> {
    common::sinks::children_of(std::process::id())
        .into_iter()
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains("-i pipe:0").then_some((pid, cmdline))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_of_one_stream_come_from_one_ffmpeg() {
    let youtube = NginxSink::start("live2").await;
    let twitch = NginxSink::start("app").await;
    let kick = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        point_preset(c, "twitch", twitch.url());
        point_preset(c, "kick", kick.url());
        c.profiles.insert("120p".into(), light_profile(120, 200));
        c.profiles.insert("90p".into(), light_profile(90, 150));
    })
    .await;
    let clip = clip(12);
    let publisher = publish(
        &clip,
        &prism.url(
            "live/groups?youtube=yt-groups&twitch=tw-groups&twitch_profile=120p\
             &kick=kk-groups&kick_profile=90p",
        ),
    );
    let mut pids = Vec::new();
    for id in ["twitch", "kick"] {
        let d = prism
            .wait_destination("groups", id, "its encoder runs", |d| {
                encoder_pid(d).is_some()
            })
            .await;
        pids.push(encoder_pid(&d).unwrap());
    }
    assert_eq!(pids[0], pids[1], "one process for both profiles");
    let encoders = encoder_children();
    assert_eq!(encoders.len(), 1, "one ffmpeg child: {encoders:?}");
    let (pid, cmdline) = &encoders[0];
    assert_eq!(*pid, pids[0]);
    // One input, two outputs: one decode, one encode per profile.
    assert_eq!(cmdline.matches(" -i ").count(), 1, "{cmdline}");
    assert!(
        cmdline.contains("pipe:3") && cmdline.contains("pipe:4"),
        "{cmdline}"
    );

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "publisher: {exit}");
    assert!(youtube.saw_clean_unpublish("yt-groups").await);
    let frames = recording_framemd5(&youtube.recording("yt-groups"));
    assert_eq!(
        assert_source_from_keyframe(&clip, &frames),
        0,
        "the passthrough got every packet from the first keyframe"
    );
    for (sink, key, height) in [(&twitch, "tw-groups", 120), (&kick, "kk-groups", 90)] {
        assert_eq!(
            sink.wait_unpublished(key, ENCODE_DRAIN).await,
            Ending::Clean,
            "{key}"
        );
        let video = ffprobe_video(&sink.recording(key));
        assert_eq!(video.codec, "h264", "{key}: {video:?}");
        assert_eq!(video.height, height, "{key}: {video:?}");
        // The whole 12 s clip, give or take the encoder's start.
        assert!(video.frames >= 10 * 30, "{key}: {video:?}");
        assert!(video.keyframes.len() >= 5, "{key}: {video:?}");
    }
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_ffmpeg_cannot_run_fails_only_its_destinations() {
    let youtube = NginxSink::start("live2").await;
    let twitch = NginxSink::start("app").await;
    let kick = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        point_preset(c, "twitch", twitch.url());
        point_preset(c, "kick", kick.url());
        c.transcode.restart_backoff_ms = 200;
        c.profiles.insert("120p".into(), light_profile(120, 200));
        // An encoder this ffmpeg does not have: every run fails at once.
        let mut broken = light_profile(90, 150);
        broken.args[1] = "no_such_encoder".into();
        c.profiles.insert("broken".into(), broken);
    })
    .await;
    let clip = clip(20);
    let publisher = publish(
        &clip,
        &prism.url(
            "live/split?youtube=yt-split&twitch=tw-split&twitch_profile=120p\
             &kick=kk-split&kick_profile=broken",
        ),
    );
    // The encoder of both profiles fails; split, the good profile goes live.
    prism
        .wait_destination("split", "twitch", "live on its own encoder", |d| {
            d.state == State::Live
        })
        .await;
    let kk = prism
        .wait_destination("split", "kick", "its encoder's error", |d| {
            d.encoder.is_some() && d.last_error.is_some()
        })
        .await;
    assert!(
        kk.last_error.as_deref().unwrap().contains("ffmpeg"),
        "{kk:#?}"
    );
    while prism.hub().is_live("live", "split") {
        if let Some(d) = prism.destination("split", "kick") {
            assert_ne!(d.state, State::Live, "a profile that cannot run: {d:#?}");
        }
        sleep(Duration::from_millis(100)).await;
    }

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "publisher: {exit}");
    assert!(youtube.saw_clean_unpublish("yt-split").await);
    let frames = recording_framemd5(&youtube.recording("yt-split"));
    assert_eq!(
        assert_source_from_keyframe(&clip, &frames),
        0,
        "the passthrough lost nothing"
    );
    assert_eq!(
        twitch.wait_unpublished("tw-split", ENCODE_DRAIN).await,
        Ending::Clean
    );
    let video = ffprobe_video(&twitch.recording("tw-split"));
    assert_eq!(video.height, 120, "{video:?}");
    // The split costs a few seconds at most: most of the 20 s arrived.
    assert!(video.frames >= 12 * 30, "{video:?}");
    assert!(
        kick.recordings("kk-split")
            .iter()
            .all(|r| { ffprobe_video_streams(r) == 0 })
    );
    prism.stop().await;
}

/// How many video streams a recording holds.
fn ffprobe_video_streams(path: &std::path::Path) -> usize {
    let probe = std::process::Command::new(require("ffprobe"))
        .args(["-v", "error", "-select_streams", "v"])
        .args(["-show_entries", "stream=index", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&probe.stdout).lines().count()
}
