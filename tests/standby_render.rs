//! The standby slate renderer and cache with real ffmpeg: each rendered loop is
//! checked packet by packet (a keyframe first and every 2 s, whole frames, timestamps
//! within the loop and never backwards), its sequence headers are parsed back into
//! the spec that was asked for, and two loops back to back (the second shifted by
//! `loop_ms`, as the standby player plays them) decode without one ffmpeg error.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prism::flv::{FlvHeader, FlvWriter, TagType};
use prism::hub::{MediaInfo, PacketKind, VideoInfo};
use prism::standby::{
    AudioSpec, FrameRate, RenderError, Slate, SlateAudioCodec, SlateCache, SlateSpec,
    SlateUnavailable, SlateVideoCodec, VideoSpec, render,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use common::{ffmpeg9, require};

fn spec(
    codec: SlateVideoCodec,
    profile: u8,
    level: u8,
    (width, height): (u32, u32),
    (num, den): (u32, u32),
    audio: Option<AudioSpec>,
) -> SlateSpec {
    SlateSpec {
        video: VideoSpec {
            codec,
            profile,
            level,
            chroma_format: 1,
            bit_depth: 8,
            width,
            height,
            frame_rate: FrameRate { num, den },
        },
        audio,
        title: "Sunday service".into(),
    }
}

fn aac(sample_rate: u32, channels: u8) -> Option<AudioSpec> {
    Some(AudioSpec {
        codec: SlateAudioCodec::Aac { object_type: 2 },
        sample_rate,
        channels,
    })
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("standby");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{}-{name}", std::process::id()))
}

/// Runs ffmpeg to make a test input (an image or a clip).
fn make(ffmpeg: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = scratch(name);
    let status = std::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "making {name} failed");
    path
}

/// Everything the standby player relies on, for a slate rendered for `asked`.
/// `level_checked`: whether the encoder writes the level asked for (x264, x265).
fn assert_loop(slate: &Slate, asked: &SlateSpec, level_checked: bool) {
    assert_eq!(&slate.spec, asked);
    let rate = asked.video.frame_rate;
    let first = &slate.media[0];
    assert!(
        first.kind == PacketKind::Video && first.keyframe && first.timestamp == 0,
        "the loop starts with a keyframe at 0"
    );
    // Whole frames: the loop is its frame count times the frame interval.
    let video: Vec<_> = slate
        .media
        .iter()
        .filter(|p| p.kind == PacketKind::Video)
        .collect();
    let expected_frames =
        (f64::from(slate.loop_ms) * f64::from(rate.num) / f64::from(rate.den) / 1000.0).round();
    assert_eq!(video.len() as f64, expected_frames, "frames in the loop");
    assert_eq!(rate.frames_ms(video.len() as u32), slate.loop_ms);
    assert!((4000..=4004).contains(&slate.loop_ms), "a 4 s loop");
    // Keyframes at 0 and 2 s only.
    let keyframes: Vec<u32> = video
        .iter()
        .filter(|p| p.keyframe)
        .map(|p| p.timestamp)
        .collect();
    assert_eq!(keyframes.len(), 2, "two keyframes: {keyframes:?}");
    assert_eq!(keyframes[1], rate.frames_ms(rate.frames_in(2)));
    assert!((2000..=2002).contains(&keyframes[1]));
    // Within the loop, per track never backwards.
    for kind in [PacketKind::Video, PacketKind::Audio] {
        let times: Vec<u32> = slate
            .media
            .iter()
            .filter(|p| p.kind == kind)
            .map(|p| p.timestamp)
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{kind:?} in order");
        assert!(
            times.iter().all(|t| *t < slate.loop_ms),
            "{kind:?} within the loop"
        );
    }
    let audio = slate.media.iter().filter(|p| p.kind == PacketKind::Audio);
    match &asked.audio {
        Some(_) => {
            // Audio runs to the end of the loop, less at most one frame.
            let last = audio.map(|p| p.timestamp).max().expect("audio in the loop");
            assert!(
                last + 60 >= slate.loop_ms,
                "audio ends at {last} of {}",
                slate.loop_ms
            );
        }
        None => assert_eq!(audio.count(), 0),
    }
    // The headers parse back to the spec asked for.
    let video_header = slate
        .headers
        .iter()
        .find(|p| p.kind == PacketKind::Video && p.sequence_header)
        .expect("a video sequence header");
    let audio_header = slate
        .headers
        .iter()
        .find(|p| p.kind == PacketKind::Audio && p.sequence_header);
    assert_eq!(audio_header.is_some(), asked.audio.is_some());
    let mut media = MediaInfo::default();
    media.video = Some(VideoInfo {
        frame_rate: Some(rate.fps()),
        ..VideoInfo::default()
    });
    let mut parsed = SlateSpec::from_stream(
        Some(&video_header.payload),
        audio_header.map(|p| &p.payload[..]),
        &media,
        &asked.title,
    )
    .expect("the rendered headers parse");
    if !level_checked {
        parsed.video.level = asked.video.level;
    }
    assert_eq!(&parsed, asked);
    assert_eq!(
        slate.bytes,
        slate
            .headers
            .iter()
            .chain(&slate.media)
            .map(|p| p.len())
            .sum::<usize>()
    );
}

