//! Cue points: one posted to the API while a real ffmpeg publishes reaches the
//! nginx-rtmp ingest (read off the wire by a tap in front of it, since nginx-rtmp
//! records no data messages), an rtmpdump player (read off the wire by a tap in
//! front of prism: rtmpdump writes no data messages but onMetaData) and the
//! HLS playlist (`EXT-X-DATERANGE`), each at the stream's timestamp of the moment
//! it was posted; and a publisher's own `onCuePoint` and `onTextData` pass
//! through to a destination and a player in order with the media around them.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::sinks::{NginxSink, recording_framemd5};
use common::tap::{Tap, Tapped};
use common::*;
use prism::flv::{FlvTag, TagType};
use prism::rtmp::amf0::{self, Amf0Value};
use prism::rtmp::cue::CuePoint;
use prism::rtmp::message::type_id;

const TOKEN: &str = "cue-admin-token";
const WAIT: Duration = Duration::from_secs(20);

/// (type id, timestamp, payload) of every message or tag, in order.
type Item = (u8, u32, Bytes);

fn from_tap(messages: Vec<Tapped>) -> Vec<Item> {
    messages
        .into_iter()
        .map(|m| (m.type_id, m.timestamp, m.payload))
        .collect()
}

fn is_media(item: &Item) -> bool {
    matches!(item.0, type_id::AUDIO | type_id::VIDEO)
}

/// The position of the data message whose cue is named `name`.
fn cue_named(items: &[Item], name: &str) -> Option<(usize, CuePoint)> {
    items.iter().enumerate().find_map(|(i, item)| {
        let cue = (item.0 == type_id::DATA_AMF0)
            .then(|| CuePoint::decode(&item.2))
            .flatten()?;
        (cue.name() == name).then_some((i, cue))
    })
}

/// Asserts that the cue named `name` is in `items`, stamped with the latest
/// media timestamp sent before it (the stream's "now" when it was inserted),
/// and followed by more media. Returns its timestamp.
fn assert_cue_at_the_edge(items: &[Item], name: &str, whose: &str) -> u32 {
    let (at, _) = cue_named(items, name).unwrap_or_else(|| panic!("{whose}: no cue {name}"));
    let latest_before = items[..at]
        .iter()
        .filter(|i| is_media(i))
        .map(|i| i.1)
        .max()
        .unwrap_or_else(|| panic!("{whose}: the cue came before any media"));
    assert_eq!(
        items[at].1, latest_before,
        "{whose}: the cue is stamped with the stream's latest timestamp"
    );
    assert!(
        items[at + 1..].iter().any(is_media),
        "{whose}: media went on after the cue"
    );
    items[at].1
}

