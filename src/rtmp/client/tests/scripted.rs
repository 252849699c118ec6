//! Against a scripted server that says exactly what each test needs.

use std::time::Instant;

use super::*;
use crate::rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits, RawMessage};
use crate::rtmp::message::UserControl;
use crate::rtmp::pair::drain;
use crate::rtmp::server::status_object;

/// A server that decodes what the client sends and says what the test tells it.
pub(super) struct Script {
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    pub(super) out: OutBuf,
}

impl Script {
    pub(super) fn new() -> Self {
        Self {
            decoder: ChunkDecoder::new(DecoderLimits::default()),
            encoder: ChunkEncoder::new(),
            out: OutBuf::new(),
        }
    }

    /// Every message the client queued, Set Chunk Size applied.
    fn receive(&mut self, client: &mut ClientSession) -> Vec<RawMessage> {
        let mut bytes = drain(client.out());
        let mut messages = Vec::new();
        while let Some(message) = self.decoder.decode(&mut bytes).unwrap() {
            if message.type_id == type_id::SET_CHUNK_SIZE {
                let size = u32::from_be_bytes(message.payload[..4].try_into().unwrap());
                self.decoder.set_chunk_size(size).unwrap();
            }
            messages.push(message);
        }
        assert!(bytes.is_empty(), "a partial message was left");
        messages
    }

    /// The commands the client queued, as (message stream id, AMF0 values).
    fn commands(&mut self, client: &mut ClientSession) -> Vec<(u32, Vec<Amf0Value>)> {
        self.receive(client)
            .into_iter()
            .filter(|m| m.type_id == type_id::COMMAND_AMF0)
            .map(|m| (m.stream_id, amf0::decode_all(&m.payload).unwrap()))
            .collect()
    }

    pub(super) fn command(&mut self, stream_id: u32, values: &[Amf0Value]) {
        let mut body = BytesMut::new();
        amf0::encode_all(values, &mut body);
        self.raw(3, stream_id, type_id::COMMAND_AMF0, body.freeze());
    }

    fn raw(&mut self, csid: u32, stream_id: u32, type_id: u8, payload: Bytes) {
        let header = MessageHeader {
            csid,
            timestamp: 0,
            type_id,
            stream_id,
        };
        self.encoder.encode(&header, &payload, &mut self.out);
    }

    fn status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let info = status_object(level, code, description, None);
        self.command(
            stream_id,
            &["onStatus".into(), 0.0.into(), Amf0Value::Null, info],
        );
    }

    /// Hands what was scripted so far to the client; returns its events.
    fn deliver(&mut self, client: &mut ClientSession) -> Result<Vec<ClientEvent>, ClientError> {
        let mut bytes = drain(&mut self.out);
        let mut events = Vec::new();
        while let Some(event) = client.poll(&mut bytes)? {
            events.push(event);
        }
        assert!(bytes.is_empty(), "the client left bytes unread");
        Ok(events)
    }

    /// Answers connect with success, as nginx does.
    fn accept_connect(&mut self, client: &mut ClientSession) {
        self.receive(client);
        let properties = Amf0Value::object([("fmsVer", "FMS/3,0,1,123".into())]);
        let info = status_object("status", "NetConnection.Connect.Success", "ok", Some(0.0));
        self.command(0, &["_result".into(), 1.0.into(), properties, info]);
        assert_eq!(self.deliver(client).unwrap(), [ClientEvent::Connected]);
    }
}

fn names(commands: &[(u32, Vec<Amf0Value>)]) -> Vec<&str> {
    commands
        .iter()
        .filter_map(|(_, values)| values.first().and_then(Amf0Value::as_str))
        .collect()
}

/// A client past connect whose releaseStream, FCPublish, createStream were read.
fn connected() -> (ClientSession, Script) {
    let mut client = ClientSession::after_handshake(config(), Instant::now());
    let mut server = Script::new();
    server.accept_connect(&mut client);
    let commands = server.commands(&mut client);
    assert_eq!(
        names(&commands),
        ["releaseStream", "FCPublish", "createStream"]
    );
    (client, server)
}

