//! prism against independent RTMP implementations.
//!
//! **Replies.** The same client conversations run against a real nginx-rtmp
//! (Debian's libnginx-mod-rtmp, [`NginxSink`]) and against prism: an encoder's
//! (connect, releaseStream, FCPublish, createStream, publish, metadata and media,
//! FCUnpublish, deleteStream), a player's (connect, createStream,
//! getStreamLength, play, deleteStream) and a second encoder's that publishes a
//! name already live. Every message each server sends is decoded with prism's own
//! codec and reduced to what a strict client depends on: command names,
//! transaction ids, message stream ids, AMF types (null vs undefined, number vs
//! string, object keys), status levels and codes, control and user-control
//! messages; in the same order. Values a client only displays (fmsVer,
//! capabilities, descriptions) are compared by type. Media and `onMetaData` are
//! not replies (nginx-rtmp has no GOP cache, so a player that joins late gets none
//! at once; prism sends its cached GOP), and neither are acknowledgements (they
//! depend on byte counts). What prism does differently on purpose is listed in
//! [`ALLOWED`], each entry with its reason; every entry must still be needed.
//!
//! **Message stream 0.** Node-Media-Server 4's push relay (the npm package, a
//! real server) publishes on stream 1 and then sends `@setDataFrame`, audio and
//! video on message stream 0; prism takes them as the only publishing stream's.
//! A player gets every packet.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::raw_client::{RawClient, Received};
use common::sinks::{NginxSink, NodeMediaServer};
use common::*;
use prism::flv::FlvReader;
use prism::rtmp::amf0::Amf0Value;
use prism::rtmp::message::{Command, Message, UserControl, type_id};

/// Which server a transcript came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Prism,
    Nginx,
}

/// A difference between prism's replies and nginx-rtmp's that is deliberate: the
/// message that `side` sends in `conversation` at `step` whose shape contains
/// `shape`, and that the other server does not send (there).
struct Allowed {
    side: Side,
    conversation: &'static str,
    step: &'static str,
    shape: &'static str,
    why: &'static str,
}

/// The documented differences. Each removes one message from one side before the
/// comparison, and the test fails if one is no longer needed.
const ALLOWED: &[Allowed] = &[
    Allowed {
        side: Side::Prism,
        conversation: "publisher",
        step: "FCPublish",
        shape: "onFCPublish txn=0",
        why: "prism confirms FCPublish with an onFCPublish notification (transaction 0, \
              never a `_result` that could be taken for another command's), as FFmpeg's \
              own server does (SRS sends it at publish); nginx-rtmp says nothing",
    },
    Allowed {
        side: Side::Prism,
        conversation: "publisher",
        step: "publish",
        shape: "event StreamBegin(1)",
        why: "StreamBegin before NetStream.Publish.Start, as FFmpeg's own server sends it; \
              a publisher has no use for it and every client ignores it",
    },
    Allowed {
        side: Side::Prism,
        conversation: "publisher",
        step: "FCUnpublish",
        shape: "code=NetStream.Unpublish.Success",
        why: "prism confirms the end of a publish at FCUnpublish, the first of the two \
              commands encoders end with (OBS and ffmpeg: FCUnpublish, deleteStream); \
              nginx-rtmp at deleteStream (next entry): the same message, one command earlier",
    },
    Allowed {
        side: Side::Nginx,
        conversation: "publisher",
        step: "deleteStream",
        shape: "code=NetStream.Unpublish.Success",
        why: "see the entry before",
    },
    Allowed {
        side: Side::Prism,
        conversation: "player",
        step: "getStreamLength",
        shape: "_result txn=3",
        why: "prism answers getStreamLength with `_result(txn, null, 0)`: ffmpeg reads the \
              number as the duration, 0 meaning live. SRS and FFmpeg's own server answer it \
              too (with a null, or nothing, after the null); nginx-rtmp says nothing",
    },
    Allowed {
        side: Side::Prism,
        conversation: "player",
        step: "play",
        shape: "code=NetStream.Play.Reset",
        why: "NetStream.Play.Reset before NetStream.Play.Start, as FMS, SRS and \
              Node-Media-Server send",
    },
    Allowed {
        side: Side::Nginx,
        conversation: "player",
        step: "deleteStream",
        shape: "event StreamEof(1)",
        why: "nginx-rtmp ends a player's deleted stream with StreamEOF; prism forgets it \
              silently, as SRS does: a player sends deleteStream as it leaves",
    },
];

