//! What publishers send out of order, and what destinations and players must still
//! get: audio sent a second ahead of its video (librtmp-based encoders), a sequence
//! header that arrives late, raw audio before any header. Every destination and
//! player starts with metadata, sequence headers, then a keyframe; each track's
//! timestamps never go back; no packet from the first keyframe on is lost.
//!
//! The publisher is prism's own RTMP client sending an ffmpeg-made clip's tags on a
//! schedule the test chooses; the destination is a real nginx-rtmp, the players
//! real ffmpeg and rtmpdump.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::sinks::*;
use common::*;
use prism::flv::{AudioPacketKind, FlvTag, TagType, VideoPacketKind, parse_audio, parse_video};

const WAIT: Duration = Duration::from_secs(20);

/// A fresh directory for this test's player recordings.
fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("media-order-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn is_audio_header(tag: &FlvTag) -> bool {
    tag.tag_type == TagType::Audio
        && parse_audio(&tag.data).is_ok_and(|a| a.kind == AudioPacketKind::SequenceHeader)
}

fn is_video_header(tag: &FlvTag) -> bool {
    tag.tag_type == TagType::Video
        && parse_video(&tag.data).is_ok_and(|v| v.kind == VideoPacketKind::SequenceHeader)
}

fn is_keyframe(tag: &FlvTag) -> bool {
    tag.tag_type == TagType::Video
        && parse_video(&tag.data).is_ok_and(|v| v.keyframe && v.kind == VideoPacketKind::Frame)
}

/// Asserts what a destination or player must see, in a recording of it: metadata
/// (when any), then the sequence headers, then a keyframe before any other media;
/// no audio frame before the audio header; each track's timestamps never go back.
fn assert_starts_cleanly_and_tracks_move_forward(what: &str, path: &Path) {
    assert_starts_on_a_keyframe_and_tracks_move_forward(what, path, true);
}

/// Like [`assert_starts_cleanly_and_tracks_move_forward`]; without
/// `audio_header_first`, the audio header may come after the first video
/// frames (it did not exist yet when the stream started), but still before any
/// audio frame.
fn assert_starts_on_a_keyframe_and_tracks_move_forward(
    what: &str,
    path: &Path,
    audio_header_first: bool,
) {
    let tags = flv_tags(path);
    let media: Vec<&FlvTag> = tags
        .iter()
        .filter(|t| t.tag_type != TagType::Script)
        .collect();
    let first_frame = media
        .iter()
        .position(|t| !is_audio_header(t) && !is_video_header(t))
        .unwrap_or_else(|| panic!("{what}: no media"));
    assert!(
        media[..first_frame].iter().any(|t| is_video_header(t)),
        "{what}: the video header before the first frame"
    );
    if audio_header_first {
        assert!(
            media[..first_frame].iter().any(|t| is_audio_header(t)),
            "{what}: the audio header before the first frame"
        );
    }
    let audio_header = media
        .iter()
        .position(|t| is_audio_header(t))
        .unwrap_or_else(|| panic!("{what}: no audio header"));
    assert!(
        !media[..audio_header]
            .iter()
            .any(|t| t.tag_type == TagType::Audio),
        "{what}: no audio frame before the audio header"
    );
    assert!(
        is_keyframe(media[first_frame]),
        "{what}: the first frame is a video keyframe"
    );
    if let Some(script) = tags.iter().position(|t| t.tag_type == TagType::Script) {
        let first_media = tags
            .iter()
            .position(|t| t.tag_type != TagType::Script)
            .unwrap();
        assert!(script < first_media, "{what}: metadata comes first");
    }
    for track in [TagType::Audio, TagType::Video] {
        let stamps: Vec<u32> = media
            .iter()
            .filter(|t| t.tag_type == track)
            .map(|t| t.timestamp)
            .collect();
        assert!(
            stamps.windows(2).all(|w| w[0] <= w[1]),
            "{what}: {track:?} timestamps never go back: {:?}",
            &stamps[..stamps.len().min(80)]
        );
    }
}

/// rtmpdump playing `url` into `file`.
fn rtmpdump(url: &str, file: &Path) -> tokio::process::Child {
    spawn(
        "rtmpdump",
        &["-q", "--live", "-r", url, "-o", file.to_str().unwrap()],
    )
}

/// Waits for rtmpdump to end (a live stream that ended is "incomplete" to it).
async fn finish_rtmpdump(dump: tokio::process::Child) {
    let (status, _) = finish(dump).await;
    assert!(
        matches!(status.code(), Some(0) | Some(2)),
        "rtmpdump: {status}"
    );
}

