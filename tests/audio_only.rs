//! Audio-only streams on platforms that need video: ffmpeg publishes AAC
//! without video; the destination whose preset needs video (YouTube's) gets a
//! generated picture (black, or an image per `[transcode] audio_only_video`)
//! with the audio exactly as published, while a destination that does not
//! need video gets the audio alone, untouched. nginx-rtmp ingests record both.

mod common;

use std::path::Path;
use std::time::Duration;

use common::sinks::{NginxSink, recording_framemd5};
use common::*;

const WAIT: Duration = Duration::from_secs(30);

/// 8 s of AAC at 48 kHz, no video.
fn audio_clip() -> std::path::PathBuf {
    generate(
        &require("ffmpeg"),
        "audio-only-8s.flv",
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=8",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
        ],
    )
}

/// The audio packets of a file (framemd5, stream 0).
fn audio_packets(file: &Path) -> Vec<Frame> {
    let out = std::process::Command::new(require("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(file)
        .args(["-map", "0:a", "-c", "copy", "-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "framemd5 of {file:?}");
    parse_framemd5(&String::from_utf8(out.stdout).unwrap())
}

/// The first `frames` decoded pictures of a file, as RGB bytes.
fn pictures_rgb(file: &Path, frames: u32) -> Vec<u8> {
    let out = std::process::Command::new(require("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(file)
        .args(["-map", "0:v", "-frames:v", &frames.to_string()])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "decoding {file:?}");
    out.stdout
}

/// Asserts the audio of `recording` is a run of the source's packets, at
/// least `share` of them (the start may be cut by the destination's start).
fn assert_audio_intact(source: &[Frame], recording: &Path, share: f64) {
    let got = audio_packets(recording);
    assert_contiguous_run(source, &got, 0);
    assert!(
        got.len() as f64 >= share * source.len() as f64,
        "{} of {} audio packets arrived",
        got.len(),
        source.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_only_stream_gets_a_black_picture_where_video_is_needed_and_its_audio_intact() {
    let ingest = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", ingest.url());
        // A preset of one's own needs no video unless it says so.
        point_preset(c, "radio", ingest.url());
    })
    .await;
    let source = audio_clip();
    let sent = audio_packets(&source);
    let publisher = publish(
        &source,
        &prism.url("live/podcast?youtube=yt-pod&radio=radio-pod"),
    );
    let youtube = prism
        .wait_destination("podcast", "youtube", "live with a generated picture", |d| {
            d.connected_since.is_some() && d.encoder.is_some()
        })
        .await;
    assert_eq!(youtube.profile.as_deref(), Some("audio-only-video"));
    let radio = prism
        .wait_destination("podcast", "radio", "live", |d| d.connected_since.is_some())
        .await;
    assert!(
        radio.profile.is_none() && radio.encoder.is_none(),
        "{radio:?}"
    );
    let (status, _) = finish(publisher).await;
    assert!(status.success());
    ingest.wait_unpublished("yt-pod", WAIT).await;
    ingest.wait_unpublished("radio-pod", WAIT).await;

    let pictured = ingest.recording("yt-pod");
    let video = ffprobe_video(&pictured);
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("h264", 1280, 720)
    );
    assert!((video.fps - 30.0).abs() < 1.0, "{} fps", video.fps);
    assert!(
        video.keyframes.first().is_some_and(|k| *k < 0.1),
        "starts on a keyframe: {:?}",
        video.keyframes
    );
    let rgb = pictures_rgb(&pictured, 5);
    assert_eq!(rgb.len(), 5 * 1280 * 720 * 3);
    assert!(rgb.iter().all(|&v| v < 24), "black");
    // The picture runs with the audio, not ahead of it or short of it.
    let audio_secs = audio_packets(&pictured).len() as f64 * 1024.0 / 48_000.0;
    let video_secs = video.frames as f64 / 30.0;
    assert!(
        (audio_secs - video_secs).abs() < 1.0,
        "{audio_secs} s of audio, {video_secs} s of video"
    );
    assert_audio_intact(&sent, &pictured, 0.8);

    let plain = ingest.recording("radio-pod");
    assert_eq!(
        stream_indexes(&plain, "v").len(),
        0,
        "no picture where none is needed"
    );
    assert_audio_intact(&sent, &plain, 0.95);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_picture_can_be_an_image_or_nothing_and_a_stream_with_video_is_passed_through() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("audio-only-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("cover.png");
    let made = std::process::Command::new(require("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "color=c=0xC81E1E:s=640x360", "-frames:v", "1"])
        .arg(&image)
        .status()
        .unwrap();
    assert!(made.success());
    let ingest = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", ingest.url());
        c.transcode.audio_only_video = prism::transcode::AudioOnlyVideo::Still(image.clone());
    })
    .await;
    let source = audio_clip();
    let sent = audio_packets(&source);
    let audio = publish(&source, &prism.url("live/cover?youtube=yt-cover"));
    let video = publish(&test_flv(), &prism.url("live/show?youtube=yt-show"));
    let (a, _) = finish(audio).await;
    let (v, _) = finish(video).await;
    assert!(a.success() && v.success());
    ingest.wait_unpublished("yt-cover", WAIT).await;
    ingest.wait_unpublished("yt-show", WAIT).await;

    let pictured = ingest.recording("yt-cover");
    let probe = ffprobe_video(&pictured);
    assert_eq!(
        (probe.width, probe.height),
        (1280, 720),
        "fitted into the frame"
    );
    let rgb = pictures_rgb(&pictured, 3);
    let pixels = rgb.chunks(3).count();
    let red = rgb
        .chunks(3)
        .filter(|p| {
            p[0].abs_diff(0xC8) < 24 && p[1].abs_diff(0x1E) < 24 && p[2].abs_diff(0x1E) < 24
        })
        .count();
    assert!(
        red * 100 >= pixels * 95,
        "{red} of {pixels} pixels are the image's"
    );
    assert_audio_intact(&sent, &pictured, 0.8);
    // A stream with video goes to the same platform as it is.
    let shown = recording_framemd5(&ingest.recording("yt-show"));
    assert_eq!(assert_source_from_keyframe(&test_flv(), &shown), 0);
    prism.stop().await;

    // Off: the audio alone, as published.
    let ingest = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", ingest.url());
        c.transcode.audio_only_video = prism::transcode::AudioOnlyVideo::Off;
    })
    .await;
    let audio = publish(&source, &prism.url("live/bare?youtube=yt-bare"));
    let (a, _) = finish(audio).await;
    assert!(a.success());
    ingest.wait_unpublished("yt-bare", WAIT).await;
    let bare = ingest.recording("yt-bare");
    assert_eq!(stream_indexes(&bare, "v").len(), 0);
    assert_audio_intact(&sent, &bare, 0.95);
    prism.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