/// One message a server sent, where in the conversation it arrived.
#[derive(Debug, Clone)]
struct Entry {
    conversation: &'static str,
    step: &'static str,
    received: Received,
}

/// Everything one server sent in all conversations, and the transaction ids each
/// conversation's commands used (for the pairing check).
#[derive(Default)]
struct Transcript {
    entries: Vec<Entry>,
    sent: Vec<(&'static str, f64)>,
}

/// A client connection that records what the server says, step by step.
struct Conversation<'a> {
    name: &'static str,
    client: RawClient,
    transcript: &'a mut Transcript,
}

impl<'a> Conversation<'a> {
    async fn open(name: &'static str, addr: SocketAddr, transcript: &'a mut Transcript) -> Self {
        Self {
            name,
            client: RawClient::connect(addr).await,
            transcript,
        }
    }

    fn record(&mut self, step: &'static str, received: Vec<Received>) {
        for received in received {
            self.transcript.entries.push(Entry {
                conversation: self.name,
                step,
                received,
            });
        }
    }

    /// Sends a command (on `csid`, message stream `stream_id`), then waits for
    /// everything the server answers before a ping.
    async fn command(
        &mut self,
        step: &'static str,
        csid: u32,
        stream_id: u32,
        txn: f64,
        object: Amf0Value,
        args: Vec<Amf0Value>,
    ) {
        self.transcript.sent.push((self.name, txn));
        let command = Message::Command(Command::new(step, txn, object, args));
        self.client.send(csid, stream_id, 0, &command).await;
        let replies = self.client.barrier().await;
        self.record(step, replies);
    }

    /// A connect with the client's `properties` between `app` and `tcUrl`.
    async fn connect(&mut self, addr: SocketAddr, properties: Vec<(&str, Amf0Value)>) {
        let tc_url = format!("rtmp://{addr}/live");
        let mut object = vec![("app", "live".into())];
        object.extend(properties);
        object.push(("tcUrl", tc_url.as_str().into()));
        self.command("connect", 3, 0, 1.0, Amf0Value::object(object), vec![])
            .await;
    }
}

/// The first `n` tags of an FLV file: (type, timestamp, body).
fn tags(file: &Path, n: usize) -> Vec<(u8, u32, Bytes)> {
    let mut flv = BytesMut::from(&std::fs::read(file).unwrap()[..]);
    let mut reader = FlvReader::new();
    reader
        .read_header(&mut flv)
        .unwrap()
        .expect("an FLV header");
    let mut out = Vec::new();
    while let Some(tag) = reader.read_tag(&mut flv).unwrap() {
        out.push((tag.tag_type as u8, tag.timestamp, tag.data));
        if out.len() == n {
            break;
        }
    }
    out
}