/// Writes the headers and two loops (the second shifted by `loop_ms`) as FLV and
/// decodes it: ffmpeg must print nothing at `-v error`.
fn assert_two_loops_decode(slate: &Slate, ffmpeg: &Path, name: &str) {
    let path = scratch(&format!("{name}-two-loops.flv"));
    let mut out = FlvWriter::header(&FlvHeader {
        has_audio: slate.spec.audio.is_some(),
        has_video: true,
    })
    .to_vec();
    let shifted = slate.media.iter().map(|p| (p, slate.loop_ms));
    let packets = slate
        .headers
        .iter()
        .map(|p| (p, 0))
        .chain(slate.media.iter().map(|p| (p, 0)))
        .chain(shifted);
    for (packet, shift) in packets {
        let tag = match packet.kind {
            PacketKind::Audio => TagType::Audio,
            _ => TagType::Video,
        };
        out.extend_from_slice(
            &FlvWriter::tag_header(tag, packet.timestamp + shift, packet.len()).unwrap(),
        );
        out.extend_from_slice(&packet.payload);
        out.extend_from_slice(&FlvWriter::prev_tag_size(packet.len()));
    }
    std::fs::write(&path, out).unwrap();
    let decoded = std::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let errors = String::from_utf8_lossy(&decoded.stderr);
    assert!(
        decoded.status.success() && errors.trim().is_empty(),
        "two loops of {name} decode cleanly: {errors}"
    );
    std::fs::remove_file(path).unwrap();
}

async fn render_ok(ffmpeg: &Path, asked: &SlateSpec, source: Option<&Path>) -> Slate {
    render(ffmpeg, asked, source, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("rendering {asked} failed: {e}"))
}

#[tokio::test]
async fn h264_high_1080p60_with_aac_48k_stereo() {
    let ffmpeg = require("ffmpeg");
    let asked = spec(
        SlateVideoCodec::H264,
        100,
        42,
        (1920, 1080),
        (60, 1),
        aac(48_000, 2),
    );
    let slate = render_ok(&ffmpeg, &asked, None).await;
    assert_loop(&slate, &asked, true);
    assert_eq!(slate.loop_ms, 4000);
    assert!(slate.notes.is_empty(), "{:?}", slate.notes);
    assert_two_loops_decode(&slate, &ffmpeg, "1080p60");
}

#[tokio::test]
async fn h264_main_720p30_with_aac_44k_mono() {
    let ffmpeg = require("ffmpeg");
    let asked = spec(
        SlateVideoCodec::H264,
        77,
        31,
        (1280, 720),
        (30, 1),
        aac(44_100, 1),
    );
    let slate = render_ok(&ffmpeg, &asked, None).await;
    assert_loop(&slate, &asked, true);
    assert_two_loops_decode(&slate, &ffmpeg, "720p30");
}

