//! HLS and LL-HLS from a real ffmpeg publish: the playlists parsed by an
//! independent parser (m3u8-rs), read by ffprobe and ffmpeg, blocking reloads,
//! every segment's frames compared with the source's, and access by token.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use m3u8_rs::{MediaPlaylist, Playlist};

fn parse(text: &str) -> MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(Playlist::MediaPlaylist(playlist)) => playlist,
        other => panic!("not a media playlist: {other:?}\n{text}"),
    }
}

/// The value of `NAME=` on the first line starting with `tag`.
fn attribute(text: &str, tag: &str, name: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with(tag))?;
    let value = line.split_once(&format!("{name}="))?.1;
    Some(value.split(',').next()?.trim_matches('"').to_owned())
}

async fn get(url: &str) -> reqwest::Response {
    http_client().get(url).send().await.unwrap()
}

async fn stream_id(prism: &Prism) -> String {
    let streams = prism.streams_json().await;
    streams["streams"][0]["id"].as_str().unwrap().to_owned()
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn ll_hls_of_a_live_stream_is_the_source_frame_for_frame() {
    let prism = Prism::start().await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let source = clip(16);
    let publisher = publish(&source, &prism.url("live/hls-key"));
    prism.wait_live("live", "hls-key").await;
    let id = stream_id(&prism).await;
    let base = format!("http://{http}/hls/{id}");
    let hls = &prism.streams_json().await["streams"][0]["hls"];
    assert_eq!(hls["url"], format!("/hls/{id}/index.m3u8"));
    assert_eq!(hls["packaging"], false, "nobody asked yet");

    // The first request starts packaging and returns once a part exists.
    let first = http_client()
        .get(format!("{base}/index.m3u8"))
        .header("Origin", "https://somewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    // Any site's page may fetch it by default (CORS).
    assert_eq!(first.headers()["access-control-allow-origin"], "*");
    let text = first.text().await.unwrap();
    let playlist = parse(&text);
    assert_eq!(playlist.target_duration, 3);
    assert_eq!(
        attribute(&text, "#EXT-X-PART-INF", "PART-TARGET").as_deref(),
        Some("0.500")
    );
    assert_eq!(
        attribute(&text, "#EXT-X-SERVER-CONTROL", "CAN-BLOCK-RELOAD").as_deref(),
        Some("YES")
    );
    assert!(text.contains("#EXT-X-MAP:URI=\"src.init0.mp4\""));
    assert!(
        !text.contains("hls-key"),
        "the key is nowhere in the playlist"
    );

    // A blocking reload for the hinted part returns a playlist that lists it,
    // and the hinted part itself is a CMAF chunk.
    let hint = attribute(&text, "#EXT-X-PRELOAD-HINT", "URI").unwrap();
    let (msn, part) = {
        let numbers: Vec<u64> = hint
            .trim_start_matches("src.")
            .trim_end_matches(".m4s")
            .split('.')
            .map(|n| n.parse().unwrap())
            .collect();
        (numbers[0], numbers[1])
    };
    let part_bytes = get(&format!("{base}/{hint}")).await;
    assert_eq!(part_bytes.status(), 200);
    let part_bytes = part_bytes.bytes().await.unwrap();
    assert_eq!(&part_bytes[4..8], b"moof");
    let reload = get(&format!(
        "{base}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"
    ))
    .await;
    assert_eq!(reload.status(), 200);
    let reloaded = reload.text().await.unwrap();
    parse(&reloaded);
    assert!(
        reloaded.contains(&format!("URI=\"{hint}\""))
            || reloaded.contains(&format!("src.{msn}.m4s")),
        "the blocking reload lists the part it waited for:\n{reloaded}"
    );
    // More than two segments ahead is refused rather than held.
    let ahead = get(&format!("{base}/index.m3u8?_HLS_msn={}", msn + 3)).await;
    assert_eq!(ahead.status(), 400);
    for bad in [
        "src.init9.mp4",
        "src.999.m4s",
        "src.0.99.m4s",
        "nope.m3u8",
        "src.1.m4",
    ] {
        assert_eq!(get(&format!("{base}/{bad}")).await.status(), 404, "{bad}");
    }

    // ffprobe and ffmpeg read the live playlist without an error, once it lists
    // complete segments (ffmpeg does not read parts).
    let url = format!("{base}/index.m3u8");
    assert_eq!(get(&format!("{url}?_HLS_msn=2")).await.status(), 200);
    let probe = tokio::process::Command::new(require("ffprobe"))
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &url,
        ])
        .output()
        .await
        .unwrap();
    assert!(probe.status.success());
    assert_eq!(String::from_utf8_lossy(&probe.stderr), "");
    let codecs = String::from_utf8(probe.stdout).unwrap();
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "{codecs}"
    );
    let read = tokio::process::Command::new(require("ffmpeg"))
        .args([
            "-v", "error", "-i", &url, "-t", "3", "-c", "copy", "-f", "null", "-",
        ])
        .output()
        .await
        .unwrap();
    assert!(read.status.success());
    assert_eq!(String::from_utf8_lossy(&read.stderr), "");

    // Every segment, as the playlist lists it, until the stream ends.
    let init = get(&format!("{base}/src.init0.mp4"))
        .await
        .bytes()
        .await
        .unwrap();
    let mut segments = BTreeMap::new();
    let mut next_msn = None;
    loop {
        let url = match next_msn {
            Some(msn) => format!("{base}/index.m3u8?_HLS_msn={msn}"),
            None => format!("{base}/index.m3u8"),
        };
        let response = get(&url).await;
        if response.status() == 404 {
            break; // the stream ended
        }
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let playlist = parse(&text);
        assert_eq!(
            playlist.target_duration, 3,
            "the target duration never changes"
        );
        for (i, segment) in playlist.segments.iter().enumerate() {
            let msn = playlist.media_sequence + i as u64;
            assert!(
                segment.duration <= 3.5,
                "segment {msn}: {}",
                segment.duration
            );
            if let std::collections::btree_map::Entry::Vacant(slot) = segments.entry(msn) {
                let bytes = get(&format!("{base}/{}", segment.uri)).await;
                assert_eq!(bytes.status(), 200, "{}", segment.uri);
                slot.insert(bytes.bytes().await.unwrap());
            }
        }
        if playlist.end_list {
            break;
        }
        next_msn = Some(playlist.media_sequence + playlist.segments.len() as u64);
    }
    let (status, _) = finish(publisher).await;
    assert!(status.success());
    assert!(segments.len() >= 4, "{} segments", segments.len());
    let numbers: Vec<u64> = segments.keys().copied().collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "no segment missed: {numbers:?}"
    );

    // The segments, joined after their initialization segment, are the source's
    // frames from a keyframe on, byte for byte and in order.
    let dir = tmp_dir("frames");
    let joined = dir.join("joined.mp4");
    let mut bytes = init.to_vec();
    for segment in segments.values() {
        bytes.extend_from_slice(segment);
    }
    std::fs::write(&joined, &bytes).unwrap();
    let got = framemd5_of_file(&joined);
    let expected = framemd5_of_file(&source);
    let start = assert_contiguous_run(&expected, &got, 0);
    let keyframe = &expected
        .iter()
        .filter(|f| f.stream == 0)
        .nth(start)
        .unwrap()
        .hash;
    assert!(
        keyframe_hashes(&source).contains(keyframe),
        "the segments start on a keyframe"
    );
    assert_contiguous_run(&expected, &got, 1);
    let _ = std::fs::remove_dir_all(&dir);
    prism.stop().await;
}

