//! Server session tests: a scripted client (prism's own chunk codec) says exactly
//! what the test needs, and every event and reply is checked, all in memory.

use std::io::IoSlice;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::rtmp::amf0::Amf0Value;
use crate::rtmp::chunk::{ChunkDecoder, ChunkEncoder, MessageHeader};
use crate::rtmp::message::{Command, UserControl};

/// Takes every pending byte out of an `OutBuf`.
fn drain(out: &mut OutBuf) -> BytesMut {
    let mut bytes = BytesMut::with_capacity(out.len());
    while !out.is_empty() {
        let written = {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = out.io_slices(&mut slices);
            slices[..n].iter().fold(0, |total, slice| {
                bytes.extend_from_slice(slice);
                total + slice.len()
            })
        };
        out.advance(written);
    }
    bytes
}

/// A server session and a scripted client wired to it.
struct Client {
    server: ServerSession,
    encoder: ChunkEncoder,
    decoder: ChunkDecoder,
    to_server: BytesMut,
    from_server: BytesMut,
}

impl Client {
    fn new() -> Self {
        Self {
            server: ServerSession::new(ServerConfig::default()),
            encoder: ChunkEncoder::new(),
            decoder: ChunkDecoder::new(DecoderLimits::default()),
            to_server: BytesMut::new(),
            from_server: BytesMut::new(),
        }
    }

    /// Sends one message on `csid` / message stream `stream_id` and returns the
    /// events it caused; publishes are accepted.
    fn send(
        &mut self,
        csid: u32,
        stream_id: u32,
        timestamp: u32,
        message: &Message,
    ) -> Vec<ServerEvent> {
        let (type_id, payload) = message.encode();
        let header = MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        };
        let mut out = OutBuf::new();
        self.encoder.encode(&header, &payload, &mut out);
        self.to_server.extend_from_slice(&drain(&mut out));
        let mut events = Vec::new();
        while let Some(event) = self.server.poll(&mut self.to_server).expect("valid input") {
            if let ServerEvent::Publish { stream_id, .. } = &event {
                self.server.accept_publish(*stream_id);
            }
            events.push(event);
        }
        events
    }

    fn command(
        &mut self,
        stream_id: u32,
        name: &str,
        txn: f64,
        args: Vec<Amf0Value>,
    ) -> Vec<ServerEvent> {
        let object = if name == "connect" {
            Amf0Value::object([
                ("app", "live".into()),
                ("tcUrl", "rtmp://127.0.0.1/live".into()),
            ])
        } else {
            Amf0Value::Null
        };
        let command = Message::Command(Command::new(name, txn, object, args));
        self.send(3, stream_id, 0, &command)
    }

    /// Every message the server has queued for the client, as (stream id, message).
    fn replies(&mut self) -> Vec<(u32, Message)> {
        let bytes = drain(self.server.out());
        self.from_server.extend_from_slice(&bytes);
        let mut replies = Vec::new();
        while let Some(raw) = self.decoder.decode(&mut self.from_server).unwrap() {
            let message = Message::decode(raw.type_id, raw.payload).unwrap();
            if let Message::SetChunkSize(size) = message {
                self.decoder.set_chunk_size(size).unwrap();
            }
            replies.push((raw.stream_id, message));
        }
        replies
    }

    /// Commands among the replies, as (stream id, name, transaction id, args).
    fn commands(&mut self) -> Vec<(u32, String, f64, Vec<Amf0Value>)> {
        self.replies()
            .into_iter()
            .filter_map(|(stream_id, message)| match message {
                Message::Command(c) => Some((stream_id, c.name, c.transaction_id, c.args)),
                _ => None,
            })
            .collect()
    }

    /// Connected, with stream 1 created and publishing.
    fn publishing() -> Self {
        let mut client = Self::new();
        client.command(0, "connect", 1.0, vec![]);
        client.command(0, "createStream", 2.0, vec![]);
        let events = client.command(1, "publish", 3.0, vec!["key".into(), "live".into()]);
        assert!(matches!(
            events[..],
            [ServerEvent::Publish { stream_id: 1, .. }]
        ));
        client.replies();
        client
    }
}

fn set_data_frame() -> Message {
    Message::data(vec![
        "@setDataFrame".into(),
        "onMetaData".into(),
        Amf0Value::ecma_array([("width", 320.0.into())]),
    ])
}

/// One FLV tag as it sits inside an aggregate message.
fn aggregate_tag(type_id: u8, timestamp: u32, data: &[u8]) -> Vec<u8> {
    let size = data.len() as u32;
    let mut tag = vec![type_id];
    tag.extend_from_slice(&size.to_be_bytes()[1..]);
    tag.extend_from_slice(&timestamp.to_be_bytes()[1..]);
    tag.push((timestamp >> 24) as u8);
    tag.extend_from_slice(&[0, 0, 0]);
    tag.extend_from_slice(data);
    tag.extend_from_slice(&(size + 11).to_be_bytes());
    tag
}