#[tokio::test]
async fn h264_at_29_97_fps_loops_on_whole_frames() {
    let ffmpeg = require("ffmpeg");
    let asked = spec(
        SlateVideoCodec::H264,
        66,
        30,
        (640, 360),
        (30000, 1001),
        aac(48_000, 2),
    );
    let slate = render_ok(&ffmpeg, &asked, None).await;
    assert_loop(&slate, &asked, true);
    // 120 frames of 1001/30 ms.
    assert_eq!(slate.loop_ms, 4004);
    assert_two_loops_decode(&slate, &ffmpeg, "ntsc");
}

#[tokio::test]
async fn an_operator_image_is_fitted_into_the_picture() {
    let ffmpeg = require("ffmpeg");
    // A 4:3 image into a 16:9 picture: scaled to fit and padded.
    let png = make(
        &ffmpeg,
        "slate.png",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=800x600",
            "-frames:v",
            "1",
        ],
    );
    let asked = spec(
        SlateVideoCodec::H264,
        100,
        40,
        (1280, 720),
        (25, 1),
        aac(48_000, 2),
    );
    let slate = render_ok(&ffmpeg, &asked, Some(&png)).await;
    assert_loop(&slate, &asked, true);
    assert_two_loops_decode(&slate, &ffmpeg, "png");
    std::fs::remove_file(png).unwrap();
}

#[tokio::test]
async fn an_operator_video_loops_with_its_sound_or_silence() {
    let ffmpeg = require("ffmpeg");
    // Shorter than the loop, so it has to repeat.
    let with_sound = make(
        &ffmpeg,
        "with-sound.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x480:rate=24:duration=3",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100:duration=3",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-shortest",
        ],
    );
    let asked = spec(
        SlateVideoCodec::H264,
        100,
        31,
        (1280, 720),
        (30, 1),
        aac(48_000, 2),
    );
    let slate = render_ok(&ffmpeg, &asked, Some(&with_sound)).await;
    assert_loop(&slate, &asked, true);
    assert!(slate.notes.is_empty(), "{:?}", slate.notes);
    assert_two_loops_decode(&slate, &ffmpeg, "video");
    let silent = make(
        &ffmpeg,
        "silent.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x480:rate=30:duration=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    );
    let slate = render_ok(&ffmpeg, &asked, Some(&silent)).await;
    assert_loop(&slate, &asked, true);
    assert!(
        slate.notes.iter().any(|n| n.contains("no sound")),
        "{:?}",
        slate.notes
    );
    std::fs::remove_file(with_sound).unwrap();
    std::fs::remove_file(silent).unwrap();
}

#[tokio::test]
async fn hevc_with_ffmpeg_9_in_enhanced_flv() {
    let ffmpeg = ffmpeg9();
    // Main, level 4.1 (general_level_idc 123).
    let asked = spec(
        SlateVideoCodec::Hevc,
        1,
        123,
        (1280, 720),
        (30, 1),
        aac(48_000, 2),
    );
    let slate = render_ok(&ffmpeg, &asked, None).await;
    assert_loop(&slate, &asked, true);
    assert_two_loops_decode(&slate, &ffmpeg, "hevc");
}

#[tokio::test]
async fn av1_with_opus_with_ffmpeg_9() {
    let ffmpeg = ffmpeg9();
    let opus = Some(AudioSpec {
        codec: SlateAudioCodec::Opus,
        sample_rate: 48_000,
        channels: 2,
    });
    let asked = spec(SlateVideoCodec::Av1, 0, 8, (1280, 720), (30, 1), opus);
    let slate = render_ok(&ffmpeg, &asked, None).await;
    // SVT-AV1 picks its own level: profile, size and depth are checked.
    assert_loop(&slate, &asked, false);
    assert_two_loops_decode(&slate, &ffmpeg, "av1");
}

