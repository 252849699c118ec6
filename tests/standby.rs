//! Keeping the broadcast alive (issue 18): the standby slate while a dropped
//! publisher is away, the backup publisher, the title card for players who come
//! early, and the slate's longest run. Real ffmpeg publishers and players, real
//! nginx-rtmp ingests that record; every check reads what the ingest recorded.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::sinks::NginxSink;
use common::*;

const WAIT: Duration = Duration::from_secs(30);

/// A clip of `seconds` at `size` and `rate` fps, H.264 `profile` with 1 s GOPs and
/// AAC at `sample_rate` Hz, `channels` channels; `source` picks the picture, so
/// that two clips of the same parameters have different frames.
fn clip_of(
    name: &str,
    seconds: u32,
    source: &str,
    size: &str,
    rate: u32,
    profile: &str,
    (sample_rate, channels): (u32, u32),
) -> PathBuf {
    let video = format!("{source}=size={size}:rate={rate}:duration={seconds}");
    let audio = format!("sine=frequency=330:sample_rate={sample_rate}:duration={seconds}");
    let gop = rate.to_string();
    let channels = channels.to_string();
    generate(
        &require("ffmpeg"),
        name,
        &[
            "-f",
            "lavfi",
            "-i",
            &video,
            "-f",
            "lavfi",
            "-i",
            &audio,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-profile:v",
            profile,
            "-pix_fmt",
            "yuv420p",
            "-g",
            &gop,
            "-keyint_min",
            &gop,
            "-sc_threshold",
            "0",
            "-bf",
            "0",
            "-c:a",
            "aac",
            "-ac",
            &channels,
            "-b:a",
            "96k",
            "-shortest",
        ],
    )
}