async fn post_cue(
    http: std::net::SocketAddr,
    id: &str,
    token: &str,
    body: &str,
) -> reqwest::Response {
    http_client()
        .post(format!("http://{http}/api/v1/streams/{id}/cue"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

fn out_dir(name: &str) -> std::path::PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cue-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rtmpdump(url: &str, out: &Path) -> tokio::process::Child {
    spawn(
        "rtmpdump",
        &["-q", "--live", "-r", url, "-o", out.to_str().unwrap()],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_cue_reaches_the_destination_the_player_and_hls_at_the_streams_timestamp() {
    let ingest = NginxSink::start("live2").await;
    let tap = Tap::start(ingest.port()).await;
    // A destination with a profile: its stream comes out of ffmpeg, which
    // carries no data messages through, so the cue must be put into it too.
    let encoded_ingest = NginxSink::start("app").await;
    let encoded_tap = Tap::start(encoded_ingest.port()).await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", tap.url("live2"));
        point_preset(c, "twitch", encoded_tap.url("app"));
        c.profiles.insert("small".into(), light_profile(120, 200));
        c.http.token = Some(TOKEN.to_owned());
    })
    .await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let source = clip(12);
    let publisher = publish(
        &source,
        &prism.url("live/cue-key?youtube=yt-cue-key&twitch=tw-cue-key&twitch_profile=small"),
    );
    prism.wait_live("live", "cue-key").await;
    ingest.wait_publishing("yt-cue-key", WAIT).await;
    encoded_ingest.wait_publishing("tw-cue-key", WAIT).await;
    let dir = out_dir("posted");
    let played = dir.join("player.flv");
    let player_tap = Tap::start(prism.addr.port()).await;
    let player = rtmpdump(&player_tap.url("live/cue-key"), &played);
    let id = prism.streams_json().await["streams"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let playlist_url = format!("http://{http}/hls/{id}/index.m3u8");
    assert_eq!(
        http_client()
            .get(&playlist_url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The destination, the encoder, the player and the HLS packager.
    prism.wait_subscribers("live", "cue-key", 4).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Who may, and what.
    let cue = r#"{"name": "ad-break", "duration": 30, "parameters": {"ad_id": "a-17"}}"#;
    assert_eq!(post_cue(http, &id, "wrong", cue).await.status(), 401);
    let malformed = post_cue(http, &id, TOKEN, r#"{"duration": 30}"#).await;
    assert_eq!(malformed.status(), 422);
    assert!(malformed.text().await.unwrap().contains("name"));
    assert_eq!(post_cue(http, "no-such-id", TOKEN, cue).await.status(), 404);

    let posted = post_cue(http, &id, TOKEN, cue).await;
    assert_eq!(posted.status(), 201);
    let posted: serde_json::Value = posted.json().await.unwrap();
    assert_eq!(posted["name"], "ad-break");
    let stream_ms = posted["timestamp_ms"].as_u64().unwrap();
    assert!(
        stream_ms >= 3_000,
        "the stream had been live for seconds: {posted}"
    );

    // HLS: a date range where the cue is (alone in its segment: m3u8-rs keeps
    // one range per segment).
    let mut text = String::new();
    for _ in 0..100 {
        text = http_client()
            .get(&playlist_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // Once the cue's segment is complete: m3u8-rs reads a range with the
        // segment after it.
        let complete = text
            .split_once("X-CUE-NAME=\"ad-break\"")
            .is_some_and(|(_, after)| after.contains("#EXTINF"));
        if complete {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_daterange_within_its_segment(&text, "ad-break");

    // A burst is cut off, with a hint of when to come back.
    let mut refused = None;
    for n in 0..10 {
        let body = format!(r#"{{"name": "burst-{n}"}}"#);
        let response = post_cue(http, &id, TOKEN, &body).await;
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), 201);
    }
    let refused = refused.expect("a burst of cues meets the limit");
    assert!(refused.headers().contains_key("retry-after"));

    let (status, _) = finish(publisher).await;
    assert!(status.success());
    let (status, _) = finish(player).await;
    assert!(
        matches!(status.code(), Some(0) | Some(2)),
        "rtmpdump: {status}"
    );
    ingest.wait_unpublished("yt-cue-key", WAIT).await;

    // The destination got the cue at the stream's edge, as an FLV onCuePoint
    // whose time is where the API said it went, and its media intact.
    let sent = from_tap(tap.messages(0));
    assert_cue_at_the_edge(&sent, "ad-break", "the destination");
    let (_, cue) = cue_named(&sent, "ad-break").unwrap();
    assert_eq!(cue.number("duration"), Some(30.0));
    let body = &amf0::decode_all(&sent[cue_named(&sent, "ad-break").unwrap().0].2).unwrap()[1];
    assert_eq!(
        body.get("time").and_then(Amf0Value::as_f64),
        Some(stream_ms as f64 / 1000.0)
    );
    let recorded = ingest.recording("yt-cue-key");
    assert_eq!(
        assert_source_from_keyframe(&source, &recording_framemd5(&recorded)),
        0
    );

    // The re-encoded destination: at the edge of the encoder's output.
    encoded_ingest.wait_unpublished("tw-cue-key", WAIT).await;
    let encoded = from_tap(encoded_tap.messages(0));
    assert_cue_at_the_edge(&encoded, "ad-break", "the re-encoded destination");

    // The player, likewise.
    let got = from_tap(player_tap.replies(0));
    assert_cue_at_the_edge(&got, "ad-break", "the player");
    assert!(cue_named(&got, "burst-0").is_some());
    assert_eq!(
        assert_source_from_keyframe(&source, &framemd5_of_file(&played)),
        0
    );
    prism.stop().await;
}

/// Asserts that the date range of the cue named `name` parses (m3u8-rs), has an
/// id, its duration, and a start between its segment's program date time and
/// that segment's end.
fn assert_daterange_within_its_segment(text: &str, name: &str) {
    let playlist = match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(playlist)) => playlist,
        other => panic!("not a media playlist: {other:?}\n{text}"),
    };
    let needle = format!("X-CUE-NAME=\"{name}\"");
    let segment = playlist
        .segments
        .iter()
        .find(|s| {
            s.daterange
                .as_ref()
                .is_some_and(|d| format!("{:?}", d.x_prefixed).contains(name))
        })
        .unwrap_or_else(|| panic!("no date range for {name}:\n{text}"));
    let range = segment.daterange.as_ref().unwrap();
    assert!(range.id.starts_with("cue-"));
    assert_eq!(range.duration, Some(30.0));
    let line = text.lines().find(|l| l.contains(&needle)).unwrap();
    assert!(line.contains("X-AD-ID=\"a-17\""), "{line}");
    let pdt = segment.program_date_time.expect("a program date time");
    let start = range.start_date;
    let segment_ms = (segment.duration * 1000.0) as i64;
    let offset = (start - pdt).num_milliseconds();
    assert!(
        (0..=segment_ms.max(4_000)).contains(&offset),
        "the cue starts {offset} ms into a segment of {segment_ms} ms:\n{text}"
    );
}

/// An AMF0 data tag's body from `values`.
fn data(values: &[Amf0Value]) -> Bytes {
    let mut body = BytesMut::new();
    amf0::encode_all(values, &mut body);
    body.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishers_own_cue_points_and_text_pass_through_in_order() {
    let ingest = NginxSink::start("live2").await;
    let tap = Tap::start(ingest.port()).await;
    let prism = Prism::start_with(|c| point_preset(c, "youtube", tap.url("live2"))).await;
    let dir = out_dir("own");
    let played = dir.join("player.flv");
    let player_tap = Tap::start(prism.addr.port()).await;
    let player = rtmpdump(&player_tap.url("live/own-cue"), &played);
    prism.wait_subscribers("live", "own-cue", 1).await;

    // The clip, with a cue right after the video frame at 3 s and a caption
    // (sent with @setDataFrame, as captioning tools do) right after the next.
    let mut schedule = schedule_in_real_time(&test_flv());
    let after = |schedule: &[Scheduled], from_ms: u32| {
        schedule
            .iter()
            .position(|s| s.tag.tag_type == TagType::Video && s.tag.timestamp >= from_ms)
            .unwrap()
    };
    let cue_after = after(&schedule, 3_000);
    let frame = schedule[cue_after].clone();
    let cue = CuePoint::new("scene-2", Default::default(), vec![]).unwrap();
    schedule.insert(
        cue_after + 1,
        Scheduled {
            at_ms: frame.at_ms,
            tag: FlvTag {
                tag_type: TagType::Script,
                timestamp: frame.tag.timestamp,
                stream_id: 0,
                data: cue.encode(frame.tag.timestamp),
            },
        },
    );
    let text_after = after(&schedule, frame.tag.timestamp + 1);
    let next = schedule[text_after].clone();
    let caption = Amf0Value::object([
        ("text", Amf0Value::from("hello")),
        ("language", "eng".into()),
    ]);
    schedule.insert(
        text_after + 1,
        Scheduled {
            at_ms: next.at_ms,
            tag: FlvTag {
                tag_type: TagType::Script,
                timestamp: next.tag.timestamp,
                stream_id: 0,
                data: data(&["@setDataFrame".into(), "onTextData".into(), caption.clone()]),
            },
        },
    );
    publish_schedule(prism.addr, "live", "own-cue?youtube=yt-own", &schedule).await;
    let (status, _) = finish(player).await;
    assert!(
        matches!(status.code(), Some(0) | Some(2)),
        "rtmpdump: {status}"
    );
    ingest.wait_unpublished("yt-own", WAIT).await;

    let plain_caption = data(&["onTextData".into(), caption]);
    for (whose, items) in [
        ("the destination", from_tap(tap.messages(0))),
        ("the player", from_tap(player_tap.replies(0))),
    ] {
        // Each data message comes right after the frame it followed at the
        // source, with that frame's timestamp.
        let (at, _) = cue_named(&items, "scene-2").unwrap_or_else(|| panic!("{whose}: no cue"));
        let before = items[..at]
            .iter()
            .rev()
            .find(|i| i.0 == type_id::VIDEO)
            .unwrap();
        assert_eq!(
            before.2, frame.tag.data,
            "{whose}: the cue follows its frame"
        );
        assert_eq!(items[at].1, before.1, "{whose}: and has its timestamp");
        let text_at = items
            .iter()
            .position(|i| i.0 == type_id::DATA_AMF0 && i.2 == plain_caption)
            .unwrap_or_else(|| panic!("{whose}: no onTextData (without @setDataFrame)"));
        assert!(text_at > at, "{whose}: in the order sent");
        let before = items[..text_at]
            .iter()
            .rev()
            .find(|i| i.0 == type_id::VIDEO)
            .unwrap();
        assert_eq!(
            before.2, next.tag.data,
            "{whose}: the caption follows its frame"
        );
        assert_eq!(items[text_at].1, before.1);
    }
    assert_eq!(
        assert_source_from_keyframe(&test_flv(), &framemd5_of_file(&played)),
        0
    );
    prism.stop().await;
}
