//! Proves that prism's publishing client session (`ClientSession`: the handshake, chunk
//! decoder, control messages, AMF0/AMF3 commands, the connect/createStream/publish sequence,
//! status and error handling) never panics on anything an ingest sends, split into arbitrary
//! reads, while the driver drains the output queue with partial writes, sends media and may
//! unpublish midway. Also checks:
//!
//! - the output queue's accounting (`io_slices` never yields more than `len`, `advance`
//!   shrinks it exactly);
//! - the stream key never shows in what the session reports from the server's texts
//!   (`ClientEvent::Status`, connect and publish rejections), in `Display` or `Debug`,
//!   whatever the server echoes;
//! - media goes out only while publishing;
//! - the publish deadline agrees with the session's state: not passed when the input is
//!   read, passed at the deadline unless the session publishes or unpublished.
//!
//! Input: [mode, split seed, bytes...]. The mode's low three bits, modulo 5, pick a genuine
//! prefix of what prism's own server says (nothing, so the bytes start at S0; the handshake;
//! then connect's answer, createStream's, and Publish.Start), so the fuzzer starts anywhere in
//! the sequence. Mode bit 3 makes the driver unpublish after the first read; bit 4 makes it
//! send media and metadata after every read.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prism::rtmp::amf0::Amf0Value;
use prism::rtmp::chunk::{ChunkEncoder, MessageHeader, OutBuf};
use prism::rtmp::client::{ClientConfig, ClientError, ClientEvent, ClientSession};
use prism::rtmp::message::{Command, Message, UserControl, type_id};
use prism::rtmp::server::status_object;

use super::{Splitter, drain};

/// The bare key and the query of the stream name: neither may show in a server text.
const KEY: &str = "fuzz-key-s3cr3t";
const QUERY: &str = "token=hidden42";

/// How long the server may take to accept the publish.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// What prism's server says to a publisher, up to `stage`: 1 the handshake (S0, S1, and an
/// S2 that does not echo C1, which clients only note), 2 connect's answer (with the window,
/// bandwidth and chunk size prism sends first), 3 createStream's (stream 1), 4 Publish.Start.
fn server_prefix(stage: u8) -> Vec<u8> {
    if stage == 0 {
        return Vec::new();
    }
    let mut wire = vec![3];
    wire.extend_from_slice(&[0x5A; 1536]);
    wire.extend_from_slice(&[0xA5; 1536]);
    let mut encoder = ChunkEncoder::new();
    let mut out = OutBuf::new();
    let mut send = |encoder: &mut ChunkEncoder, csid, stream_id, message: &Message| {
        let (type_id, payload) = message.encode();
        let header = MessageHeader {
            csid,
            timestamp: 0,
            type_id,
            stream_id,
        };
        encoder.encode(&header, &payload, &mut out);
    };
    if stage >= 2 {
        send(&mut encoder, 2, 0, &Message::WindowAckSize(5_000_000));
        send(
            &mut encoder,
            2,
            0,
            &Message::SetPeerBandwidth {
                size: 5_000_000,
                limit: 2,
            },
        );
        send(&mut encoder, 2, 0, &Message::SetChunkSize(4096));
        encoder.set_chunk_size(4096);
        let properties = Amf0Value::object([("fmsVer", "FMS/3,0,1,123".into())]);
        let info = status_object("status", "NetConnection.Connect.Success", "ok", Some(0.0));
        let result = Command::new("_result", 1.0, properties, vec![info]);
        send(&mut encoder, 3, 0, &Message::Command(result));
    }
    if stage >= 3 {
        // releaseStream 2, FCPublish 3, createStream 4.
        let result = Command::new("_result", 4.0, Amf0Value::Null, vec![1.0.into()]);
        send(&mut encoder, 3, 0, &Message::Command(result));
    }
    if stage >= 4 {
        send(
            &mut encoder,
            2,
            0,
            &Message::UserControl(UserControl::StreamBegin(1)),
        );
        let info = status_object("status", "NetStream.Publish.Start", "go", None);
        let status = Command::new("onStatus", 0.0, Amf0Value::Null, vec![info]);
        send(&mut encoder, 5, 1, &Message::Command(status));
    }
    wire.extend_from_slice(&drain(&mut out, usize::MAX));
    wire
}