/// What `ffmpeg -v error -i FILE -f null -` prints: decode errors, nothing else.
fn decode_errors(file: &Path) -> String {
    let out = std::process::Command::new(require("ffmpeg"))
        .args(["-hide_banner", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Checks a recording's timestamps: per track never backwards, and no step between
/// consecutive video frames above two frame intervals.
fn assert_continuous(file: &Path, frame_ms: f64) {
    let mut last: std::collections::HashMap<u32, i64> = Default::default();
    for (index, dts) in recording_dts(file) {
        if let Some(previous) = last.insert(index, dts) {
            assert!(
                dts >= previous,
                "track {index} went back: {previous} -> {dts}"
            );
            if index == 0 {
                assert!(
                    (dts - previous) as f64 <= 2.0 * frame_ms + 1.0,
                    "a gap of {} ms between video frames {previous} and {dts}",
                    dts - previous
                );
            }
        }
    }
}

/// The hashes of a file's video frames.
fn video_hashes(file: &Path) -> Vec<String> {
    framemd5_of_file(file)
        .into_iter()
        .filter(|f| f.stream == 0)
        .map(|f| f.hash)
        .collect()
}

/// The parameters every video and audio sequence header of `file` carries
/// (codec, profile, size; codec, rate, channels), as prism's own parser reads them.
fn sequence_header_params(file: &Path) -> (HashSet<String>, HashSet<String>) {
    let (mut videos, mut audios) = (Vec::new(), Vec::new());
    for tag in flv_tags(file) {
        match tag.tag_type {
            prism::flv::TagType::Video if tag.data.get(1) == Some(&0) => videos.push(tag.data),
            prism::flv::TagType::Audio if tag.data.get(1) == Some(&0) => audios.push(tag.data),
            _ => {}
        }
    }
    let mut media = prism::hub::MediaInfo::default();
    // The recording has no metadata; the rate is not what is compared here.
    media.video = Some(prism::hub::VideoInfo {
        frame_rate: Some(30.0),
        ..Default::default()
    });
    let spec = |video: &[u8], audio: &[u8]| {
        prism::standby::SlateSpec::from_stream(Some(video), Some(audio), &media, "")
            .expect("the sequence headers parse")
    };
    let video = videos
        .iter()
        .map(|v| format!("{:?}", spec(v, &audios[0]).video))
        .collect();
    let audio = audios
        .iter()
        .map(|a| format!("{:?}", spec(&videos[0], a).audio))
        .collect();
    (video, audio)
}

/// Waits (up to a minute: a loaded CI machine renders slowly) until a slate was
/// rendered, so that a drop right after does not meet a slate still rendering
/// (prism then waits for it within the grace period; the test wants the slate).
async fn wait_slate_rendered() {
    for _ in 0..240 {
        if captured_logs().contains("standby slate rendered") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no slate rendered within a minute:\n{}", captured_logs());
}

fn standby_on(config: &mut prism::Config) {
    config.standby.enabled = true;
    config.standby.max_secs = 300;
    config.relay.publisher_grace_secs = 5;
}

/// The publisher is killed mid-stream and back `away` later, then stops cleanly:
/// the ingest recorded one connection with the first part, the slate, and all of
/// the second part, decodable, with continuous timestamps, and the slate matches
/// the stream.
async fn drop_and_return(tag: &str, size: &str, rate: u32, sample_rate: u32, away: Duration) {
    let first = clip_of(
        &format!("standby-{tag}-a.flv"),
        20,
        "testsrc",
        size,
        rate,
        "high",
        (sample_rate, 2),
    );
    let second = clip_of(
        &format!("standby-{tag}-b.flv"),
        4,
        "smptebars",
        size,
        rate,
        "high",
        (sample_rate, 2),
    );
    let ingest = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", ingest.url());
        standby_on(c);
    })
    .await;
    let key = format!("yt-{tag}");
    let url = prism.url(&format!("live/{tag}?youtube={key}"));
    let mut publisher = publish(&first, &url);
    // Long enough for the slate to be rendered in the background (prepared 2 s
    // after the stream went live).
    ingest.wait_recording(&key, 20_000, WAIT).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    wait_slate_rendered().await;
    publisher.start_kill().unwrap();
    let _ = publisher.wait().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = prism.streams_json().await;
    assert_eq!(
        status["streams"][0]["state"], "standby",
        "the slate is on air: {status}"
    );
    assert_eq!(status["streams"][0]["inputs"]["on_air"], "standby");
    let addr = prism.app.as_ref().unwrap().http_addr();
    let metrics = prism.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("prism_stream_state{") && l.contains("state=\"standby\"} 1")),
        "the metrics show the state:\n{metrics}"
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dashboard-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dom = chromium(&format!("http://{addr}/"), &dir, &["--dump-dom"]).await;
    assert!(
        dom.contains("on standby slate"),
        "the dashboard shows the state:\n{dom}"
    );
    tokio::time::sleep(away.saturating_sub(Duration::from_secs(2))).await;
    let (exit, _) = finish(publish(&second, &url)).await;
    assert!(
        exit.success(),
        "the returning publisher is accepted: {exit}"
    );
    assert!(
        ingest.saw_clean_unpublish(&key).await,
        "a clean stop ends it"
    );
    assert_eq!(
        ingest.publishes(&key).len(),
        1,
        "one connection at the ingest"
    );
    let recording = ingest.recording(&key);
    assert_eq!(
        decode_errors(&recording),
        "",
        "the recording decodes cleanly"
    );
    assert_continuous(&recording, 1000.0 / f64::from(rate));

    let got = video_hashes(&recording);
    let first_frames: HashSet<String> = video_hashes(&first).into_iter().collect();
    let second_frames = video_hashes(&second);
    // The first part: the source's frames up to the drop, in order.
    let first_part = got.iter().take_while(|h| first_frames.contains(*h)).count();
    assert!(first_part >= rate as usize * 5, "the first part arrived");
    // The second part: all of it, at the end.
    assert!(got.len() > first_part + second_frames.len());
    assert_eq!(
        &got[got.len() - second_frames.len()..],
        &second_frames[..],
        "every frame of the returning publisher arrived"
    );
    // Between them: the slate, and only the slate.
    let slate = &got[first_part..got.len() - second_frames.len()];
    assert!(
        slate.iter().all(|h| !first_frames.contains(h)),
        "nothing of the first part after the drop"
    );
    let slate_secs = slate.len() as f64 / f64::from(rate);
    assert!(
        slate_secs >= away.as_secs_f64() * 0.6,
        "the slate filled the gap: {slate_secs:.1} s of it for {away:?} away"
    );
    // The slate matches the stream: every sequence header says the same.
    let (video, audio) = sequence_header_params(&recording);
    assert_eq!(video.len(), 1, "one set of video parameters: {video:?}");
    assert_eq!(audio.len(), 1, "one set of audio parameters: {audio:?}");
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_killed_and_back_20_s_later_is_one_broadcast_with_the_slate_between() {
    drop_and_return("s720", "1280x720", 30, 44_100, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slate_matches_a_1080p60_stream() {
    drop_and_return("s1080", "1920x1080", 60, 48_000, Duration::from_secs(8)).await;
}

/// With a backup publisher connected, the primary's drop switches the ingest to
/// the backup's stream (no slate), and its return switches back; one connection,
/// no decode errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_takes_over_when_the_primary_drops_and_hands_back_when_it_returns() {
    let primary = clip_of(
        "backup-a.flv",
        30,
        "testsrc",
        "640x360",
        30,
        "main",
        (44_100, 2),
    );
    let backup = clip_of(
        "backup-b.flv",
        40,
        "testsrc2",
        "640x360",
        30,
        "main",
        (44_100, 2),
    );
    let back = clip_of(
        "backup-c.flv",
        4,
        "smptebars",
        "640x360",
        30,
        "main",
        (44_100, 2),
    );
    let ingest = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", ingest.url());
        standby_on(c);
    })
    .await;
    let url = prism.url("live/bk?youtube=yt-bk");
    let mut first = publish(&primary, &url);
    ingest.wait_recording("yt-bk", 20_000, WAIT).await;
    let mut second = publish(&backup, &prism.url("live/bk?role=backup"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    first.start_kill().unwrap();
    let _ = first.wait().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = prism.streams_json().await;
    assert_eq!(status["streams"][0]["state"], "backup", "{status}");
    assert_eq!(
        status["streams"][0]["inputs"]["on_air"], "backup",
        "{status}"
    );
    let (exit, _) = finish(publish(&back, &url)).await;
    assert!(exit.success());
    assert!(ingest.saw_clean_unpublish("yt-bk").await);
    second.start_kill().unwrap();
    let _ = second.wait().await;
    assert_eq!(ingest.publishes("yt-bk").len(), 1, "one connection");
    let recording = ingest.recording("yt-bk");
    assert_eq!(decode_errors(&recording), "");
    assert_continuous(&recording, 1000.0 / 30.0);
    let got = video_hashes(&recording);
    let primary_frames: HashSet<String> = video_hashes(&primary).into_iter().collect();
    let backup_frames: HashSet<String> = video_hashes(&backup).into_iter().collect();
    let back_frames = video_hashes(&back);
    let first_part = got
        .iter()
        .take_while(|h| primary_frames.contains(*h))
        .count();
    let middle = &got[first_part..got.len() - back_frames.len()];
    assert_eq!(&got[got.len() - back_frames.len()..], &back_frames[..]);
    assert!(
        middle.len() >= 60,
        "seconds of the backup: {}",
        middle.len()
    );
    assert!(
        middle.iter().all(|h| backup_frames.contains(h)),
        "only the backup's frames between the primary's: no slate"
    );
    prism.stop().await;
}

/// A player that connects before the publisher sees the title card, then the
/// stream, in one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_that_comes_early_sees_the_slate_then_the_stream_in_one_connection() {
    let prism = Prism::start_with(standby_on).await;
    let player = play_framemd5(&prism.url("live/early"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let source = test_flv();
    let (exit, _) = finish(publish(&source, &prism.url("live/early"))).await;
    assert!(exit.success());
    let (exit, out) = finish(player).await;
    assert!(exit.success(), "the player ends with the stream: {exit}");
    let frames = parse_framemd5(&out);
    let video: Vec<&Frame> = frames.iter().filter(|f| f.stream == 0).collect();
    let source_video: Vec<Frame> = framemd5_of_file(&source)
        .into_iter()
        .filter(|f| f.stream == 0)
        .collect();
    let source_hashes: HashSet<&str> = source_video.iter().map(|f| f.hash.as_str()).collect();
    let before = video
        .iter()
        .take_while(|f| !source_hashes.contains(f.hash.as_str()))
        .count();
    assert!(
        before >= 30,
        "a second or more of the title card first: {before} frames"
    );
    let live: Vec<&Frame> = video[before..].to_vec();
    assert_eq!(live.len(), source_video.len(), "then the whole stream");
    for (got, want) in live.iter().zip(&source_video) {
        assert_eq!(*got, want);
    }
    prism.stop().await;
}

/// After `standby.max_secs` on the slate, the ingest gets a clean unpublish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slate_ends_with_a_clean_unpublish_after_its_longest_run() {
    let ingest = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", ingest.url());
        standby_on(c);
        c.standby.max_secs = 3;
    })
    .await;
    let mut publisher = publish(&clip(20), &prism.url("live/brief?youtube=yt-brief"));
    ingest.wait_recording("yt-brief", 20_000, WAIT).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    publisher.start_kill().unwrap();
    let _ = publisher.wait().await;
    let dropped = tokio::time::Instant::now();
    assert!(
        ingest.saw_clean_unpublish("yt-brief").await,
        "FCUnpublish/deleteStream"
    );
    assert!(
        dropped.elapsed() >= Duration::from_millis(2_500),
        "not before max_secs"
    );
    assert_eq!(ingest.publishes("yt-brief").len(), 1);
    let recording = ingest.recording("yt-brief");
    assert_eq!(decode_errors(&recording), "");
    let got = video_hashes(&recording);
    let source: HashSet<String> = video_hashes(&clip(20)).into_iter().collect();
    let slate = got
        .iter()
        .rev()
        .take_while(|h| !source.contains(*h))
        .count();
    assert!(slate >= 60, "the slate ran at the end: {slate} frames");
    assert!(!prism.hub().is_live("live", "brief"));
    prism.stop().await;
}

/// An HEVC clip (enhanced RTMP), `seconds` long, made by FFmpeg 9.
fn hevc_clip(seconds: u32) -> PathBuf {
    let video = format!("testsrc=size=640x360:rate=30:duration={seconds}");
    let audio = format!("sine=frequency=440:sample_rate=48000:duration={seconds}");
    generate(
        &ffmpeg9(),
        &format!("standby-hevc-{seconds}s.flv"),
        &[
            "-f",
            "lavfi",
            "-i",
            &video,
            "-f",
            "lavfi",
            "-i",
            &audio,
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error:scenecut=0",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "30",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-shortest",
        ],
    )
}

/// An HEVC stream with an ffmpeg that cannot write HEVC to FLV (Debian's 5.1):
/// no slate, the grace period as before, and the status says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hevc_stream_without_an_ffmpeg_for_its_slate_falls_back_to_the_grace_period() {
    let prism = Prism::start_with(|c| {
        standby_on(c);
        c.transcode.ffmpeg = require("ffmpeg").display().to_string();
        c.relay.publisher_grace_secs = 4;
    })
    .await;
    let mut publisher = publish_using(&ffmpeg9(), &hevc_clip(20), &prism.url("live/hevc1"), &[]);
    prism.wait_live("live", "hevc1").await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    publisher.start_kill().unwrap();
    let _ = publisher.wait().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = prism.streams_json().await;
    let stream = &status["streams"][0];
    assert_eq!(stream["state"], "reconnecting", "{status}");
    let reason = stream["inputs"]["standby_unavailable"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("hevc") && reason.contains("grace period"),
        "the status says why there is no slate: {status}"
    );
    // The grace period's end, not the slate's five minutes.
    let mut ended = false;
    for _ in 0..40 {
        if !prism.hub().is_live("live", "hevc1") {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ended, "the stream ended after the grace period");
    prism.stop().await;
}

/// An HEVC stream with an ffmpeg that can (FFmpeg 9): the slate is HEVC, and a
/// player watching gets it after the publisher drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hevc_stream_gets_an_hevc_slate_when_the_ffmpeg_can_make_one() {
    let prism = Prism::start_with(|c| {
        standby_on(c);
        c.transcode.ffmpeg = ffmpeg9().display().to_string();
        c.http.token = Some("operator-token".into());
    })
    .await;
    let url = prism.url("live/hevc2");
    let clip = hevc_clip(20);
    let mut publisher = publish_using(&ffmpeg9(), &clip, &url, &[]);
    prism.wait_live("live", "hevc2").await;
    let player = play_framemd5_using(&ffmpeg9(), &url);
    tokio::time::sleep(Duration::from_secs(6)).await;
    publisher.start_kill().unwrap();
    let _ = publisher.wait().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = prism.streams_json().await;
    assert_eq!(status["streams"][0]["state"], "standby", "{status}");
    assert!(status["streams"][0]["inputs"]["standby_unavailable"].is_null());
    // The player gets the slate; the operator's kick ends the stream on standby.
    let id = status["streams"][0]["id"].as_str().unwrap().to_owned();
    let addr = prism.app.as_ref().unwrap().http_addr();
    let kicked = http_client()
        .delete(format!("http://{addr}/api/v1/streams/{id}"))
        .bearer_auth("operator-token")
        .send()
        .await
        .unwrap();
    assert!(kicked.status().is_success(), "{}", kicked.status());
    let (_, out) = finish(player).await;
    let source: HashSet<String> = framemd5_of_file_with(&ffmpeg9(), &clip)
        .into_iter()
        .map(|f| f.hash)
        .collect();
    let video: Vec<Frame> = parse_framemd5(&out)
        .into_iter()
        .filter(|f| f.stream == 0)
        .collect();
    let slate = video
        .iter()
        .rev()
        .take_while(|f| !source.contains(&f.hash))
        .count();
    assert!(
        slate >= 60,
        "seconds of HEVC slate reached the player: {slate} frames"
    );
    prism.stop().await;
}