#[test]
fn sends_set_chunk_size_and_connect_like_obs() {
    let mut client = ClientSession::after_handshake(config(), Instant::now());
    let bytes = drain(client.out());
    // Set Chunk Size 4096: csid 2, type 1, stream 0.
    assert_eq!(
        bytes[..16],
        [2, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x10, 0]
    );
    // connect: a type-0 header on csid 3, timestamp 0, type 20, stream 0 (LE).
    let connect = &bytes[16..];
    assert_eq!(connect[0], 0x03);
    assert_eq!(connect[1..4], [0, 0, 0]);
    let length = u32::from_be_bytes([0, connect[4], connect[5], connect[6]]) as usize;
    assert_eq!(connect[7], 20);
    assert_eq!(connect[8..12], [0, 0, 0, 0]);
    let body = &connect[12..];
    assert_eq!(body.len(), length, "one chunk at chunk size 4096");
    // "connect", 1.0 in AMF0.
    assert_eq!(
        body[..19],
        *b"\x02\x00\x07connect\x00\x3f\xf0\x00\x00\x00\x00\x00\x00"
    );
    let values = amf0::decode_all(body).unwrap();
    let expected_object = Amf0Value::object([
        ("app", "live".into()),
        ("type", "nonprivate".into()),
        ("flashVer", "FMLE/3.0 (compatible; prism)".into()),
        ("swfUrl", TC_URL.into()),
        ("tcUrl", TC_URL.into()),
    ]);
    assert_eq!(
        values,
        ["connect".into(), 1.0.into(), expected_object.clone()]
    );
    let mut exact = BytesMut::new();
    amf0::encode_all(&["connect".into(), 1.0.into(), expected_object], &mut exact);
    assert_eq!(body, &exact[..]);
}

#[test]
fn publishes_the_full_name_with_its_query() {
    let (mut client, mut server) = connected();
    server.command(
        0,
        &["_result".into(), 4.0.into(), Amf0Value::Null, 1.0.into()],
    );
    assert_eq!(server.deliver(&mut client).unwrap(), []);
    let messages = server.receive(&mut client);
    let [publish] = messages.as_slice() else {
        panic!("{messages:?}")
    };
    assert_eq!((publish.csid, publish.stream_id), (CSID_STREAM, 1));
    assert_eq!(
        amf0::decode_all(&publish.payload).unwrap(),
        [
            "publish".into(),
            5.0.into(),
            Amf0Value::Null,
            KEY.into(),
            "live".into()
        ]
    );
    server.status(1, "status", "NetStream.Publish.Start", "go");
    assert_eq!(
        server.deliver(&mut client).unwrap(),
        [ClientEvent::Publishing { stream_id: 1 }]
    );
}

#[test]
fn courtesy_calls_carry_the_full_name() {
    let mut client = ClientSession::after_handshake(config(), Instant::now());
    let mut server = Script::new();
    server.accept_connect(&mut client);
    let commands = server.commands(&mut client);
    let expected: Vec<(u32, Vec<Amf0Value>)> = vec![
        (
            0,
            vec![
                "releaseStream".into(),
                2.0.into(),
                Amf0Value::Null,
                KEY.into(),
            ],
        ),
        (
            0,
            vec!["FCPublish".into(), 3.0.into(), Amf0Value::Null, KEY.into()],
        ),
        (0, vec!["createStream".into(), 4.0.into(), Amf0Value::Null]),
    ];
    assert_eq!(commands, expected);
}

#[test]
fn accepts_lenient_create_stream_results() {
    let shapes: Vec<(Vec<Amf0Value>, u32)> = vec![
        (vec![Amf0Value::Null, 1.0.into()], 1),
        // The id where the null belongs.
        (vec![7.0.into()], 7),
        // An object instead of null, and extra values before the id.
        (
            vec![
                Amf0Value::object([("x", 1.0.into())]),
                Amf0Value::Undefined,
                3.0.into(),
            ],
            3,
        ),
        // Trailing values after the id.
        (vec![Amf0Value::Null, 2.0.into(), "extra".into()], 2),
    ];
    for (tail, expected_id) in shapes {
        let (mut client, mut server) = connected();
        let mut values = vec!["_result".into(), 4.0.into()];
        values.extend(tail.clone());
        server.command(0, &values);
        server.deliver(&mut client).unwrap();
        let messages = server.receive(&mut client);
        assert_eq!(
            messages.iter().map(|m| m.stream_id).collect::<Vec<_>>(),
            [expected_id],
            "{tail:?}"
        );
        server.status(expected_id, "status", "NetStream.Publish.Start", "");
        assert_eq!(
            server.deliver(&mut client).unwrap(),
            [ClientEvent::Publishing {
                stream_id: expected_id
            }]
        );
    }
}

#[test]
fn a_create_stream_result_without_an_id_is_a_protocol_error() {
    for tail in [vec![Amf0Value::Null], vec![Amf0Value::Null, (-1.0).into()]] {
        let (mut client, mut server) = connected();
        let mut values = vec!["_result".into(), 4.0.into()];
        values.extend(tail);
        server.command(0, &values);
        let err = server.deliver(&mut client).unwrap_err();
        assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
        assert!(!err.is_permanent());
    }
}