/// Panics if a text the session built from the server's words shows the key.
fn assert_masked(what: &str, text: &str) {
    assert!(
        !text.contains(KEY) && !text.contains(QUERY),
        "{what} shows the stream key: {text}"
    );
}

fn check_error(error: &ClientError) {
    if let ClientError::ConnectRejected { .. } | ClientError::PublishRejected { .. } = error {
        assert_masked("an error", &error.to_string());
        assert_masked("an error", &format!("{error:?}"));
    }
}

fn check_event(event: &ClientEvent) {
    if let ClientEvent::Status { .. } = event {
        assert_masked("a status", &format!("{event:?}"));
    }
}

/// Runs one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    let [mode, seed, rest @ ..] = data else {
        return;
    };
    let stage = (mode & 7) % 5;
    let unpublish = mode & 8 != 0;
    let send_media = mode & 16 != 0;
    let input = [server_prefix(stage).as_slice(), rest].concat();
    let start = Instant::now();
    let config = ClientConfig {
        publish_timeout: Some(PUBLISH_TIMEOUT),
        ..ClientConfig::new("rtmp://ingest.example/live", &format!("{KEY}?{QUERY}"))
    };
    let mut session = ClientSession::new(config, start);
    let media = Bytes::from_static(&[0x17, 0x01, 0, 0, 0, 0xAA, 0xBB]);
    let metadata = Bytes::from_static(b"\x02\x00\x0aonMetaData\x08\x00\x00\x00\x00\x00\x00\x09");
    let mut buf = BytesMut::new();
    let mut partial_writes = u32::from(*seed);
    let (mut connected, mut publishing) = (false, false);
    let mut first = true;
    'feed: for piece in Splitter::new(&input, *seed, 512) {
        buf.extend_from_slice(piece);
        loop {
            match session.poll(&mut buf) {
                Ok(None) => break,
                Ok(Some(event)) => {
                    check_event(&event);
                    match event {
                        ClientEvent::Connected => connected = true,
                        ClientEvent::Publishing { .. } => publishing = true,
                        _ => {}
                    }
                }
                Err(error) => {
                    check_error(&error);
                    break 'feed;
                }
            }
        }
        if send_media {
            drain(session.out(), usize::MAX);
            session.send_metadata(0, &metadata);
            session.send_media(type_id::VIDEO, 40, &media);
            // Media goes out only while publishing.
            assert_eq!(session.out().is_empty(), !session.is_publishing());
        }
        if unpublish && first {
            session.unpublish();
        }
        first = false;
        // Alternate short (partial) writes with full drains.
        partial_writes = partial_writes.rotate_left(1);
        let limit = if partial_writes & 1 != 0 {
            7
        } else {
            usize::MAX
        };
        drain(session.out(), limit);
    }
    drain(session.out(), usize::MAX);
    assert!(session.out().is_empty());
    // Every byte was read at `start`: the publish is not overdue then, and is at the
    // deadline unless the session publishes or gave up on publishing.
    assert!(session.handle_timeout(start).is_ok());
    let due = session.handle_timeout(start + PUBLISH_TIMEOUT);
    assert_eq!(due.is_err(), session.poll_timeout().is_some());
    if let Err(error) = due {
        assert!(matches!(error, ClientError::Timeout(_)), "{error:?}");
    }
    if rest.is_empty() && !unpublish {
        // The genuine prefixes really get the session through the sequence.
        assert_eq!(session.is_handshaking(), stage == 0);
        assert_eq!(connected, stage >= 2);
        assert_eq!(publishing, stage >= 4);
        assert_eq!(session.is_publishing(), stage >= 4);
    }
}