/// Sends `signal` (`STOP`, `CONT`) to the process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// An encoder whose network stalls keeps its connection open and sends nothing
/// (here: the ffmpeg publisher stopped with SIGSTOP). After a few seconds of
/// silence the slate goes on air; when the encoder sends again, it goes back on
/// air at its keyframe. One connection, decodable, continuous timestamps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_goes_silent_gets_the_slate_until_it_sends_again() {
    let source = clip_of(
        "silent-a.flv",
        16,
        "testsrc",
        "640x360",
        30,
        "main",
        (44_100, 2),
    );
    let ingest = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", ingest.url());
        standby_on(c);
    })
    .await;
    let publisher = publish(&source, &prism.url("live/quiet?youtube=yt-quiet"));
    let pid = publisher.id().unwrap();
    ingest.wait_recording("yt-quiet", 20_000, WAIT).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    signal(pid, "STOP");
    tokio::time::sleep(Duration::from_secs(9)).await;
    let status = prism.streams_json().await;
    signal(pid, "CONT");
    assert_eq!(status["streams"][0]["state"], "standby", "{status}");
    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "the encoder carries on: {exit}");
    assert!(ingest.saw_clean_unpublish("yt-quiet").await);
    assert_eq!(ingest.publishes("yt-quiet").len(), 1, "one connection");
    let recording = ingest.recording("yt-quiet");
    assert_eq!(decode_errors(&recording), "");
    assert_continuous(&recording, 1000.0 / 30.0);
    let got = video_hashes(&recording);
    let sent = video_hashes(&source);
    let known: HashSet<&String> = sent.iter().collect();
    let before = got.iter().take_while(|h| known.contains(h)).count();
    let slate = got[before..]
        .iter()
        .take_while(|h| !known.contains(h))
        .count();
    let after = &got[before + slate..];
    assert_eq!(
        &got[..before],
        &sent[..before],
        "the stream up to the silence"
    );
    assert!(
        slate >= 30 * 4,
        "seconds of slate in the silence: {slate} frames"
    );
    assert!(!after.is_empty(), "the encoder back on air");
    assert_eq!(
        after,
        &sent[sent.len() - after.len()..],
        "then the encoder's stream to its end, from a keyframe"
    );
    prism.stop().await;
}

