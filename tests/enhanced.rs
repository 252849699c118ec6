//! Enhanced RTMP: HEVC and AV1 (FourCC video tags) pass through prism untouched.
//! Published and played with FFmpeg 9, which speaks enhanced RTMP; Debian's 5.1 does not.

mod common;

use std::path::PathBuf;

use common::*;

/// A 4 s clip in the given codec with AAC audio, keyframe every 2 s, as enhanced FLV.
fn enhanced_clip(name: &str, video_args: &str) -> PathBuf {
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30:duration=4",
    ];
    args.extend([
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=4",
    ]);
    args.extend(video_args.split_whitespace());
    args.extend("-pix_fmt yuv420p -g 60 -c:a aac -b:a 64k -shortest".split_whitespace());
    generate(&ffmpeg9(), name, &args)
}

async fn passes_through_untouched(clip: PathBuf, key: &str) {
    let prism = Prism::start().await;
    let ffmpeg = ffmpeg9();
    let url = prism.url(&format!("live/{key}"));
    let player = play_framemd5_using(&ffmpeg, &url);
    prism.wait_subscribers("live", key, 1).await;
    let publisher = publish_using(&ffmpeg, &clip, &url, &[]);
    let (status, _) = finish(publisher).await;
    assert!(status.success(), "publisher: {status}");
    let (status, out) = finish(player).await;
    assert!(status.success(), "player: {status}");
    let got = parse_framemd5(&out);
    let expected = framemd5_of_file_with(&ffmpeg, &clip);
    let video = |frames: &[Frame]| {
        frames
            .iter()
            .filter(|f| f.stream == 0)
            .cloned()
            .collect::<Vec<_>>()
    };
    let audio = |frames: &[Frame]| {
        frames
            .iter()
            .filter(|f| f.stream == 1)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(!video(&got).is_empty());
    assert_eq!(
        video(&got),
        video(&expected),
        "every video packet identical, from the first keyframe"
    );
    let (src_audio, got_audio) = (audio(&expected), audio(&got));
    let skipped = src_audio
        .len()
        .checked_sub(got_audio.len())
        .expect("no extra audio");
    assert!(
        skipped <= 3,
        "at most the audio before the first keyframe is skipped ({skipped})"
    );
    assert_eq!(&src_audio[skipped..], &got_audio[..]);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_passes_through_untouched() {
    let clip = enhanced_clip(
        "hevc-4s.flv",
        "-c:v libx265 -preset ultrafast -x265-params log-level=error:scenecut=0",
    );
    passes_through_untouched(clip, "hevc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av1_passes_through_untouched() {
    let clip = enhanced_clip(
        "av1-4s.flv",
        "-c:v libsvtav1 -preset 12 -svtav1-params scd=0",
    );
    passes_through_untouched(clip, "av1").await;
}

/// An HEVC stream recorded as fragmented MP4 (`hvc1`): every frame of the
/// source, video and audio, as FFmpeg 9 reads it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_is_recorded_as_mp4_frame_for_frame() {
    let clip = enhanced_clip(
        "hevc-4s.flv",
        "-c:v libx265 -preset ultrafast -x265-params log-level=error:scenecut=0",
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("enhanced-mp4-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let prism = Prism::start_with(|c| {
        c.record.enabled = true;
        c.record.dir = dir.clone();
        c.record.format = prism::record::RecordFormat::Mp4;
    })
    .await;
    let ffmpeg = ffmpeg9();
    let publisher = publish_using(&ffmpeg, &clip, &prism.url("live/hevc-record"), &[]);
    let (status, _) = finish(publisher).await;
    assert!(status.success(), "publisher: {status}");
    // The recording is complete once the stream has ended.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while prism.hub().is_live("live", "hevc-record") {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    prism.stop().await;
    let file = std::fs::read_dir(dir.join("live"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(file.to_str().unwrap().ends_with(".mp4"), "{file:?}");
    assert_eq!(ffprobe_video(&file).codec, "hevc");
    assert_eq!(
        framemd5_of_file_with(&ffmpeg, &file),
        framemd5_of_file_with(&ffmpeg, &clip)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