/// The clip's tags scheduled as an encoder that sends every audio frame
/// `lead_ms` before its timestamp (and everything else on time) would.
fn audio_sent_ahead(clip: &Path, lead_ms: u64) -> Vec<Scheduled> {
    let mut schedule = schedule_in_real_time(clip);
    for item in &mut schedule {
        if item.tag.tag_type == TagType::Audio && !is_audio_header(&item.tag) {
            item.at_ms = item.at_ms.saturating_sub(lead_ms);
        }
    }
    // Stable: tags due at the same time keep their file order.
    schedule.sort_by_key(|item| item.at_ms);
    schedule
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_sent_a_second_ahead_of_its_video_reaches_destinations_and_players_in_full() {
    let sink = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| point_preset(c, "youtube", sink.url())).await;
    let clip = clip(8);
    let schedule = audio_sent_ahead(&clip, 1000);
    assert!(
        is_audio_header(&schedule[3].tag) || is_audio_header(&schedule[2].tag),
        "the clip starts with metadata and both headers"
    );
    assert_eq!(
        schedule[4].tag.tag_type,
        TagType::Audio,
        "audio goes first, ahead of the first keyframe"
    );
    let dir = out_dir("ahead");
    let url = prism.url("live/ahead");
    let player = play_framemd5(&url);
    let dump = rtmpdump(&url, &dir.join("dump.flv"));
    prism.wait_subscribers("live", "ahead", 2).await;
    let joiner = async {
        // A player that joins mid-stream starts from the GOP cache.
        tokio::time::sleep(Duration::from_millis(3300)).await;
        let late = play_framemd5(&url);
        finish(late).await
    };
    let publish = publish_schedule(prism.addr, "live", "ahead?youtube=ytahead", &schedule);
    let (_, (status, late_out)) = tokio::join!(publish, joiner);
    assert!(status.success());

    let (status, out) = finish(player).await;
    assert!(status.success());
    assert_eq!(
        assert_source_from_keyframe(&clip, &parse_framemd5(&out)),
        0,
        "the player got every packet, the audio sent ahead of the first keyframe too"
    );
    let start = assert_source_from_keyframe(&clip, &parse_framemd5(&late_out));
    assert!(start > 0, "the late player joined at a later keyframe");
    finish_rtmpdump(dump).await;
    assert_starts_cleanly_and_tracks_move_forward("rtmpdump", &dir.join("dump.flv"));

    assert_eq!(sink.wait_unpublished("ytahead", WAIT).await, Ending::Clean);
    let recording = sink.recording("ytahead");
    assert_eq!(
        assert_source_from_keyframe(&clip, &recording_framemd5(&recording)),
        0,
        "the destination got every packet"
    );
    assert_starts_cleanly_and_tracks_move_forward("nginx-rtmp", &recording);
    prism.stop().await;
}

/// The clip's tags as a publisher that sends raw audio before any header would:
/// the audio frames of the first `late_ms` go first, before the metadata and the
/// sequence headers; the audio header (with its own timestamp) and everything else
/// follow on time. Returns the schedule and how many of the clip's audio frames
/// were sent before the audio header.
fn raw_audio_first_then_late_header(clip: &Path, late_ms: u64) -> (Vec<Scheduled>, usize) {
    let mut schedule = schedule_in_real_time(clip);
    let mut early_audio = 0;
    for item in &mut schedule {
        let raw_audio = item.tag.tag_type == TagType::Audio && !is_audio_header(&item.tag);
        if raw_audio && item.at_ms < late_ms {
            early_audio += 1;
        } else if item.at_ms < late_ms {
            // Metadata, both headers and the first video wait until `late_ms`.
            item.at_ms = late_ms;
        }
    }
    // The raw audio of the first `late_ms` goes first: stable, so the rest keeps
    // its file order at `late_ms`.
    schedule.sort_by_key(|item| {
        let raw_audio = item.tag.tag_type == TagType::Audio && !is_audio_header(&item.tag);
        (item.at_ms, !raw_audio)
    });
    (schedule, early_audio)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_audio_before_its_header_never_reaches_a_destination_or_player_first() {
    let sink = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| point_preset(c, "youtube", sink.url())).await;
    let clip = clip(6);
    let (schedule, early_audio) = raw_audio_first_then_late_header(&clip, 1000);
    assert!(early_audio > 30, "a second of raw AAC first: {early_audio}");
    assert!(
        !is_audio_header(&schedule[0].tag) && schedule[0].tag.tag_type == TagType::Audio,
        "the publish starts with raw audio"
    );
    let dir = out_dir("raw-first");
    let url = prism.url("live/rawfirst");
    let player = play_framemd5(&url);
    let dump = rtmpdump(&url, &dir.join("dump.flv"));
    prism.wait_subscribers("live", "rawfirst", 2).await;
    publish_schedule(prism.addr, "live", "rawfirst?youtube=ytraw", &schedule).await;

    // Everything but the raw audio sent before its header arrives, bit-exact.
    let expected = framemd5_of_file(&clip);
    let expected_video: Vec<&Frame> = expected.iter().filter(|f| f.stream == 0).collect();
    let expected_audio: Vec<&Frame> = expected
        .iter()
        .filter(|f| f.stream == 1)
        .skip(early_audio)
        .collect();
    let check = |what: &str, got: &[Frame]| {
        let video: Vec<&Frame> = got.iter().filter(|f| f.stream == 0).collect();
        let audio: Vec<&Frame> = got.iter().filter(|f| f.stream == 1).collect();
        assert_eq!(video, expected_video, "{what}: every video packet");
        assert_eq!(
            audio, expected_audio,
            "{what}: every audio packet sent after the audio header, none before"
        );
    };
    let (status, out) = finish(player).await;
    assert!(status.success());
    check("ffmpeg player", &parse_framemd5(&out));
    finish_rtmpdump(dump).await;
    assert_starts_cleanly_and_tracks_move_forward("rtmpdump", &dir.join("dump.flv"));
    assert_eq!(sink.wait_unpublished("ytraw", WAIT).await, Ending::Clean);
    let recording = sink.recording("ytraw");
    check("nginx-rtmp", &recording_framemd5(&recording));
    assert_starts_cleanly_and_tracks_move_forward("nginx-rtmp", &recording);
    assert!(
        captured_logs().contains("arrived before its track's sequence header"),
        "the drop is logged"
    );
    prism.stop().await;
}