/// Runs `f` with this thread's tracing output captured, and returns it.
fn logs_of(f: impl FnOnce()) -> String {
    let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = Arc::clone(&buffer);
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || WriteTo(Arc::clone(&writer)))
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

struct WriteTo(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for WriteTo {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn media_on_stream_0_belongs_to_the_only_publishing_stream() {
    // Node-Media-Server 4's relay: publish on stream 1, everything else on stream 0.
    let mut client = Client::publishing();
    let metadata = client.send(4, 0, 0, &set_data_frame());
    assert_eq!(
        metadata,
        [ServerEvent::Metadata {
            stream_id: 1,
            metadata: Amf0Value::ecma_array([("width", 320.0.into())]),
        }]
    );
    let video = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2]);
    let audio = Bytes::from_static(&[0xAF, 1, 9]);
    assert_eq!(
        client.send(6, 0, 40, &Message::Video(video.clone())),
        [ServerEvent::Video {
            stream_id: 1,
            timestamp: 40,
            payload: video.clone(),
        }]
    );
    assert_eq!(
        client.send(4, 0, 41, &Message::Audio(audio.clone())),
        [ServerEvent::Audio {
            stream_id: 1,
            timestamp: 41,
            payload: audio.clone(),
        }]
    );
    let cue = Message::data(vec!["onCuePoint".into(), "x".into()]);
    let Message::Data {
        payload: cue_body, ..
    } = &cue
    else {
        unreachable!()
    };
    assert_eq!(
        client.send(4, 0, 42, &cue),
        [ServerEvent::Data {
            stream_id: 1,
            timestamp: 42,
            payload: cue_body.clone(),
        }]
    );
    let mut body = aggregate_tag(9, 1000, &video);
    body.extend(aggregate_tag(8, 1010, &audio));
    assert_eq!(
        client.send(4, 0, 80, &Message::Aggregate(Bytes::from(body))),
        [
            ServerEvent::Video {
                stream_id: 1,
                timestamp: 80,
                payload: video,
            },
            ServerEvent::Audio {
                stream_id: 1,
                timestamp: 90,
                payload: audio,
            },
        ]
    );
    // The stream's own id still works alongside.
    let events = client.send(6, 1, 120, &Message::Video(Bytes::from_static(&[0x27, 1])));
    assert!(matches!(
        events[..],
        [ServerEvent::Video { stream_id: 1, .. }]
    ));
}

#[test]
fn media_on_stream_0_without_exactly_one_publishing_stream_is_ignored_with_one_warning() {
    let video = Message::Video(Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2]));
    let audio = Message::Audio(Bytes::from_static(&[0xAF, 1, 9]));

    // No stream publishes yet: a connected peer (created stream, no publish).
    let logs = logs_of(|| {
        let mut client = Client::new();
        client.command(0, "connect", 1.0, vec![]);
        client.command(0, "createStream", 2.0, vec![]);
        for _ in 0..50 {
            assert_eq!(client.send(6, 0, 0, &video), []);
            assert_eq!(client.send(4, 0, 0, &audio), []);
        }
        assert_eq!(client.send(4, 0, 0, &set_data_frame()), []);
    });
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "one warning per connection: {logs}");
    assert!(
        warnings[0].contains("video on message stream 0 while no streams publish"),
        "{logs}"
    );

    // Two streams publish on one connection: stream 0 could mean either.
    let logs = logs_of(|| {
        let mut client = Client::publishing();
        client.command(0, "createStream", 4.0, vec![]);
        let events = client.command(2, "publish", 5.0, vec!["other".into(), "live".into()]);
        assert!(matches!(
            events[..],
            [ServerEvent::Publish { stream_id: 2, .. }]
        ));
        for _ in 0..50 {
            assert_eq!(client.send(4, 0, 0, &audio), []);
        }
        // Each stream's own media is still its own.
        let events = client.send(6, 2, 0, &video);
        assert!(matches!(
            events[..],
            [ServerEvent::Video { stream_id: 2, .. }]
        ));
    });
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "one warning per connection: {logs}");
    assert!(
        warnings[0].contains("audio on message stream 0 while several streams publish"),
        "{logs}"
    );

    // Media on a created stream that does not publish is not stream 0's case: no
    // warning, only a debug line.
    let logs = logs_of(|| {
        let mut client = Client::publishing();
        client.command(0, "createStream", 4.0, vec![]);
        assert_eq!(client.send(6, 2, 0, &video), []);
    });
    assert!(!logs.contains("WARN"), "{logs}");
}