/// The conversations, against the server at `addr`, on stream `name`.
async fn converse(addr: SocketAddr, name: &str) -> Transcript {
    let mut transcript = Transcript::default();
    let mut player_transcript = Transcript::default();
    let mut second_transcript = Transcript::default();
    let null = || Amf0Value::Null;

    // An encoder, as ffmpeg (librtmp's order) publishes: connect, releaseStream,
    // FCPublish, createStream, publish, then @setDataFrame and media.
    let mut publisher = Conversation::open("publisher", addr, &mut transcript).await;
    publisher
        .connect(
            addr,
            vec![
                ("type", "nonprivate".into()),
                ("flashVer", "FMLE/3.0 (compatible; Lavf59.27.100)".into()),
            ],
        )
        .await;
    publisher
        .command("releaseStream", 3, 0, 2.0, null(), vec![name.into()])
        .await;
    publisher
        .command("FCPublish", 3, 0, 3.0, null(), vec![name.into()])
        .await;
    publisher
        .command("createStream", 3, 0, 4.0, null(), vec![])
        .await;
    let stream_id = publisher
        .transcript
        .entries
        .iter()
        .find_map(|e| match &e.received.message {
            Message::Command(c) if c.name == "_result" && c.transaction_id == 4.0 => {
                c.args.first().and_then(Amf0Value::as_f64)
            }
            _ => None,
        })
        .expect("createStream's result carries a stream id") as u32;
    publisher
        .command(
            "publish",
            8,
            stream_id,
            5.0,
            null(),
            vec![name.into(), "live".into()],
        )
        .await;
    for (kind, timestamp, body) in tags(&test_flv(), 40) {
        let (csid, body) = match kind {
            type_id::DATA_AMF0 => {
                let mut framed = BytesMut::from(&b"\x02\x00\x0d@setDataFrame"[..]);
                framed.extend_from_slice(&body);
                (4, framed.freeze())
            }
            type_id::VIDEO => (6, body),
            _ => (4, body),
        };
        publisher
            .client
            .send_raw(csid, stream_id, timestamp, kind, &body)
            .await;
    }
    let replies = publisher.client.barrier().await;
    publisher.record("media", replies);

    // A player joins the live stream, as ffmpeg plays: connect with a Flash
    // player's capabilities, createStream, getStreamLength, play.
    let mut player = Conversation::open("player", addr, &mut player_transcript).await;
    player
        .connect(
            addr,
            vec![
                ("flashVer", "LNX 9,0,124,2".into()),
                ("fpad", false.into()),
                ("capabilities", 15.0.into()),
                ("audioCodecs", 4071.0.into()),
                ("videoCodecs", 252.0.into()),
                ("videoFunction", 1.0.into()),
            ],
        )
        .await;
    player
        .client
        .send(2, 0, 0, &Message::WindowAckSize(2_500_000))
        .await;
    player
        .command("createStream", 3, 0, 2.0, null(), vec![])
        .await;
    player
        .command("getStreamLength", 8, 1, 3.0, null(), vec![name.into()])
        .await;
    player.transcript.sent.push(("player", 4.0));
    let play = Command::new("play", 4.0, null(), vec![name.into(), (-2000.0).into()]);
    player.client.send(8, 1, 0, &Message::Command(play)).await;
    let buffer = UserControl::SetBufferLength {
        stream_id: 1,
        millis: 3000,
    };
    player
        .client
        .send(2, 0, 0, &Message::UserControl(buffer))
        .await;
    let replies = player.client.barrier().await;
    player.record("play", replies);
    player
        .command("deleteStream", 3, 0, 5.0, null(), vec![1.0.into()])
        .await;
    player.client.close().await;

    // A second encoder publishes the same name: refused.
    let mut second = Conversation::open("second publisher", addr, &mut second_transcript).await;
    second
        .connect(addr, vec![("type", "nonprivate".into())])
        .await;
    second
        .command("createStream", 3, 0, 2.0, null(), vec![])
        .await;
    second.transcript.sent.push(("second publisher", 3.0));
    let publish = Command::new("publish", 3.0, null(), vec![name.into(), "live".into()]);
    second
        .client
        .send(8, 1, 0, &Message::Command(publish))
        .await;
    // prism closes the connection after the refusal, nginx-rtmp leaves it open:
    // read up to the status, not to a ping.
    let replies = second
        .client
        .recv_until(|r| matches!(&r.message, Message::Command(c) if c.name == "onStatus"))
        .await;
    second.record("publish", replies);
    second.client.close().await;

    // The first encoder ends its publish.
    publisher
        .command("FCUnpublish", 3, 0, 6.0, null(), vec![name.into()])
        .await;
    publisher
        .command(
            "deleteStream",
            3,
            0,
            7.0,
            null(),
            vec![f64::from(stream_id).into()],
        )
        .await;
    publisher.client.close().await;

    transcript.entries.extend(player_transcript.entries);
    transcript.entries.extend(second_transcript.entries);
    transcript.sent.extend(player_transcript.sent);
    transcript.sent.extend(second_transcript.sent);
    transcript
}

