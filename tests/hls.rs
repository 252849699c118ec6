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
    let base = format!("http://{http}/hls/{}", stream_id(&prism).await);

    // The first request starts packaging and returns once a part exists.
    let first = get(&format!("{base}/index.m3u8")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
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
