//! Proves that a whole RTMP server session after its handshake (`ServerSession`: chunk
//! decoder, control messages, AMF0/AMF3 commands, connect/createStream/publish/play state
//! machine, aggregates, replies) never panics on any byte stream split into arbitrary reads,
//! with the application answering every Publish/Play event and draining the output queue in
//! between. Also checks the output queue's accounting (`io_slices` never yields more than
//! `len`, `advance` shrinks it exactly), and that the session's deadlines agree with its timer:
//! none has passed when the input is read, and one passes later unless the session plays.
//!
//! Input: [mode, split seed, bytes...]. A client handshake (C0+C1+C2) always comes first, so
//! the bytes reach the chunk stream; the handshake has targets of its own. Mode % 4 picks a
//! genuine prefix after it (none; connect; connect+createStream+publish;
//! connect+createStream+play) so the fuzzer starts deep in the state machine; mode bit 2
//! makes the application reject instead of accept.

use std::time::{Duration, Instant};

use super::{Splitter, drain};
use bytes::{Bytes, BytesMut};
use prism::rtmp::amf0::Amf0Value;
use prism::rtmp::chunk::{ChunkEncoder, MessageHeader, OutBuf};
use prism::rtmp::message::Command;
use prism::rtmp::server::{ServerConfig, ServerEvent, ServerSession};

/// Chunk-encodes the commands a publisher or player sends before its media.
fn prefix(mode: u8) -> Vec<u8> {
    let connect = Command::new(
        "connect",
        1.0,
        Amf0Value::object([
            ("app", Amf0Value::from("live")),
            ("tcUrl", "rtmp://localhost/live".into()),
            ("objectEncoding", 0.0.into()),
        ]),
        vec![],
    );
    let create = Command::new("createStream", 2.0, Amf0Value::Null, vec![]);
    let publish = Command::new(
        "publish",
        3.0,
        Amf0Value::Null,
        vec!["key".into(), "live".into()],
    );
    let play = Command::new("play", 3.0, Amf0Value::Null, vec!["key".into()]);
    let commands: Vec<(u32, &Command)> = match mode % 4 {
        0 => vec![],
        1 => vec![(0, &connect)],
        2 => vec![(0, &connect), (0, &create), (1, &publish)],
        _ => vec![(0, &connect), (0, &create), (1, &play)],
    };
    let mut encoder = ChunkEncoder::new();
    let mut out = OutBuf::new();
    // C0, a plain C1, and a C2 that does not echo S1 (the server only notes that).
    out.push_copy(&[3]);
    out.push_copy(&[0; 2 * 1536]);
    for (stream_id, command) in commands {
        let header = MessageHeader {
            csid: 3,
            timestamp: 0,
            type_id: 20,
            stream_id,
        };
        encoder.encode(&header, &command.encode(), &mut out);
    }
    drain(&mut out, usize::MAX)
}

/// Runs one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    let [mode, seed, rest @ ..] = data else {
        return;
    };
    let input = [prefix(*mode).as_slice(), rest].concat();
    let reject = mode & 4 != 0;
    let media = Bytes::from_static(&[0x17, 0x01, 0, 0, 0, 0xAA, 0xBB]);
    let start = Instant::now();
    let mut session = ServerSession::new(ServerConfig::default(), start);
    let mut buf = BytesMut::new();
    let mut partial_writes = u32::from(*seed);
    let (mut publishes, mut plays) = (0, 0);
    'feed: for piece in Splitter::new(&input, *seed, 512) {
        buf.extend_from_slice(piece);
        loop {
            match session.poll(&mut buf, start) {
                Ok(None) => break,
                Err(_) => break 'feed,
                Ok(Some(ServerEvent::Publish { stream_id, .. })) if reject => {
                    publishes += 1;
                    session.reject_publish(stream_id, "NetStream.Publish.BadName", "fuzz")
                }
                Ok(Some(ServerEvent::Publish { stream_id, .. })) => {
                    publishes += 1;
                    session.accept_publish(stream_id)
                }
                Ok(Some(ServerEvent::Play { stream_id, .. })) if reject => {
                    plays += 1;
                    session.reject_play(stream_id, "NetStream.Play.StreamNotFound", "fuzz")
                }
                Ok(Some(ServerEvent::Play { stream_id, .. })) => {
                    plays += 1;
                    session.accept_play(stream_id);
                    session.send_media(stream_id, 9, 40, &media);
                }
                Ok(Some(ServerEvent::StopPlay { stream_id })) => session.end_play(stream_id),
                Ok(Some(_)) => {}
            }
            // Alternate short (partial) writes with full drains.
            partial_writes = partial_writes.rotate_left(1);
            let limit = if partial_writes & 1 != 0 {
                7
            } else {
                usize::MAX
            };
            drain(session.out(), limit);
        }
    }
    drain(session.out(), usize::MAX);
    assert!(session.out().is_empty());
    // All of it was read at `start`: no deadline has passed then; a day later one has,
    // unless the session only plays (players have none).
    assert!(session.handle_timeout(start).is_ok());
    let day = start + Duration::from_secs(86_400);
    assert_eq!(
        session.handle_timeout(day).is_ok(),
        session.poll_timeout().is_none()
    );
    if rest.is_empty() {
        // The genuine prefixes really get the harness to the Publish/Play decision.
        assert!(session.is_connected() || mode % 4 == 0);
        assert_eq!(
            (publishes, plays),
            [(0, 0), (0, 0), (1, 0), (0, 1)][usize::from(mode % 4)]
        );
    }
}
