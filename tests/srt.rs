//! The SRT ingest against real callers: ffmpeg's libsrt (plain, with
//! B-frames, with a passphrase right and wrong) and libsrt's own
//! `srt-live-transmit`; nginx-rtmp records what prism relays, compared with the
//! source picture by picture and in its composition offsets; a caller killed and
//! restarted within the grace period keeps the destination's one publish; a
//! caller whose stream ends inside a picture has that picture dropped; and
//! garbage, a PID storm and broken PES lengths over SRT end their connection
//! alone while an RTMP publisher's stream stays intact.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::sinks::{NginxSink, recording_framemd5};
use common::srt::{srt_publish, srt_publish_using, srt_url};
use common::ts::{b_frame_clip, inside_a_picture, mpeg_ts_of};
use common::*;
use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(20);
const PASSPHRASE: &str = "correct-horse-battery";

async fn prism_with_srt(ingest: &NginxSink, tune: impl FnOnce(&mut prism::Config)) -> Prism {
    let url = ingest.url();
    Prism::start_with(move |c| {
        point_preset(c, "youtube", url);
        c.srt.listen = Some("127.0.0.1:0".parse().unwrap());
        tune(c);
    })
    .await
}

/// (dts step, pts - dts) of every video packet, in ms.
fn video_timing(file: &Path) -> Vec<(i64, i64)> {
    let out = std::process::Command::new(require("ffprobe"))
        .args(["-v", "error", "-select_streams", "v", "-show_entries"])
        .args(["packet=pts,dts", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    let packets: Vec<(i64, i64)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (pts, dts) = l.split_once(',')?;
            Some((pts.trim().parse().ok()?, dts.trim().parse().ok()?))
        })
        .collect();
    packets
        .windows(2)
        .map(|w| (w[1].1 - w[0].1, w[1].0 - w[1].1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_over_srt_and_b_frames_keep_their_composition_offsets() {
    let ingest = NginxSink::start("live2").await;
    let prism = prism_with_srt(&ingest, |_| {}).await;
    let source = b_frame_clip();
    let url = srt_url(&prism, "#!::r=live/srt-key?youtube=yt-srt,m=publish", "");
    let publisher = srt_publish(&source, &url);
    prism.wait_live("live", "srt-key").await;
    ingest.wait_publishing("yt-srt", WAIT).await;
    let streams = prism.streams_json().await;
    assert!(
        !streams.to_string().contains("srt-key"),
        "the key is never shown"
    );
    let (status, _) = finish(publisher).await;
    assert!(status.success());
    // SRT has no unpublish: the end of the connection is a drop, and the
    // destination ends after the grace period.
    ingest
        .wait_unpublished("yt-srt", Duration::from_secs(60))
        .await;
    let recording = ingest.recording("yt-srt");
    assert_remuxed_intact(&source, &recording, 500);
    let (sent, got) = (video_timing(&source), video_timing(&recording));
    assert!(
        sent.iter().any(|(_, offset)| *offset > 0),
        "the clip has B-frames"
    );
    assert!(
        sent.starts_with(&got) && sent.len() - got.len() <= 15,
        "the frame timing and composition offsets arrive as sent"
    );
    prism.stop().await;
}

/// A 6 s clip made and sent over SRT by FFmpeg 9 with `codecs` (its codec
/// arguments), remuxed by FFmpeg 9 (`[transcode] ffmpeg`: its FLV muxer writes
/// HEVC and Opus as enhanced RTMP) and recorded by FFmpeg 9 at the ingest, a
/// second prism (nginx-rtmp drops enhanced media): every picture and audio
/// packet arrives, and the status shows the `(video, audio)` codecs.
async fn enhanced_over_srt_arrives_intact(key: &str, codecs: &[&str], shown: (&str, &str)) {
    let ffmpeg = ffmpeg9();
    let ingest = Prism::start().await;
    let remuxer = ffmpeg.display().to_string();
    let ingest_url = ingest.url("live2");
    let prism = Prism::start_with(move |c| {
        point_preset(c, "youtube", ingest_url);
        c.srt.listen = Some("127.0.0.1:0".parse().unwrap());
        // A second of latency (SRT takes the larger of the two ends'), so that
        // x265 and two prisms beside the other tests never hold a datagram
        // past it (SRT would drop it as too late). The caller's last moments,
        // up to the latency, are lost at its close: hence the tail allowed.
        c.srt.latency_ms = 1000;
        c.transcode.ffmpeg = remuxer;
    })
    .await;
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30:duration=6",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=6",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "60",
        "-shortest",
    ];
    args.extend(codecs);
    let source = generate(&ffmpeg, &format!("{key}-srt-6s.flv"), &args);
    let recording = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("srt-{key}-{}.flv", std::process::id()));
    let destination = format!("yt-{key}");
    let played = ingest.url(&format!("live2/{destination}"));
    let recorder = spawn_path(
        &ffmpeg,
        &[
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            &played,
            "-c",
            "copy",
            "-y",
            recording.to_str().unwrap(),
        ],
    );
    ingest.wait_subscribers("live2", &destination, 1).await;
    let url = srt_url(&prism, &format!("live/{key}?youtube={destination}"), "");
    let publisher = srt_publish_using(&ffmpeg, &source, &url);
    prism.wait_live("live", key).await;
    // Shown once the remux's first video and audio arrived.
    let deadline = tokio::time::Instant::now() + WAIT;
    let codecs = loop {
        let streams = prism.streams_json().await;
        let publisher = &streams["streams"][0]["publisher"];
        let codecs = (
            publisher["video"]["codec"].clone(),
            publisher["audio"]["codec"].clone(),
        );
        let known = !codecs.0.is_null() && !codecs.1.is_null();
        if known || tokio::time::Instant::now() > deadline {
            break codecs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (codecs.0.as_str(), codecs.1.as_str()),
        (Some(shown.0), Some(shown.1))
    );
    let (status, _) = finish(publisher).await;
    assert!(status.success());
    // The SRT caller's end is a drop; the destination ends after the grace
    // period, and the ingest's stream with it.
    let (status, _) = finish(recorder).await;
    assert!(status.success(), "the recorder at the ingest: {status}");
    assert_remuxed_intact_with(&ffmpeg, &source, &recording, 1_200);
    let _ = std::fs::remove_file(&recording);
    prism.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_over_srt_reaches_the_ingest_intact_when_the_remuxing_ffmpeg_writes_enhanced_flv() {
    // With B-frames. The close cuts the TS inside a frame of each track; that
    // frame is dropped (`server::ts_end`), not sent on damaged (which this
    // test caught: one audio packet or picture at the end differed).
    let hevc = "-c:v libx265 -preset ultrafast -x265-params log-level=error:bframes=2";
    let codecs: Vec<&str> = hevc
        .split(' ')
        .chain(["-c:a", "aac", "-b:a", "64k"])
        .collect();
    enhanced_over_srt_arrives_intact("hevc", &codecs, ("hevc", "aac")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_over_srt_reaches_the_ingest_intact_when_the_remuxing_ffmpeg_writes_enhanced_flv() {
    let codecs = "-c:v libx264 -preset ultrafast -bf 0 -c:a libopus -b:a 64k";
    let codecs: Vec<&str> = codecs.split(' ').collect();
    enhanced_over_srt_arrives_intact("opus", &codecs, ("h264", "opus")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_admits_the_right_caller_and_refuses_the_wrong_one_and_none() {
    let ingest = NginxSink::start("live2").await;
    let prism = prism_with_srt(&ingest, |c| c.srt.passphrase = Some(PASSPHRASE.into())).await;
    let source = test_flv();
    for (name, extra) in [
        ("wrong-pass", "&passphrase=wrong-horse-battery"),
        ("no-pass", ""),
    ] {
        let url = srt_url(&prism, &format!("live/{name}"), extra);
        let (status, _) = finish(srt_publish(&source, &url)).await;
        assert!(!status.success(), "{name}: refused");
        assert!(!prism.hub().is_live("live", name), "{name}");
    }
    let url = srt_url(
        &prism,
        "live/right-pass?youtube=yt-pass",
        &format!("&passphrase={PASSPHRASE}&pbkeylen=16"),
    );
    let publisher = srt_publish(&source, &url);
    prism.wait_live("live", "right-pass").await;
    let (status, _) = finish(publisher).await;
    assert!(status.success());
    ingest
        .wait_unpublished("yt-pass", Duration::from_secs(60))
        .await;
    assert_remuxed_intact(&source, &ingest.recording("yt-pass"), 500);
    assert_logs_hide(&[PASSPHRASE]);
    prism.stop().await;
}

/// `srt-live-transmit` sending what ffmpeg writes to its stdin, as MPEG-TS in
/// real time; returns both children.
fn live_transmit(source: &Path, url: &str) -> (Child, Child) {
    let mut ffmpeg = Command::new(require("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(source)
        .args(["-c", "copy", "-f", "mpegts", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ts: Stdio = ffmpeg.stdout.take().unwrap().try_into().unwrap();
    let transmit = Command::new(require("srt-live-transmit"))
        .args(["-q", "file://con", url])
        .stdin(ts)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (ffmpeg, transmit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_live_transmit_publishes_and_a_caller_back_within_the_grace_period_carries_on() {
    let ingest = NginxSink::start("live2").await;
    let prism = prism_with_srt(&ingest, |c| c.relay.publisher_grace_secs = 15).await;
    let source = clip(30);
    let url = srt_url(&prism, "live/slt-key?youtube=yt-slt", "");
    let (mut ffmpeg, mut transmit) = live_transmit(&source, &url);
    prism.wait_live("live", "slt-key").await;
    ingest.wait_publishing("yt-slt", WAIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The caller dies.
    transmit.kill().await.unwrap();
    ffmpeg.kill().await.unwrap();
    // SRT says nothing when a caller vanishes: the connection ends after the
    // peer idle timeout (5 s), then the stream waits for its publisher.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !prism.streams_json().await["streams"][0]["publisher"].is_null() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the drop was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        prism.hub().is_live("live", "slt-key"),
        "held for its publisher"
    );
    // And comes back, with ffmpeg's libsrt this time.
    let publisher = srt_publish(&test_flv(), &url);
    let (status, _) = finish(publisher).await;
    assert!(status.success());
    ingest
        .wait_unpublished("yt-slt", Duration::from_secs(60))
        .await;
    assert_eq!(
        ingest.publishes("yt-slt").len(),
        1,
        "the destination saw one broadcast throughout"
    );
    // Both callers' pictures arrived: the first's from its start, the second's
    // to its end, but for its last (dropped at the close as possibly cut
    // short: `server::ts_end`).
    let got = decoded_pictures(&ingest.recording("yt-slt"));
    let first = decoded_pictures(&source);
    let second = decoded_pictures(&test_flv());
    assert_eq!(got[..60], first[..60], "srt-live-transmit's first pictures");
    let last = &second[second.len() - 60..];
    let at = got.iter().rposition(|p| *p == last[0]);
    let arrived = &got[at.expect("the second caller's last pictures")..];
    assert!(
        last.starts_with(arrived) && arrived.len() >= 58,
        "the second caller's last pictures: {} of 60",
        arrived.len()
    );
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_a_caller_cut_short_at_its_close_is_dropped_not_sent_on_damaged() {
    let ingest = NginxSink::start("live2").await;
    let prism = prism_with_srt(&ingest, |_| {}).await;
    let source = b_frame_clip();
    let mut ts = mpeg_ts_of(&source);
    ts.truncate(inside_a_picture(&ts));
    // srt-tokio as the caller sends exactly these bytes (srt-live-transmit
    // reading a pipe would cut them where its reads end), in TS-aligned
    // messages, and closes only once everything was delivered.
    let address = prism.app.as_ref().unwrap().srt_addr().unwrap();
    let mut caller = srt_tokio::SrtSocket::builder()
        .call(address, Some("live/cut-key?youtube=yt-cut"))
        .await
        .expect("the caller connects");
    for message in ts.chunks(7 * 188) {
        let message = bytes::Bytes::copy_from_slice(message);
        caller
            .send((std::time::Instant::now(), message))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Past the latency, then the close (the remux may still be probing: the
    // stream is shorter than its probe).
    tokio::time::sleep(Duration::from_secs(2)).await;
    caller.close_and_finish().await.unwrap();
    ingest
        .wait_unpublished("yt-cut", Duration::from_secs(60))
        .await;
    // Every picture that arrived is the source's: not the one cut short,
    // which would decode damaged (the rest of the clip never came).
    assert_remuxed_intact(&source, &ingest.recording("yt-cut"), 4_000);
    prism.stop().await;
}

/// A real MPEG-TS of `source` whose every PES header lies: its packet length
/// and its header length are wrong.
fn broken_pes_lengths(source: &Path) -> Vec<u8> {
    let mut ts = mpeg_ts_of(source);
    let mut broken = 0;
    for (i, packet) in ts.chunks_exact_mut(188).enumerate() {
        let starts_unit = packet[1] & 0x40 != 0;
        let payload = match (packet[3] >> 4) & 0x3 {
            1 => 4,
            3 => 5 + packet[4] as usize,
            _ => continue,
        };
        if starts_unit && payload + 9 <= 188 && packet[payload..payload + 3] == [0, 0, 1] {
            // PES_packet_length: too long or too short; PES_header_data_length:
            // past the end of the packet.
            let length: u16 = if i % 2 == 0 { 0xFFF0 } else { 3 };
            packet[payload + 4..payload + 6].copy_from_slice(&length.to_be_bytes());
            packet[payload + 8] = 0xF0;
            broken += 1;
        }
    }
    assert!(broken > 100, "{broken} PES headers broken");
    ts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_a_pid_storm_and_broken_pes_lengths_over_srt_end_alone_while_an_rtmp_stream_stays_intact()
 {
    let ingest = NginxSink::start("live2").await;
    let prism = prism_with_srt(&ingest, |c| {
        c.rtmp.idle_timeout_secs = 3;
        c.relay.publisher_grace_secs = 0;
    })
    .await;
    let source = clip(12);
    let honest = publish(&source, &prism.url("live/honest?youtube=yt-honest"));
    prism.wait_live("live", "honest").await;
    ingest.wait_publishing("yt-honest", WAIT).await;

    // Random bytes, TS packets with valid sync bytes but 4000 PIDs, and a real
    // stream whose PES lengths lie.
    let garbage: Vec<u8> = (0..1_316 * 400u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut storm = Vec::new();
    for i in 0..1_316u32 * 2 {
        let pid = (i % 4000) as u16 + 32;
        let mut packet = vec![
            0x47,
            0x40 | (pid >> 8) as u8,
            pid as u8,
            0x10 | (i % 16) as u8,
        ];
        packet.extend((0..184).map(|j| (i + j) as u8));
        storm.extend(packet);
    }
    let broken = broken_pes_lengths(&clip(4));
    for (name, bytes) in [
        ("garbage", garbage),
        ("storm", storm),
        ("broken-pes", broken),
    ] {
        let url = srt_url(&prism, &format!("live/{name}"), "");
        let mut transmit = Command::new(require("srt-live-transmit"))
            .args(["-q", "file://con", &url])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = transmit.stdin.take().unwrap();
        // A little at a time, as a live caller sends, for a few seconds.
        for chunk in bytes.chunks(1_316 * 40) {
            if stdin.write_all(chunk).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Admitted (the key is fine), then given up on: nothing in it could
        // be read.
        prism.wait_live("live", name).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while prism.hub().is_live("live", name) {
            assert!(tokio::time::Instant::now() < deadline, "{name}: still live");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(stdin);
        let _ = transmit.kill().await;
    }
    let (status, _) = finish(honest).await;
    assert!(status.success());
    ingest.wait_unpublished("yt-honest", WAIT).await;
    let recorded = recording_framemd5(&ingest.recording("yt-honest"));
    assert_eq!(assert_source_from_keyframe(&source, &recorded), 0);
    prism.stop().await;
}