#[test]
fn errors_to_courtesy_calls_and_unknown_traffic_are_ignored() {
    let (mut client, mut server) = connected();
    let failed = status_object("error", "NetConnection.Call.Failed", "unknown", None);
    for txn in [2.0, 3.0] {
        server.command(
            0,
            &["_error".into(), txn.into(), Amf0Value::Null, failed.clone()],
        );
    }
    // What SRS sends before publish: must not count as Publish.Start.
    let fc = status_object("status", "NetStream.Publish.Start", "FCPublish", None);
    server.command(0, &["onFCPublish".into(), 0.0.into(), Amf0Value::Null, fc]);
    server.command(0, &["someNewCommand".into(), 9.0.into(), Amf0Value::Null]);
    server.raw(
        2,
        0,
        type_id::USER_CONTROL,
        Bytes::from_static(&[0, 0, 0, 0, 0, 1]),
    );
    server.raw(
        5,
        1,
        type_id::DATA_AMF0,
        Bytes::from_static(b"\x02\x00\x01x"),
    );
    server.raw(6, 1, type_id::AUDIO, Bytes::from_static(&[0xAF, 1]));
    server.raw(7, 1, type_id::VIDEO, Bytes::new());
    server.raw(
        8,
        0,
        type_id::SHARED_OBJECT_AMF0,
        Bytes::from_static(&[1, 2, 3]),
    );
    server.raw(9, 0, type_id::AGGREGATE, Bytes::from_static(&[9; 20]));
    server.raw(10, 0, 99, Bytes::from_static(&[1]));
    assert_eq!(server.deliver(&mut client).unwrap(), []);
    assert!(!client.is_publishing());

    server.command(
        0,
        &["_result".into(), 4.0.into(), Amf0Value::Null, 1.0.into()],
    );
    server.deliver(&mut client).unwrap();
    assert_eq!(names(&server.commands(&mut client)), ["publish"]);
    server.status(1, "status", "NetStream.Publish.Start", "");
    assert_eq!(
        server.deliver(&mut client).unwrap(),
        [ClientEvent::Publishing { stream_id: 1 }]
    );
}

#[test]
fn a_malformed_command_is_a_message_layer_error_not_a_panic() {
    let (mut client, mut server) = connected();
    // A command whose first value is a number, not a name.
    server.raw(
        3,
        0,
        type_id::COMMAND_AMF0,
        Bytes::from_static(b"\x00\x3f\xf0\0\0\0\0\0\0"),
    );
    let err = server.deliver(&mut client).unwrap_err();
    assert!(matches!(err, ClientError::MessageLayer(_)), "{err:?}");
}

/// A client whose publish was accepted on stream 1.
pub(super) fn publishing() -> (ClientSession, Script) {
    let (mut client, mut server) = connected();
    server.command(
        0,
        &["_result".into(), 4.0.into(), Amf0Value::Null, 1.0.into()],
    );
    server.status(1, "status", "NetStream.Publish.Start", "");
    assert_eq!(
        server.deliver(&mut client).unwrap(),
        [ClientEvent::Publishing { stream_id: 1 }]
    );
    server.receive(&mut client);
    (client, server)
}

#[test]
fn connect_refusals_are_connect_rejections() {
    let cases = [
        ("NetConnection.Connect.Rejected", true),
        ("NetConnection.Connect.InvalidApp", true),
        ("NetConnection.Connect.Failed", false),
    ];
    for (code, permanent) in cases {
        // As an _error to connect...
        let mut client = ClientSession::after_handshake(config(), Instant::now());
        let mut server = Script::new();
        server.receive(&mut client);
        let info = status_object("error", code, "no", None);
        server.command(0, &["_error".into(), 1.0.into(), Amf0Value::Null, info]);
        let err = server.deliver(&mut client).unwrap_err();
        assert!(
            matches!(&err, ClientError::ConnectRejected { code: c, .. } if c == code),
            "{err:?}"
        );
        assert_eq!(err.is_permanent(), permanent, "{code}");
        // ...and as an onStatus, which some servers send instead.
        let mut client = ClientSession::after_handshake(config(), Instant::now());
        let mut server = Script::new();
        server.receive(&mut client);
        server.status(0, "error", code, "no");
        let err = server.deliver(&mut client).unwrap_err();
        assert!(
            matches!(err, ClientError::ConnectRejected { .. }),
            "{err:?}"
        );
    }
}