/// The AMF type of a value, with object keys (sorted) and their types.
fn ty(value: &Amf0Value) -> String {
    let fields = |properties: &[(String, Amf0Value)]| {
        let mut fields: Vec<String> = properties
            .iter()
            .map(|(k, v)| format!("{k}:{}", ty(v)))
            .collect();
        fields.sort();
        fields.join(",")
    };
    match value {
        Amf0Value::Number(_) => "number".into(),
        Amf0Value::Boolean(_) => "boolean".into(),
        Amf0Value::String(_) | Amf0Value::LongString(_) => "string".into(),
        Amf0Value::Null => "null".into(),
        Amf0Value::Undefined => "undefined".into(),
        Amf0Value::Object(properties) => format!("object{{{}}}", fields(properties)),
        Amf0Value::EcmaArray(properties) => format!("ecma{{{}}}", fields(properties)),
        Amf0Value::StrictArray(items) => format!(
            "array[{}]",
            items.iter().map(ty).collect::<Vec<_>>().join(",")
        ),
        other => format!("other:{other:?}"),
    }
}

/// What a strict client depends on in one message; `None` for what is not a reply
/// (media, `onMetaData`, acknowledgements).
fn shape(received: &Received) -> Option<String> {
    let msid = received.stream_id;
    Some(match &received.message {
        Message::Audio(_)
        | Message::Video(_)
        | Message::Aggregate(_)
        | Message::Acknowledgement(_) => return None,
        Message::Data { values, .. } => {
            let first = values.first().and_then(Amf0Value::as_str).unwrap_or("");
            if matches!(first, "onMetaData" | "@setDataFrame") {
                return None;
            }
            let rest: Vec<String> = values.iter().skip(1).map(ty).collect();
            format!("msid={msid} data {first}({})", rest.join(","))
        }
        Message::SetChunkSize(_) => "control SetChunkSize".into(),
        Message::WindowAckSize(_) => "control WindowAckSize".into(),
        Message::SetPeerBandwidth { limit, .. } => {
            format!("control SetPeerBandwidth limit={limit}")
        }
        Message::Abort(_) => "control Abort".into(),
        Message::UserControl(event) => format!("event {event:?}"),
        Message::Command(c) => {
            let args: Vec<String> = c.args.iter().map(ty).collect();
            let status = c
                .args
                .iter()
                .find_map(|a| Some((a.get("level")?.as_str()?, a.get("code")?.as_str()?)))
                .map(|(level, code)| format!(" level={level} code={code}"))
                .unwrap_or_default();
            format!(
                "msid={msid} {} txn={} {} [{}]{status}",
                c.name,
                c.transaction_id,
                ty(&c.object),
                args.join(", ")
            )
        }
        Message::Other { type_id, .. } => format!("other type {type_id}"),
    })
}

/// (conversation, step, shape) of every reply, in order.
fn shapes(transcript: &Transcript) -> Vec<(&'static str, &'static str, String)> {
    transcript
        .entries
        .iter()
        .filter_map(|e| Some((e.conversation, e.step, shape(&e.received)?)))
        .collect()
}

fn render(lines: &[(&'static str, &'static str, String)]) -> String {
    lines
        .iter()
        .map(|(conversation, step, shape)| format!("  {conversation} / {step}: {shape}\n"))
        .collect()
}