#[test]
fn after_unpublish_stream_0_media_is_ignored_again() {
    let mut client = Client::publishing();
    let events = client.command(0, "FCUnpublish", 4.0, vec!["key".into()]);
    assert_eq!(events, [ServerEvent::Unpublish { stream_id: 1 }]);
    let video = Message::Video(Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2]));
    assert_eq!(client.send(6, 0, 0, &video), []);
}

#[test]
fn release_stream_gets_no_answer_and_no_reply_carries_undefined() {
    let mut client = Client::new();
    client.command(0, "connect", 1.0, vec![]);
    let connect = client.commands();
    assert_eq!(
        connect
            .iter()
            .map(|(id, name, txn, _)| (*id, name.as_str(), *txn))
            .collect::<Vec<_>>(),
        [(0, "_result", 1.0)]
    );
    // xiu's relay sends these with connect's transaction id: a `_result` for 1
    // would look like connect's answer again.
    client.command(0, "releaseStream", 1.0, vec!["key".into()]);
    assert_eq!(client.commands(), [], "nginx-rtmp answers nothing either");
    client.command(0, "FCPublish", 1.0, vec!["key".into()]);
    let fc_publish = client.commands();
    assert_eq!(
        fc_publish
            .iter()
            .map(|(id, name, txn, _)| (*id, name.as_str(), *txn))
            .collect::<Vec<_>>(),
        [(0, "onFCPublish", 0.0)],
        "a notification, never a `_result` for the client's transaction"
    );
    client.command(0, "createStream", 2.0, vec![]);
    assert_eq!(
        client.commands(),
        [(0, "_result".to_owned(), 2.0, vec![1.0.into()])]
    );
    client.command(0, "getStreamLength", 3.0, vec!["key".into()]);
    assert_eq!(
        client.commands(),
        [(0, "_result".to_owned(), 3.0, vec![0.0.into()])]
    );
}

#[test]
fn commands_and_other_non_media_messages_are_counted_but_media_is_not() {
    let mut client = Client::new();
    assert_eq!(client.server.commands_received(), 0);
    // Media before publishing is dropped, not counted.
    client.send(6, 1, 0, &Message::Audio(Bytes::from_static(&[0xAF, 1, 9])));
    client.send(
        7,
        0,
        0,
        &Message::Video(Bytes::from_static(&[0x17, 1, 0, 0, 0])),
    );
    assert_eq!(client.server.commands_received(), 0);
    client.command(0, "connect", 1.0, vec![]);
    client.command(0, "createStream", 2.0, vec![]);
    client.send(2, 0, 0, &Message::UserControl(UserControl::PingRequest(7)));
    client.send(2, 0, 0, &Message::WindowAckSize(1000));
    assert_eq!(client.server.commands_received(), 4);
    client.command(1, "publish", 3.0, vec!["key".into(), "live".into()]);
    assert_eq!(client.server.commands_received(), 5);
    // The published stream's media and metadata are not commands.
    for timestamp in 0..100 {
        client.send(
            6,
            1,
            timestamp,
            &Message::Audio(Bytes::from_static(&[0xAF, 1, 9])),
        );
        client.send(
            7,
            1,
            timestamp,
            &Message::Video(Bytes::from_static(&[0x27, 1, 0, 0, 0, 5])),
        );
    }
    client.send(4, 1, 0, &set_data_frame());
    assert_eq!(client.server.commands_received(), 5);
}

#[test]
fn a_session_with_a_shared_budget_fails_once_evicted() {
    use crate::rtmp::chunk::PendingBudget;
    let budget = PendingBudget::new(512 * 1024, 32 << 20);
    let config = ServerConfig {
        pending_budget: Some(budget.clone()),
        ..ServerConfig::default()
    };
    let mut hog = ServerSession::new(config.clone());
    let mut honest = ServerSession::new(config);
    let eviction = hog.budget_eviction().expect("a budget account");
    // The hog starts two 1 MiB messages (256 KiB reserved for each), filling the budget;
    // the honest session then needs 256 KiB for a frame: the hog holds more and goes.
    let start = |csid: u8| {
        let mut bytes = vec![csid, 0, 0, 0, 0x10, 0, 0, 9, 1, 0, 0, 0];
        bytes.extend_from_slice(&[0; 128]);
        BytesMut::from(&bytes[..])
    };
    assert!(hog.poll(&mut start(4)).unwrap().is_none());
    assert!(hog.poll(&mut start(5)).unwrap().is_none());
    assert!(!eviction.is_cancelled());
    assert!(honest.poll(&mut start(6)).unwrap().is_none());
    assert!(eviction.is_cancelled());
    let error = hog.poll(&mut BytesMut::new()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("closed to make room in the shared budget"),
        "{error}"
    );
    drop(hog);
    assert_eq!(budget.used(), 256 * 1024);
}