#[tokio::test]
async fn hevc_with_debians_ffmpeg_is_a_clear_error() {
    // ffmpeg 5.1 encodes HEVC but its FLV muxer predates enhanced FLV.
    let asked = spec(
        SlateVideoCodec::Hevc,
        1,
        93,
        (640, 360),
        (30, 1),
        aac(48_000, 2),
    );
    let err = render(&require("ffmpeg"), &asked, None, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, RenderError::Failed { .. }), "{err:?}");
    assert!(err.to_string().contains("not compatible with flv"), "{err}");
}

#[tokio::test]
async fn a_cancelled_render_stops() {
    let cancel = CancellationToken::new();
    cancel.cancel();
    let asked = spec(
        SlateVideoCodec::H264,
        100,
        42,
        (1920, 1080),
        (60, 1),
        aac(48_000, 2),
    );
    let err = render(&require("ffmpeg"), &asked, None, &cancel)
        .await
        .unwrap_err();
    assert_eq!(err, RenderError::Cancelled);
}

fn tiny(title: &str) -> SlateSpec {
    let mut tiny = spec(SlateVideoCodec::H264, 66, 10, (64, 64), (10, 1), None);
    tiny.title = title.into();
    tiny
}

#[tokio::test]
async fn the_cache_renders_once_and_remembers_failures() {
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let cache = SlateCache::new(require("ffmpeg"), tracker.clone(), shutdown.clone());
    let wait = Duration::from_secs(60);
    let card = SlateSpec::title_card("Waiting room");
    // Prepared in the background, then asked for twice at once: one render.
    cache.prepare(card.clone(), None);
    let (a, b) = tokio::join!(cache.get(&card, None, wait), cache.get(&card, None, wait));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(Arc::ptr_eq(&a, &b));
    assert_loop(&a, &card, true);
    assert_eq!(cache.renders(), 1);
    // A slate whose ffmpeg fails is remembered as failed, with the reason.
    let hevc = spec(SlateVideoCodec::Hevc, 1, 93, (640, 360), (30, 1), None);
    let first = cache.get(&hevc, None, wait).await.unwrap_err();
    let again = cache.get(&hevc, None, wait).await.unwrap_err();
    assert!(matches!(&first, SlateUnavailable::Failed(r) if r.contains("not compatible with flv")));
    assert_eq!(first, again);
    assert_eq!(cache.renders(), 2, "the failure is not rendered again");
    let snapshot = cache.snapshot();
    assert_eq!(snapshot.len(), 2);
    let failed = snapshot.iter().find(|s| s.state == "failed").unwrap();
    assert!(
        failed
            .reason
            .as_deref()
            .unwrap()
            .contains("not compatible with flv")
    );
    let ready = snapshot.iter().find(|s| s.state == "ready").unwrap();
    assert_eq!(ready.spec, "h264 high 1280x720@30 aac 48000Hz 2ch");
    assert!(ready.bytes > 0 && ready.render_ms.is_some());
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let cache = SlateCache::new(require("ffmpeg"), tracker.clone(), shutdown.clone());
    let wait = Duration::from_secs(60);
    for n in 0..16 {
        cache
            .get(&tiny(&format!("slate {n}")), None, wait)
            .await
            .unwrap();
    }
    // Slate 0 used again: slate 1 is now the least recently used.
    cache.get(&tiny("slate 0"), None, wait).await.unwrap();
    cache.get(&tiny("slate 16"), None, wait).await.unwrap();
    let titles: Vec<String> = cache.snapshot().into_iter().map(|s| s.title).collect();
    assert_eq!(titles.len(), 16);
    assert!(titles.contains(&"slate 0".to_owned()));
    assert!(titles.contains(&"slate 16".to_owned()));
    assert!(!titles.contains(&"slate 1".to_owned()));
    assert_eq!(cache.renders(), 17);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}