const ALICE_KEY: &str = "alice-stream-key-0123";
const ALICE_TOKEN: &str = "alice-api-token-0123456789";
const BOB_TOKEN: &str = "bob-api-token-0123456789ab";

#[tokio::test]
async fn a_private_users_hls_needs_their_token_or_a_signed_one() {
    let users = tmp_dir("users");
    std::fs::write(
        users.join("alice.toml"),
        format!(
            "stream_key = \"{ALICE_KEY}\"\napi_token = \"{ALICE_TOKEN}\"\n[hls]\npublic = false\n"
        ),
    )
    .unwrap();
    std::fs::write(
        users.join("bob.toml"),
        format!("stream_key = \"bob-stream-key-0123\"\napi_token = \"{BOB_TOKEN}\"\n"),
    )
    .unwrap();
    let users_dir = users.clone();
    let prism = Prism::start_with(move |c| c.users.dir = Some(users_dir)).await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let publisher = publish(&clip(30), &prism.url(&format!("live/{ALICE_KEY}")));
    prism.wait_live("live", ALICE_KEY).await;
    let id = stream_id(&prism).await;
    let by_name = format!("http://{http}/hls/live/alice/index.m3u8");
    let by_id = format!("http://{http}/hls/{id}/index.m3u8");
    let client = http_client();

    for url in [&by_name, &by_id] {
        assert_eq!(get(url).await.status(), 401, "{url}");
    }
    let bob = client
        .get(&by_name)
        .bearer_auth(BOB_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bob.status(), 401, "another user's token opens nothing");
    let own = client
        .get(&by_name)
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    assert!(!own.text().await.unwrap().contains("token="));

    // Bob cannot have a token signed for Alice's stream; Alice can.
    let issue = format!("http://{http}/api/v1/streams/{id}/hls_token?ttl_secs=600");
    let refused = client
        .post(&issue)
        .bearer_auth(BOB_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    let issued: serde_json::Value = client
        .post(&issue)
        .bearer_auth(ALICE_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = issued["token"].as_str().unwrap().to_owned();
    let url = issued["url"].as_str().unwrap();
    assert!(
        url.starts_with("/hls/live/alice/index.m3u8?token="),
        "{url}"
    );
    let signed = get(&format!("http://{http}{url}")).await;
    assert_eq!(signed.status(), 200);
    let text = signed.text().await.unwrap();
    for line in text.lines().filter(|l| l.contains("src.")) {
        assert!(line.contains(&format!("?token={token}")), "{line}");
    }
    let init = get(&format!(
        "http://{http}/hls/live/alice/src.init0.mp4?token={token}"
    ))
    .await;
    assert_eq!(init.status(), 200);
    // The same token by id; a forged one is refused.
    assert_eq!(get(&format!("{by_id}?token={token}")).await.status(), 200);
    let (expiry, signature) = token.split_once('.').unwrap();
    let later = expiry.parse::<u64>().unwrap() + 1_000_000;
    let forged = format!("{later}.{signature}");
    assert_eq!(
        get(&format!("{by_name}?token={forged}")).await.status(),
        403
    );
    assert_eq!(get(&format!("{by_name}?token=garbage")).await.status(), 403);
    assert_logs_hide(&[ALICE_KEY]);
    drop(publisher);
    prism.stop().await;
    let _ = std::fs::remove_dir_all(&users);
}

/// An attacker on the HTTP side: a hundred blocking reloads held open at the
/// edge, floods of requests for parts that will never exist, malformed and
/// oversized queries, traversal paths. The stream's RTMP player gets every
/// packet from its keyframe, an honest HLS client keeps getting playlists, and
/// prism holds no more than its window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_hls_requests_leave_the_stream_and_honest_clients_intact() {
    let prism = Prism::start().await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let source = clip(16);
    let publisher = publish(&source, &prism.url("live/hostile-hls"));
    prism.wait_live("live", "hostile-hls").await;
    let player = play_framemd5(&prism.url("live/hostile-hls"));
    let base = format!("http://{http}/hls/{}", stream_id(&prism).await);
    assert_eq!(get(&format!("{base}/index.m3u8")).await.status(), 200);

    let attack = {
        let base = base.clone();
        tokio::spawn(async move {
            let client = http_client();
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            for round in 0..3u64 {
                let mut requests = Vec::new();
                for i in 0..100u64 {
                    let url = match i % 5 {
                        0 => format!("{base}/index.m3u8?_HLS_msn={}&_HLS_part=99", round + 2),
                        1 => format!("{base}/src.{}.{}.m4s", 1000 + i, i),
                        2 => format!("{base}/index.m3u8?_HLS_msn=-1&token={}", "x".repeat(4000)),
                        3 => format!("{base}/../../etc/passwd"),
                        _ => format!("{base}/src.0.0.m4s?_HLS_part=1"),
                    };
                    let client = client.clone();
                    requests.push(tokio::spawn(async move {
                        client.get(url).send().await.map(|r| r.status().as_u16())
                    }));
                }
                for request in requests {
                    if let Ok(Ok(status)) = request.await {
                        *statuses.entry(status).or_default() += 1;
                    }
                }
            }
            statuses
        })
    };
    // Meanwhile, an honest client follows the live edge.
    let mut honest = 0;
    let mut msn = None;
    while !attack.is_finished() {
        let url = match msn {
            Some(m) => format!("{base}/index.m3u8?_HLS_msn={m}"),
            None => format!("{base}/index.m3u8"),
        };
        let response = get(&url).await;
        assert_eq!(response.status(), 200);
        let playlist = parse(&response.text().await.unwrap());
        msn = Some(playlist.media_sequence + playlist.segments.len() as u64);
        honest += 1;
    }
    let statuses = attack.await.unwrap();
    assert!(
        honest >= 2,
        "the honest client kept going ({honest} playlists)"
    );
    assert!(
        statuses.keys().all(|s| [200, 400, 404, 503].contains(s)),
        "every hostile request got a clear answer: {statuses:?}"
    );
    let (status, _) = finish(publisher).await;
    assert!(status.success());
    let (_, out) = finish(player).await;
    assert_source_from_keyframe(&source, &parse_framemd5(&out));
    prism.stop().await;
}

/// Packaging starts at the first request and stops when nobody asked for
/// `idle_secs`; the stream goes on, and the next request starts it again.
#[tokio::test]
async fn packaging_stops_when_nobody_watches_and_starts_again_on_request() {
    let prism = Prism::start_with(|c| c.hls.idle_secs = 1).await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let publisher = publish(&clip(30), &prism.url("live/idle-hls"));
    prism.wait_live("live", "idle-hls").await;
    let base = format!("http://{http}/hls/{}", stream_id(&prism).await);
    let packagers = |metrics: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("prism_hls_streams "))
            .map(|v| v.trim().to_owned())
    };
    assert_eq!(packagers(&prism.metrics_text().await).as_deref(), Some("0"));
    assert_eq!(get(&format!("{base}/index.m3u8")).await.status(), 200);
    assert_eq!(packagers(&prism.metrics_text().await).as_deref(), Some("1"));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while packagers(&prism.metrics_text().await).as_deref() != Some("0") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "packaging never stopped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        prism.hub().is_live("live", "idle-hls"),
        "the stream goes on"
    );
    let again = get(&format!("{base}/index.m3u8")).await;
    assert_eq!(again.status(), 200);
    assert!(
        parse(&again.text().await.unwrap()).media_sequence == 0,
        "a fresh window"
    );
    drop(publisher);
    prism.stop().await;
}