/// With user files, a backup may publish with another of the user's keys: it
/// joins the user's live stream. A backup while nothing is live is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_may_use_another_of_the_users_keys_and_needs_a_live_stream() {
    let users = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("standby-users-{}", std::process::id()));
    std::fs::create_dir_all(&users).unwrap();
    std::fs::write(
        users.join("frank.toml"),
        "stream_keys = [\"frank-main-key\", \"frank-spare-key\"]\n",
    )
    .unwrap();
    let prism = Prism::start_with(|c| c.users.dir = Some(users.clone())).await;
    let clip = clip(20);
    let early = publish(&clip, &prism.url("live/frank-spare-key?role=backup"));
    let (exit, _) = finish(early).await;
    assert!(
        !exit.success(),
        "a backup with nothing to back up is refused"
    );
    let mut primary = publish(&clip, &prism.url("live/frank-main-key"));
    prism.wait_live("live", "frank-main-key").await;
    let mut backup = publish(&clip, &prism.url("live/frank-spare-key?role=backup"));
    let mut joined = false;
    for _ in 0..40 {
        let status = prism.streams_json().await;
        if status["streams"][0]["inputs"]["backup_connected"] == true {
            assert_eq!(status["streams"].as_array().unwrap().len(), 1, "{status}");
            assert_eq!(
                status["streams"][0]["state"], "live",
                "the primary is on air"
            );
            joined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(joined, "the spare key joined frank's stream as its backup");
    assert!(!prism.hub().is_live("live", "frank-spare-key"));
    primary.start_kill().unwrap();
    backup.start_kill().unwrap();
    let _ = primary.wait().await;
    let _ = backup.wait().await;
    prism.stop().await;
}