#[test]
fn create_stream_and_publish_errors_are_publish_rejections() {
    let (mut client, mut server) = connected();
    let info = status_object(
        "error",
        "NetConnection.Call.Failed",
        "Too many streams",
        None,
    );
    server.command(0, &["_error".into(), 4.0.into(), Amf0Value::Null, info]);
    let err = server.deliver(&mut client).unwrap_err();
    assert!(
        matches!(err, ClientError::PublishRejected { .. }),
        "{err:?}"
    );
    assert!(!err.is_permanent());

    let (mut client, mut server) = connected();
    server.command(
        0,
        &["_result".into(), 4.0.into(), Amf0Value::Null, 1.0.into()],
    );
    server.command(
        0,
        &[
            "_error".into(),
            5.0.into(),
            Amf0Value::Null,
            "denied".into(),
        ],
    );
    let err = server.deliver(&mut client).unwrap_err();
    let ClientError::PublishRejected { description, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(description, "denied");

    // OBS's list: a fatal code ends the publish even with level "status".
    let (mut client, mut server) = connected();
    server.command(
        0,
        &["_result".into(), 4.0.into(), Amf0Value::Null, 1.0.into()],
    );
    server.status(1, "status", "NetStream.Publish.Denied", "");
    let err = server.deliver(&mut client).unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
}

#[test]
fn a_result_to_publish_counts_as_started() {
    let (mut client, mut server) = connected();
    server.command(
        0,
        &["_result".into(), 4.0.into(), Amf0Value::Null, 1.0.into()],
    );
    server.command(0, &["_result".into(), 5.0.into(), Amf0Value::Null]);
    server.status(1, "status", "NetStream.Publish.Start", "");
    assert_eq!(
        server.deliver(&mut client).unwrap(),
        [ClientEvent::Publishing { stream_id: 1 }]
    );
}

#[test]
fn other_statuses_are_reported_masked_and_errors_end_the_publish() {
    let (mut client, mut server) = publishing();
    server.status(1, "warning", "NetStream.Publish.Idle", "live_8c1d2e3f idle");
    assert_eq!(
        server.deliver(&mut client).unwrap(),
        [ClientEvent::Status {
            level: "warning".into(),
            code: "NetStream.Publish.Idle".into(),
            description: "**** idle".into(),
        }]
    );
    server.status(1, "error", "NetStream.Failed", "gone");
    let err = server.deliver(&mut client).unwrap_err();
    assert!(
        matches!(err, ClientError::PublishRejected { .. }),
        "{err:?}"
    );
    assert!(!err.is_permanent());
}

#[test]
fn on_bw_done_is_answered_once_with_checkbw() {
    let mut client = ClientSession::after_handshake(config(), Instant::now());
    let mut server = Script::new();
    server.accept_connect(&mut client);
    server.commands(&mut client);
    for _ in 0..2 {
        server.command(0, &["onBWDone".into(), 0.0.into(), Amf0Value::Null]);
    }
    assert_eq!(server.deliver(&mut client).unwrap(), []);
    let commands = server.commands(&mut client);
    assert_eq!(
        commands,
        [(0, vec!["_checkbw".into(), 5.0.into(), Amf0Value::Null])]
    );
    // Its _error is ignored, and createStream's answer still counts.
    server.command(0, &["_error".into(), 5.0.into(), Amf0Value::Null]);
    server.command(
        0,
        &["_result".into(), 4.0.into(), Amf0Value::Null, 1.0.into()],
    );
    server.deliver(&mut client).unwrap();
    let commands = server.commands(&mut client);
    assert_eq!(commands[0].1[..2], ["publish".into(), 6.0.into()]);
}

#[test]
fn pings_are_answered_by_the_message_layer() {
    let (mut client, mut server) = publishing();
    let (_, ping) = Message::UserControl(UserControl::PingRequest(77)).encode();
    server.raw(2, 0, type_id::USER_CONTROL, ping);
    assert_eq!(server.deliver(&mut client).unwrap(), []);
    let messages = server.receive(&mut client);
    let [pong] = messages.as_slice() else {
        panic!("{messages:?}")
    };
    assert_eq!(
        Message::decode(pong.type_id, pong.payload.clone()).unwrap(),
        Message::UserControl(UserControl::PingResponse(77))
    );
}

#[test]
fn metadata_goes_out_as_set_data_frame_once() {
    let (mut client, mut server) = publishing();
    let metadata = Amf0Value::ecma_array([("duration", 0.0.into())]);
    let body = on_metadata_body(&metadata);
    client.send_metadata(5, &body);
    let mut wrapped = BytesMut::new();
    amf0::encode(&"@setDataFrame".into(), &mut wrapped);
    assert_eq!(&wrapped[..], SET_DATA_FRAME_AMF0);
    wrapped.extend_from_slice(&body);
    let wrapped = wrapped.freeze();
    // Already wrapped: sent as is.
    client.send_metadata(6, &wrapped);
    let messages = server.receive(&mut client);
    assert_eq!(messages.len(), 2);
    for (message, timestamp) in messages.iter().zip([5, 6]) {
        assert_eq!(
            (message.type_id, message.stream_id, message.timestamp),
            (type_id::DATA_AMF0, 1, timestamp)
        );
        assert_eq!(message.payload, wrapped);
    }
}

#[test]
fn media_outside_publishing_is_dropped() {
    let (mut client, mut server) = connected();
    client.send_media(type_id::VIDEO, 0, &Bytes::from_static(&[0x17]));
    client.send_metadata(0, &Bytes::from_static(b"\x02\x00\x0aonMetaData\x05"));
    assert!(server.receive(&mut client).is_empty());

    let (mut client, mut server) = publishing();
    client.unpublish();
    client.send_media(type_id::AUDIO, 0, &Bytes::from_static(&[0xAF]));
    let commands = server.commands(&mut client);
    assert_eq!(names(&commands), ["FCUnpublish", "deleteStream"]);
    assert_eq!(commands[0].1[3], KEY.into());
    assert_eq!(commands[1].1[3], 1.0.into());
    assert!(server.receive(&mut client).is_empty());
}

#[test]
fn unpublish_reports_at_once_and_ignores_what_follows() {
    let (mut client, mut server) = publishing();
    client.unpublish();
    client.unpublish();
    server.status(1, "status", "NetStream.Unpublish.Success", "");
    server.status(1, "error", "NetStream.Failed", "late");
    assert_eq!(
        server.deliver(&mut client).unwrap(),
        [ClientEvent::Unpublished]
    );
    assert_eq!(
        names(&server.commands(&mut client)),
        ["FCUnpublish", "deleteStream"]
    );

    // Before any stream exists there is nothing to undo.
    let mut client = ClientSession::after_handshake(config(), Instant::now());
    drain(client.out());
    client.unpublish();
    assert!(client.out().is_empty());
    assert_eq!(
        client.poll(&mut BytesMut::new()).unwrap(),
        Some(ClientEvent::Unpublished)
    );
}

#[test]
fn config_from_a_server_url_and_a_key() {
    let cases = [
        (
            "rtmp://a.rtmp.youtube.com/live2",
            "live2",
            "rtmp://a.rtmp.youtube.com/live2",
        ),
        (
            "rtmp://b.rtmp.youtube.com/live2?backup=1",
            "live2?backup=1",
            "rtmp://b.rtmp.youtube.com/live2?backup=1",
        ),
        (
            "rtmps://live-api-s.facebook.com:443/rtmp/",
            "rtmp",
            "rtmps://live-api-s.facebook.com:443/rtmp",
        ),
        (
            "rtmp://host:1935/app/inst",
            "app/inst",
            "rtmp://host:1935/app/inst",
        ),
        ("rtmp://host", "", "rtmp://host"),
    ];
    for (url, app, tc_url) in cases {
        let config = ClientConfig::new(url, "k");
        assert_eq!((config.app.as_str(), config.tc_url.as_str()), (app, tc_url));
    }
    let config = config();
    assert_eq!(config.flash_ver, DEFAULT_FLASH_VER);
    assert_eq!(config.chunk_size, DEFAULT_CHUNK_SIZE);
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("live_8c1d2e3f") && !debug.contains("s3cr3t"),
        "{debug}"
    );
}

#[test]
fn masking_covers_name_key_and_query() {
    assert_eq!(
        mask_stream_name("a k?q=1 b k c q=1", "k?q=1"),
        "a **** b **** c ****"
    );
    assert_eq!(mask_stream_name("nothing here", ""), "nothing here");
    assert_eq!(mask_stream_name("key key", "key"), "**** ****");
}

#[test]
fn a_key_inside_a_known_code_does_not_hide_the_code() {
    let mut client =
        ClientSession::after_handshake(ClientConfig::new(TC_URL, "Publish"), Instant::now());
    let mut server = Script::new();
    server.accept_connect(&mut client);
    server.command(
        0,
        &["_result".into(), 4.0.into(), Amf0Value::Null, 1.0.into()],
    );
    server.status(1, "error", "NetStream.Publish.BadName", "Publish refused");
    let err = server.deliver(&mut client).unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "publish rejected by the server: NetStream.Publish.BadName: **** refused"
    );
}