/// A stream whose audio codec fragmented MP4 does not carry (MP3) gets video-
/// only HLS, said once in the log; its players are untouched.
#[tokio::test]
async fn audio_hls_cannot_carry_is_left_out_with_a_warning_and_the_stream_goes_on() {
    let source = generate(
        &require("ffmpeg"),
        "h264-mp3-6s.flv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30:duration=6",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100:duration=6",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "60",
            "-bf",
            "0",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "64k",
            "-shortest",
        ],
    );
    let prism = Prism::start().await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let publisher = publish(&source, &prism.url("live/mp3-hls"));
    prism.wait_live("live", "mp3-hls").await;
    let player = play_framemd5(&prism.url("live/mp3-hls"));
    let base = format!("http://{http}/hls/{}", stream_id(&prism).await);
    assert_eq!(get(&format!("{base}/index.m3u8")).await.status(), 200);
    let playlist = parse(
        &get(&format!("{base}/index.m3u8?_HLS_msn=1"))
            .await
            .text()
            .await
            .unwrap(),
    );
    let mut joined = get(&format!("{base}/src.init0.mp4"))
        .await
        .bytes()
        .await
        .unwrap()
        .to_vec();
    joined.extend_from_slice(
        &get(&format!("{base}/{}", playlist.segments[0].uri))
            .await
            .bytes()
            .await
            .unwrap(),
    );
    let dir = tmp_dir("mp3");
    std::fs::write(dir.join("first.mp4"), &joined).unwrap();
    let probe = std::process::Command::new(require("ffprobe"))
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(dir.join("first.mp4"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "video");
    assert!(captured_logs().contains("HLS is video only: Mp3 audio"));
    let (status, _) = finish(publisher).await;
    assert!(status.success());
    let (_, out) = finish(player).await;
    assert_source_from_keyframe(&source, &parse_framemd5(&out));
    let _ = std::fs::remove_dir_all(&dir);
    prism.stop().await;
}

/// Players on other sites fetch HLS under `[hls] allow_origins` (CORS), the
/// bearer token's preflight included; other origins get no permission.
#[tokio::test]
async fn only_the_allowed_sites_may_fetch_hls_from_their_pages() {
    let prism =
        Prism::start_with(|c| c.hls.allow_origins = vec!["https://player.example".into()]).await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let publisher = publish(&clip(20), &prism.url("live/cors-hls"));
    prism.wait_live("live", "cors-hls").await;
    let url = format!("http://{http}/hls/{}/index.m3u8", stream_id(&prism).await);
    let client = http_client();
    let allowed = client
        .get(&url)
        .header("Origin", "https://player.example")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://player.example"
    );
    let other = client
        .get(&url)
        .header("Origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    let preflight = client
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", "https://player.example")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allow_headers = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allow_headers.contains("authorization"), "{allow_headers}");
    // The API is not opened to other sites by this.
    let api = client
        .get(format!("http://{http}/api/v1/streams"))
        .header("Origin", "https://player.example")
        .send()
        .await
        .unwrap();
    assert!(!api.headers().contains_key("access-control-allow-origin"));
    drop(publisher);
    prism.stop().await;
}
