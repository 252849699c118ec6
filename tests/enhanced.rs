//! Enhanced RTMP: HEVC and AV1 (FourCC video tags) pass through prism untouched,
//! and are recorded as MP4 and served as HLS frame for frame (with AAC and Opus).
//! Published and played with FFmpeg 9, which speaks enhanced RTMP; Debian's 5.1 does not.

mod common;

use std::path::PathBuf;

use common::*;

/// A clip of `seconds` in the given codec with AAC audio, keyframe every 2 s, as
/// enhanced FLV.
fn enhanced_clip(name: &str, video_args: &str, seconds: u32) -> PathBuf {
    let video = format!("testsrc=size=320x240:rate=30:duration={seconds}");
    let audio = format!("sine=frequency=440:sample_rate=48000:duration={seconds}");
    let mut args = vec!["-f", "lavfi", "-i", &video, "-f", "lavfi", "-i", &audio];
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
        4,
    );
    passes_through_untouched(clip, "hevc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av1_passes_through_untouched() {
    let clip = enhanced_clip(
        "av1-4s.flv",
        "-c:v libsvtav1 -preset 12 -svtav1-params scd=0",
        4,
    );
    passes_through_untouched(clip, "av1").await;
}

/// HEVC with AAC (enhanced RTMP, FFmpeg 9): recorded as fragmented MP4 (`hvc1`)
/// frame for frame, and served as HLS whose segments are the source's frames in
/// order.
#[tokio::test]
async fn hevc_is_recorded_as_mp4_and_served_as_hls() {
    let clip = enhanced_clip(
        "hevc-8s.flv",
        "-c:v libx265 -preset ultrafast -x265-params log-level=error:scenecut=0",
        8,
    );
    recorded_and_served(&clip, "hevc", ("hevc", "aac")).await;
}

/// AV1 video and Opus audio (enhanced RTMP, FFmpeg 9), likewise.
#[tokio::test]
async fn av1_and_opus_are_recorded_as_mp4_and_served_as_hls() {
    let clip = generate(
        &ffmpeg9(),
        "av1-opus-8s.flv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30:duration=8",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=8",
            "-c:v",
            "libsvtav1",
            "-preset",
            "12",
            "-svtav1-params",
            "scd=0",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "60",
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-shortest",
        ],
    );
    recorded_and_served(&clip, "av1-opus", ("av1", "opus")).await;
}

/// Publishes `clip` with FFmpeg 9 to a prism that records MP4, follows its HLS
/// to the end, and compares both with the source: the recording frame for frame,
/// the joined segments as a contiguous run of the source's frames.
async fn recorded_and_served(clip: &std::path::Path, key: &str, codecs: (&str, &str)) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("enhanced-{key}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let prism = Prism::start_with(|c| {
        c.record.enabled = true;
        c.record.dir = dir.clone();
        c.record.format = prism::record::RecordFormat::Mp4;
    })
    .await;
    let ffmpeg = ffmpeg9();
    let publisher = publish_using(&ffmpeg, clip, &prism.url(&format!("live/{key}")), &[]);
    prism.wait_live("live", key).await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let id = prism.streams_json().await["streams"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = format!("http://{http}/hls/{id}");
    let client = http_client();
    let get = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    // Follow the playlist to its end, keeping every segment once.
    let mut segments = std::collections::BTreeMap::new();
    let mut init = None;
    let mut next = String::new();
    loop {
        let response = get(format!("{base}/index.m3u8{next}")).await;
        if response.status() == 404 {
            break;
        }
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let Ok(m3u8_rs::Playlist::MediaPlaylist(playlist)) =
            m3u8_rs::parse_playlist_res(text.as_bytes())
        else {
            panic!("{text}")
        };
        if init.is_none() {
            init = Some(
                get(format!("{base}/src.init0.mp4"))
                    .await
                    .bytes()
                    .await
                    .unwrap(),
            );
        }
        for (i, segment) in playlist.segments.iter().enumerate() {
            let msn = playlist.media_sequence + i as u64;
            if let std::collections::btree_map::Entry::Vacant(slot) = segments.entry(msn) {
                slot.insert(
                    get(format!("{base}/{}", segment.uri))
                        .await
                        .bytes()
                        .await
                        .unwrap(),
                );
            }
        }
        if playlist.end_list {
            break;
        }
        next = format!(
            "?_HLS_msn={}",
            playlist.media_sequence + playlist.segments.len() as u64
        );
    }
    let (status, _) = finish(publisher).await;
    assert!(status.success(), "publisher: {status}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while prism.hub().is_live("live", key) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    prism.stop().await;

    let expected = framemd5_of_file_with(&ffmpeg, clip);
    let file = std::fs::read_dir(dir.join("live"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(file.to_str().unwrap().ends_with(".mp4"), "{file:?}");
    assert_eq!(ffprobe_video(&file).codec, codecs.0);
    assert_eq!(ffprobe_audio_codec(&file), codecs.1);
    assert_eq!(
        framemd5_of_file_with(&ffmpeg, &file),
        expected,
        "the recording"
    );

    assert!(segments.len() >= 2, "{} segments", segments.len());
    let mut joined = init.expect("an init segment").to_vec();
    for segment in segments.values() {
        joined.extend_from_slice(segment);
    }
    let hls = dir.join("hls.mp4");
    std::fs::write(&hls, &joined).unwrap();
    let got = framemd5_of_file_with(&ffmpeg, &hls);
    assert_contiguous_run(&expected, &got, 0);
    assert_contiguous_run(&expected, &got, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