/// Strict-client rules prism's replies must keep whatever nginx-rtmp does: no AMF0
/// `undefined` (xiu's decoder refuses the marker), and every `_result`/`_error`
/// answers a command this connection sent with that transaction id, once (a
/// client that pairs replies by id, like xiu's, must never see one twice).
fn assert_strict_client_rules(transcript: &Transcript) {
    for entry in &transcript.entries {
        if let Some(shape) = shape(&entry.received) {
            assert!(
                !shape.contains("undefined"),
                "{} / {}: an AMF0 undefined: {shape}",
                entry.conversation,
                entry.step
            );
        }
    }
    let mut answered = HashSet::new();
    for entry in &transcript.entries {
        let Message::Command(c) = &entry.received.message else {
            continue;
        };
        if c.name != "_result" && c.name != "_error" {
            continue;
        }
        let key = (entry.conversation, c.transaction_id.to_bits());
        assert!(
            transcript
                .sent
                .iter()
                .any(|(conv, txn)| *conv == entry.conversation && *txn == c.transaction_id),
            "{} / {}: a {} for transaction {} that no command used",
            entry.conversation,
            entry.step,
            c.name,
            c.transaction_id
        );
        assert!(
            answered.insert(key),
            "{} / {}: transaction {} answered twice",
            entry.conversation,
            entry.step,
            c.transaction_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prism_replies_like_nginx_rtmp_to_encoders_and_players() {
    let nginx = NginxSink::start("live").await;
    let nginx_addr: SocketAddr = format!("127.0.0.1:{}", nginx.port()).parse().unwrap();
    let nginx_transcript = converse(nginx_addr, "compare").await;
    let prism = Prism::start().await;
    let prism_transcript = converse(prism.addr, "compare").await;
    prism.stop().await;
    drop(nginx);

    assert_strict_client_rules(&nginx_transcript);
    assert_strict_client_rules(&prism_transcript);

    let mut ours = shapes(&prism_transcript);
    let mut theirs = shapes(&nginx_transcript);
    let full = format!(
        "prism said:\n{}nginx-rtmp said:\n{}",
        render(&ours),
        render(&theirs)
    );
    for allowed in ALLOWED {
        let lines = match allowed.side {
            Side::Prism => &mut ours,
            Side::Nginx => &mut theirs,
        };
        let at = lines
            .iter()
            .position(|(conversation, step, shape)| {
                *conversation == allowed.conversation
                    && *step == allowed.step
                    && shape.contains(allowed.shape)
            })
            .unwrap_or_else(|| {
                panic!(
                    "allowed difference no longer seen, remove it from ALLOWED: {:?} {} / {}: \
                     {} ({})\n{full}",
                    allowed.side, allowed.conversation, allowed.step, allowed.shape, allowed.why
                )
            });
        lines.remove(at);
    }
    for conversation in ["publisher", "player", "second publisher"] {
        let pick = |lines: &[(&'static str, &'static str, String)]| -> Vec<String> {
            lines
                .iter()
                .filter(|(c, _, _)| *c == conversation)
                .map(|(_, step, shape)| format!("{step}: {shape}"))
                .collect()
        };
        assert_eq!(
            pick(&ours),
            pick(&theirs),
            "the {conversation}'s replies differ from nginx-rtmp's beyond ALLOWED\n{full}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_media_server_4_relays_into_prism_with_media_on_message_stream_0() {
    let prism = Prism::start().await;
    let nms = NodeMediaServer::start().await;
    let clip = clip(8);
    let key = "nms-relay-key";
    let target = prism.url(&format!("live/{key}"));
    let player = play_framemd5(&target);
    prism.wait_subscribers("live", key, 1).await;

    let publisher = publish(&clip, &nms.url("live/source"));
    nms.wait_publishing("/live/source", CHILD_TIMEOUT).await;
    nms.push("/live/source", &target).await;
    prism.wait_live("live", key).await;

    // The API counts what arrives on stream 0 as the stream's (its name is the
    // masked key, so read the list: this prism has no other stream).
    let api = format!(
        "http://{}/api/v1/streams",
        prism.app.as_ref().unwrap().http_addr()
    );
    let deadline = tokio::time::Instant::now() + CHILD_TIMEOUT;
    let relay_peer = loop {
        let list: serde_json::Value = http_client()
            .get(&api)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let publisher = &list["streams"][0]["publisher"];
        if publisher["bytes_in"].as_u64().unwrap_or(0) > 0 {
            break publisher["remote_addr"].as_str().unwrap().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bytes_in stayed 0: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let (status, _) = finish(publisher).await;
    assert!(status.success(), "the publisher ran cleanly: {status}");
    // Node-Media-Server keeps its push connection after its source ends; removing
    // the relay closes it, and the stream ends (after the publisher grace period).
    nms.stop_push(&target).await;
    let (status, out) = finish(player).await;
    assert!(status.success(), "the player ended cleanly: {status}");
    assert_source_from_keyframe(&clip, &parse_framemd5(&out));

    // The relay connection's lines (other tests of this binary may log too).
    let span = format!("peer={relay_peer}");
    let logs: Vec<String> = captured_logs()
        .lines()
        .filter(|l| l.contains(&span))
        .map(str::to_owned)
        .collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("media on message stream 0: taken as the publishing stream's")),
        "the relay really sent its media on message stream 0"
    );
    assert!(
        !logs.iter().any(|l| l.contains("on message stream 0 while")),
        "nothing on stream 0 was ignored"
    );
    assert_logs_hide(&[key]);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_on_stream_0_from_a_connection_that_does_not_publish_reaches_no_stream() {
    let prism = Prism::start().await;
    let clip = test_flv();
    let player = play_framemd5(&prism.url("live/stream0-victim"));
    prism.wait_subscribers("live", "stream0-victim", 1).await;
    let publisher = publish(&clip, &prism.url("live/stream0-victim"));
    prism.wait_live("live", "stream0-victim").await;

    // The attacker connects and creates a stream but never publishes, then sends
    // the victim's own clip (and garbage aggregates) on message stream 0 and on
    // its unpublished stream 1, hoping prism files it under some stream.
    let mut attacker = RawClient::connect(prism.addr).await;
    let peer = attacker.local_addr();
    let tc_url = format!("rtmp://{}/live", prism.addr);
    let connect = Command::new(
        "connect",
        1.0,
        Amf0Value::object([("app", "live".into()), ("tcUrl", tc_url.as_str().into())]),
        vec![],
    );
    attacker.send(3, 0, 0, &Message::Command(connect)).await;
    let create = Command::new("createStream", 2.0, Amf0Value::Null, vec![]);
    attacker.send(3, 0, 0, &Message::Command(create)).await;
    for round in 0..3u32 {
        for (kind, timestamp, body) in tags(&clip, 200) {
            for stream_id in [0, 1] {
                attacker
                    .send_raw(6, stream_id, timestamp + round, kind, &body)
                    .await;
            }
        }
        let aggregate = Bytes::from(vec![
            9u8, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0x17, 1, 0, 0, 0, 0, 14,
        ]);
        attacker
            .send_raw(4, 0, 0, type_id::AGGREGATE, &aggregate)
            .await;
    }
    // Answered after all of it was read: prism kept the connection and ignored it.
    attacker.barrier().await;
    attacker.close().await;

    let (status, _) = finish(publisher).await;
    assert!(status.success(), "the publisher never noticed: {status}");
    let (status, out) = finish(player).await;
    assert!(status.success());
    assert_eq!(
        assert_source_from_keyframe(&clip, &parse_framemd5(&out)),
        0,
        "the player got the clip exactly once, nothing injected"
    );
    let span = format!("peer={peer}");
    let warnings: Vec<String> = captured_logs()
        .lines()
        .filter(|l| l.contains(&span) && l.contains("on message stream 0 while"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning for the whole connection: {warnings:?}"
    );
    assert!(
        warnings[0].contains("while no streams publish"),
        "{}",
        warnings[0]
    );
    prism.stop().await;
}