/// The clip's tags as an encoder whose audio header is late would send them:
/// video (with its header) and metadata on time; the audio frames of the first
/// `late_ms` raw, without a header; then the audio header, stamped with the start
/// of its track, and the rest on time. Returns the schedule and how many audio
/// frames went before the header.
fn late_audio_header(clip: &Path, late_ms: u64) -> (Vec<Scheduled>, usize) {
    let mut schedule = schedule_in_real_time(clip);
    let header = schedule
        .iter()
        .position(|item| is_audio_header(&item.tag))
        .expect("the clip has an audio header");
    let mut header = schedule.remove(header);
    header.at_ms = late_ms;
    let early_audio = schedule
        .iter()
        .filter(|item| item.tag.tag_type == TagType::Audio && item.at_ms < late_ms)
        .count();
    let at = schedule
        .iter()
        .position(|item| item.at_ms >= late_ms)
        .unwrap_or(schedule.len());
    schedule.insert(at, header);
    (schedule, early_audio)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_audio_header_keeps_each_track_moving_forward_at_every_destination_and_player() {
    let sink = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| point_preset(c, "youtube", sink.url())).await;
    let clip = clip(6);
    let (schedule, early_audio) = late_audio_header(&clip, 1000);
    assert!(
        early_audio > 30,
        "a second of audio before its header: {early_audio}"
    );
    let dir = out_dir("late-header");
    let url = prism.url("live/lateheader");
    let player = play_framemd5(&url);
    let dump = rtmpdump(&url, &dir.join("dump.flv"));
    prism.wait_subscribers("live", "lateheader", 2).await;
    publish_schedule(prism.addr, "live", "lateheader?youtube=ytlate", &schedule).await;

    let expected = framemd5_of_file(&clip);
    let expected_video: Vec<&Frame> = expected.iter().filter(|f| f.stream == 0).collect();
    let expected_audio: Vec<&Frame> = expected
        .iter()
        .filter(|f| f.stream == 1)
        .skip(early_audio)
        .collect();
    let (status, out) = finish(player).await;
    assert!(status.success());
    let got = parse_framemd5(&out);
    let video: Vec<&Frame> = got.iter().filter(|f| f.stream == 0).collect();
    let audio: Vec<&Frame> = got.iter().filter(|f| f.stream == 1).collect();
    assert_eq!(video, expected_video, "the player got every video packet");
    assert_eq!(
        audio, expected_audio,
        "the player got every audio packet sent after the header"
    );
    finish_rtmpdump(dump).await;
    assert_starts_on_a_keyframe_and_tracks_move_forward("rtmpdump", &dir.join("dump.flv"), false);
    assert_eq!(sink.wait_unpublished("ytlate", WAIT).await, Ending::Clean);
    let recording = sink.recording("ytlate");
    assert_starts_on_a_keyframe_and_tracks_move_forward("nginx-rtmp", &recording, false);
    let frames = recording_framemd5(&recording);
    let audio: Vec<&Frame> = frames.iter().filter(|f| f.stream == 1).collect();
    assert_eq!(
        audio, expected_audio,
        "the destination got every audio packet sent after the header"
    );
    prism.stop().await;
}
