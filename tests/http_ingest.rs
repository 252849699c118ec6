//! Publishing over HTTP: curl pushes an FLV file (`-T`, as fast as it can: prism
//! paces it) and an MPEG-TS file (chunked, remuxed by ffmpeg) to `/ingest/`, and
//! an nginx-rtmp ingest records what prism relays, compared with the source; keys
//! and users as for RTMP; an MPEG-TS push that breaks off inside a picture has
//! that picture dropped, not relayed damaged; hostile and stalled bodies end
//! that push alone while an RTMP publisher's stream stays intact.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::sinks::{NginxSink, recording_framemd5};
use common::ts::{b_frame_clip, inside_a_picture, mpeg_ts_of};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("http-ingest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `curl` with `args`, its stdout (the answer's body and, last, the status code).
async fn curl(args: &[&str]) -> (String, u16) {
    let out = tokio::time::timeout(
        CHILD_TIMEOUT,
        tokio::process::Command::new(require("curl"))
            .args(["-sS", "-w", "\n%{http_code}"])
            .args(args)
            .output(),
    )
    .await
    .expect("curl finishes")
    .expect("curl runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (body.to_owned(), code.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_uploading_an_flv_file_goes_live_paced_and_relays_intact() {
    let ingest = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| point_preset(c, "youtube", ingest.url())).await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let source = test_flv();
    let url = format!("http://{http}/ingest/live/http-key?youtube=yt-http");
    let push = tokio::spawn(async move {
        let source = test_flv();
        curl(&["-T", source.to_str().unwrap(), &url]).await
    });
    prism.wait_live("live", "http-key").await;
    ingest.wait_publishing("yt-http", WAIT).await;
    // Listed as any publish is, with the client's address.
    let streams = prism.streams_json().await;
    let stream = &streams["streams"][0];
    assert!(
        stream["publisher"]["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{stream}"
    );
    assert!(!streams.to_string().contains("http-key"));
    // curl sends the 6 s file at once; prism reads it as live, so the push
    // is still going on seconds later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        prism.hub().is_live("live", "http-key"),
        "paced to real time"
    );
    let (body, code) = push.await.unwrap();
    assert_eq!(code, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["container"], "flv");
    assert!(summary["tags"].as_u64().unwrap() > 300, "{summary}");
    // The body's end is the stream's.
    ingest.wait_unpublished("yt-http", WAIT).await;
    assert!(!prism.hub().is_live("live", "http-key"));
    let recorded = recording_framemd5(&ingest.recording("yt-http"));
    assert_eq!(assert_source_from_keyframe(&source, &recorded), 0);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_mpeg_ts_push_is_remuxed_by_ffmpeg_and_relayed() {
    let ingest = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| point_preset(c, "youtube", ingest.url())).await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let source = test_flv();
    let ts = out_dir("ts").join("clip.ts");
    let status = std::process::Command::new(require("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&source)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(&ts)
        .status()
        .unwrap();
    assert!(status.success());
    let data = format!("@{}", ts.display());
    let url = format!("http://{http}/ingest/live/ts-key?youtube=yt-ts");
    let (body, code) = curl(&[
        "--data-binary",
        &data,
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Content-Type: video/mp2t",
        &url,
    ])
    .await;
    assert_eq!(code, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["container"], "mpegts");
    ingest.wait_unpublished("yt-ts", WAIT).await;
    // Remuxed, not re-encoded: every picture of the source, from the first.
    assert_remuxed_intact(&source, &ingest.recording("yt-ts"), 0);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_an_mpeg_ts_push_breaks_off_inside_is_dropped_not_sent_on_damaged() {
    let ingest = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", ingest.url());
        c.relay.publisher_grace_secs = 0;
    })
    .await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let source = b_frame_clip();
    let mut ts = mpeg_ts_of(&source);
    ts.truncate(inside_a_picture(&ts));
    // A chunked push that breaks off: the TS cut inside a picture, then the
    // connection closed without the body's terminator.
    let chunks: Vec<&[u8]> = ts.chunks(7 * 188).collect();
    let socket = send_chunked(http, "/ingest/live/cut-key?youtube=yt-cut", &chunks).await;
    prism.wait_live("live", "cut-key").await;
    drop(socket);
    ingest.wait_unpublished("yt-cut", WAIT).await;
    // Every picture that arrived is the source's: not the one cut short,
    // which would decode damaged (the rest of the clip never came).
    assert_remuxed_intact(&source, &ingest.recording("yt-cut"), 4_000);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_users_decide_as_for_rtmp() {
    let users = out_dir("users");
    std::fs::write(
        users.join("alice.toml"),
        "stream_key = \"alice-key-0001\"\n",
    )
    .unwrap();
    let dir = users.clone();
    let prism = Prism::start_with(move |c| c.users.dir = Some(dir)).await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let source = test_flv();
    let file = source.to_str().unwrap();
    let (body, code) = curl(&["-T", file, &format!("http://{http}/ingest/live/wrong-key")]).await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("unknown stream key"), "{body}");
    // The key as a bearer token: the path names its user, and only its user.
    let as_bob = format!("http://{http}/ingest/live/bob");
    let bearer = "Authorization: Bearer alice-key-0001";
    let (body, code) = curl(&["-T", file, "-H", bearer, &as_bob]).await;
    assert_eq!(code, 401, "{body}");
    let as_alice = format!("http://{http}/ingest/live/alice");
    let push = tokio::spawn({
        let source = source.clone();
        async move { curl(&["-T", source.to_str().unwrap(), "-H", bearer, &as_alice]).await }
    });
    prism.wait_live("live", "alice-key-0001").await;
    let streams = prism.streams_json().await;
    assert_eq!(streams["streams"][0]["name"], "alice");
    assert_eq!(streams["streams"][0]["user"], "alice");
    // A second push of the same stream is refused while the first is live.
    let (body, code) = curl(&[
        "-T",
        file,
        "-H",
        bearer,
        &format!("http://{http}/ingest/live/alice"),
    ])
    .await;
    assert_eq!(code, 409, "{body}");
    let (body, code) = push.await.unwrap();
    assert_eq!(code, 200, "{body}");
    common::assert_logs_hide(&["alice-key-0001"]);
    prism.stop().await;
}

/// Sends a chunked request head for `path`, then `chunks` (each a chunk), and
/// returns the answer's status line once prism gives one (or the connection
/// closes: `None`).
async fn raw_push(
    http: std::net::SocketAddr,
    path: &str,
    chunks: &[&[u8]],
    then_wait: bool,
) -> Option<String> {
    let mut socket = send_chunked(http, path, chunks).await;
    if !then_wait {
        let _ = socket.write_all(b"0\r\n\r\n").await;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(CHILD_TIMEOUT, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => panic!("prism never answered the push to {path}"),
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.lines().next().map(str::to_owned)
}

/// Opens a chunked POST to `path` and sends `chunks` (each a chunk; a write
/// that fails, as when prism already refused the push, ends the sending), the
/// body left open.
async fn send_chunked(http: std::net::SocketAddr, path: &str, chunks: &[&[u8]]) -> TcpStream {
    let mut socket = TcpStream::connect(http).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: prism\r\nTransfer-Encoding: chunked\r\n\r\n");
    socket.write_all(head.as_bytes()).await.unwrap();
    for chunk in chunks {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if socket.write_all(&framed).await.is_err() {
            break;
        }
    }
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_oversized_and_garbage_pushes_end_alone_while_an_honest_stream_stays_intact() {
    let ingest = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", ingest.url());
        c.rtmp.idle_timeout_secs = 2;
        c.relay.publisher_grace_secs = 0;
    })
    .await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let source = clip(12);
    let honest = publish(&source, &prism.url("live/honest?youtube=yt-honest"));
    prism.wait_live("live", "honest").await;
    ingest.wait_publishing("yt-honest", WAIT).await;

    // An FLV header, then silence: ended after the idle timeout, with 408.
    let header = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00";
    let status = raw_push(http, "/ingest/live/stalled", &[header], true).await;
    assert!(
        status.as_deref().unwrap_or("").contains("408"),
        "{status:?}"
    );
    assert!(!prism.hub().is_live("live", "stalled"));

    // A tag that says it is 16 MB: refused at its header, nothing allocated.
    let mut huge = header.to_vec();
    huge.extend_from_slice(&[9, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0]);
    let status = raw_push(http, "/ingest/live/huge", &[&huge], true).await;
    assert!(
        status.as_deref().unwrap_or("").contains("422"),
        "{status:?}"
    );
    assert!(!prism.hub().is_live("live", "huge"));

    // Bytes that are no container at all: ffmpeg gives up, the push ends.
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7919 % 251) as u8).collect();
    let status = raw_push(http, "/ingest/live/garbage", &[&garbage], false).await;
    assert!(
        status.as_deref().unwrap_or("").contains("422"),
        "{status:?}"
    );
    assert!(!prism.hub().is_live("live", "garbage"));

    let (status, _) = finish(honest).await;
    assert!(status.success());
    ingest.wait_unpublished("yt-honest", WAIT).await;
    let recorded = recording_framemd5(&ingest.recording("yt-honest"));
    assert_eq!(assert_source_from_keyframe(&source, &recorded), 0);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_in_another_container_is_re_encoded_to_aac() {
    let ingest = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| point_preset(c, "youtube", ingest.url())).await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let wav = out_dir("wav").join("tone.wav");
    let status = std::process::Command::new(require("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "sine=frequency=440:sample_rate=48000:duration=4"])
        .arg(&wav)
        .status()
        .unwrap();
    assert!(status.success());
    let data = format!("@{}", wav.display());
    let url = format!("http://{http}/ingest/live/wav-key?youtube=yt-wav");
    let (body, code) = curl(&["--data-binary", &data, &url]).await;
    assert_eq!(code, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["container"], "other");
    ingest.wait_unpublished("yt-wav", WAIT).await;
    assert_eq!(ffprobe_audio_codec(&ingest.recording("yt-wav")), "aac");
    prism.stop().await;
}

/// Asserts no step between a recording's audio packets is longer than a frame
/// or two; returns the audio's span in ms.
fn assert_continuous_audio(recording: &Path) -> i64 {
    let audio = stream_indexes(recording, "a")[0];
    let dts: Vec<i64> = recording_dts(recording)
        .into_iter()
        .filter(|(stream, _)| *stream == audio)
        .map(|(_, dts)| dts)
        .collect();
    let longest = dts.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(longest <= 50, "{recording:?}: a hole of {longest} ms");
    dts.last().unwrap() - dts.first().unwrap()
}

/// The RMS of 16-bit mono PCM between `from` and `to` seconds (48 kHz).
fn rms(pcm: &[i16], from: f64, to: f64) -> f64 {
    let (a, b) = ((from * 48_000.0) as usize, (to * 48_000.0) as usize);
    let window = &pcm[a.min(pcm.len())..b.min(pcm.len())];
    assert!(!window.is_empty(), "{from}-{to} s is past the end");
    (window.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / window.len() as f64).sqrt()
}

/// One second of a 440 Hz tone as MP3: a chunk as a recorder sends it.
fn mp3_chunk(dir: &str) -> Vec<u8> {
    let dir = out_dir(dir);
    let chunk = dir.join("chunk.mp3");
    let status = std::process::Command::new(require("ffmpeg"))
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .args([
            "sine=frequency=440:sample_rate=48000:duration=1",
            "-c:a",
            "libmp3lame",
        ])
        .arg(&chunk)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(&chunk).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbered_chunks_out_of_order_and_one_missing_make_a_continuous_stream() {
    let ingest = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        // YouTube needs video: it gets a black picture with the audio; a
        // preset of one's own gets the audio alone.
        point_preset(c, "youtube", ingest.url());
        point_preset(c, "radio", ingest.url());
    })
    .await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let mp3 = mp3_chunk("chunks");
    let client = http_client();
    let opened = client
        .post(format!(
            "http://{http}/ingest/live/chunky/session?chunk_ms=1000&youtube=yt-chunky&radio=chunky"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 201);
    let opened: serde_json::Value = opened.json().await.unwrap();
    let chunks = format!("http://{http}{}", opened["chunks"].as_str().unwrap());
    ingest.wait_publishing("chunky", WAIT).await;
    let put = |seq: u64, base64: bool| {
        let request = client.put(format!("{chunks}/{seq}"));
        let request = if base64 {
            use base64::Engine;
            request
                .header("content-type", "text/plain")
                .body(base64::engine::general_purpose::STANDARD.encode(&mp3))
        } else {
            request.body(mp3.clone())
        };
        async move { request.send().await.unwrap().status() }
    };
    // One chunk a second, as a recorder sends them: 3 before 2, 5 never.
    for (second, seqs) in [vec![0], vec![1], vec![3, 2], vec![4], vec![6], vec![7]]
        .into_iter()
        .enumerate()
    {
        for seq in seqs {
            assert_eq!(put(seq, seq == 2).await, 204, "chunk {seq}");
        }
        if second == 3 {
            assert_eq!(put(1, false).await, 409, "a chunk whose turn has passed");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let ended = client.delete(&chunks).send().await.unwrap();
    assert_eq!(ended.status(), 204);
    ingest.wait_unpublished("chunky", WAIT).await;
    ingest.wait_unpublished("yt-chunky", WAIT).await;
    assert_eq!(put(8, false).await, 404, "the session is gone");

    // Continuous: no step between audio packets longer than a frame or two.
    let recording = ingest.recording("chunky");
    let span = assert_continuous_audio(&recording);
    assert!((7_800..=8_300).contains(&span), "8 chunks' time: {span} ms");
    // With the picture: the same audio, from the moment the picture's
    // encode started (the stream showed it has no video at its first audio).
    let pictured = ingest.recording("yt-chunky");
    let video = ffprobe_video(&pictured);
    assert_eq!((video.width, video.height), (1280, 720));
    let span = assert_continuous_audio(&pictured);
    assert!(
        (7_000..=8_300).contains(&span),
        "about 8 chunks' time: {span} ms"
    );
    let frames_secs = video.frames as f64 / 30.0;
    assert!(
        (frames_secs * 1000.0 - span as f64).abs() < 1_000.0,
        "{frames_secs} s of pictures"
    );
    // And the hole is silence where chunk 5 would have been, sound around it.
    let out = std::process::Command::new(require("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&recording)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .unwrap();
    let pcm: Vec<i16> = out
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let (before, hole, after) = (
        rms(&pcm, 4.2, 4.8),
        rms(&pcm, 5.2, 5.8),
        rms(&pcm, 6.2, 6.8),
    );
    assert!(before > 1_000.0 && after > 1_000.0, "{before} {after}");
    assert!(hole < before / 100.0, "silence: {hole} against {before}");
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_decodes_two_chunks_at_once_and_refuses_hopeless_ones_before_decoding() {
    let prism = Prism::start().await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let mp3 = mp3_chunk("bounded");
    let client = http_client();
    let opened: serde_json::Value = client
        .post(format!(
            "http://{http}/ingest/live/bounded/session?chunk_ms=1000"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chunks = format!("http://{http}{}", opened["chunks"].as_str().unwrap());
    // Twelve at once, as a client with a backlog would send them: two are
    // decoded at a time, the others are told to come back.
    let puts = (0..12u64).map(|seq| {
        let request = client.put(format!("{chunks}/{seq}")).body(mp3.clone());
        async move { request.send().await.unwrap() }
    });
    let answers = futures_util::future::join_all(puts).await;
    let mut accepted = 0;
    let mut busy = 0;
    for answer in &answers {
        match answer.status().as_u16() {
            204 => accepted += 1,
            429 => {
                assert_eq!(answer.headers()["retry-after"], "1");
                busy += 1;
            }
            other => panic!("chunk answered {other}"),
        }
    }
    assert!(
        accepted >= 2 && busy >= 1,
        "{accepted} accepted, {busy} told to wait"
    );
    // Past the window, or already taken: refused at once, not decoded
    // (garbage would be a 422 if it were).
    let far = client
        .put(format!("{chunks}/100"))
        .body("not audio")
        .send()
        .await
        .unwrap();
    assert_eq!(far.status(), 409);
    let first = answers.iter().position(|a| a.status() == 204).unwrap();
    let again = client
        .put(format!("{chunks}/{first}"))
        .body("not audio")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let ended = client.delete(&chunks).send().await.unwrap();
    assert_eq!(ended.status(), 204);
    prism.stop().await;
}
