//! Chunk-layer hot paths: decoding a publisher's byte stream (by the chunk decoder alone, and
//! by a whole server session, as the connection driver runs it), and chunking the same
//! messages again for one destination.
//!
//! The input is ~2 s of synthetic media shaped like an OBS publish (chunk size 4096, one 60 KB
//! keyframe and 29 inter frames of 8-25 KB per second, AAC frames of 300-400 B at 43/s,
//! audio on csid 6 and video on csid 7 as nginx-rtmp numbers them).

use std::hint::black_box;
use std::io::IoSlice;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use prism::rtmp::amf0::Amf0Value;
use prism::rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits, MessageHeader, OutBuf};
use prism::rtmp::message::{Command, Message, type_id};
use prism::rtmp::server::{ServerConfig, ServerEvent, ServerSession};

/// OBS's outgoing chunk size.
const CHUNK_SIZE: u32 = 4096;
/// The server's read size (`transport::ReadPolicy::CONNECTION`).
const READ_SIZE: usize = 64 * 1024;
const SECONDS: u32 = 2;
const AUDIO_CSID: u32 = 6;
const VIDEO_CSID: u32 = 7;
const MEDIA_STREAM_ID: u32 = 1;

/// Deterministic pseudo-random numbers (no dependency, same stream every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }

    fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.next() as usize % (high - low + 1)
    }
}

/// A payload of `len` bytes starting with the FLV tag header `head`, filled with noise.
fn payload(rng: &mut Lcg, head: &[u8], len: usize) -> Bytes {
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(head);
    while body.len() < len {
        body.push(rng.next() as u8);
    }
    Bytes::from(body)
}

/// The media messages of the synthetic publish, in timestamp order (audio first on ties).
fn media_messages() -> Vec<(MessageHeader, Bytes)> {
    let mut rng = Lcg(0x5eed);
    let header = |csid, timestamp, type_id| MessageHeader {
        csid,
        timestamp,
        type_id,
        stream_id: MEDIA_STREAM_ID,
    };
    let mut messages = vec![
        // AVC and AAC sequence headers, as every publisher sends first.
        (
            header(VIDEO_CSID, 0, type_id::VIDEO),
            payload(&mut rng, &[0x17, 0x00, 0, 0, 0, 1, 0x64, 0, 0x1f], 48),
        ),
        (
            header(AUDIO_CSID, 0, type_id::AUDIO),
            Bytes::from_static(&[0xAF, 0x00, 0x12, 0x10]),
        ),
    ];
    let mut media = Vec::new();
    for second in 0..SECONDS {
        for frame in 0..30u32 {
            let timestamp = second * 1000 + frame * 1000 / 30;
            let body = if frame == 0 {
                payload(&mut rng, &[0x17, 0x01, 0, 0, 0], 60_000)
            } else {
                let len = rng.between(8_000, 25_000);
                payload(&mut rng, &[0x27, 0x01, 0, 0, 0], len)
            };
            media.push((header(VIDEO_CSID, timestamp, type_id::VIDEO), body));
        }
        for frame in 0..43u32 {
            let timestamp = second * 1000 + frame * 1000 / 43;
            let len = rng.between(300, 400);
            let body = payload(&mut rng, &[0xAF, 0x01], len);
            media.push((header(AUDIO_CSID, timestamp, type_id::AUDIO), body));
        }
    }
    media.sort_by_key(|(header, _)| (header.timestamp, header.type_id));
    messages.extend(media);
    messages
}

/// Everything pending in `out`, copied out in order, then marked written.
fn drain(out: &mut OutBuf, into: &mut Vec<u8>) {
    while !out.is_empty() {
        let mut slices = [IoSlice::new(&[]); 64];
        let count = out.io_slices(&mut slices);
        let mut written = 0;
        for slice in &slices[..count] {
            into.extend_from_slice(slice);
            written += slice.len();
        }
        out.advance(written);
    }
}

/// The publisher's wire bytes after the handshake: Set Chunk Size (sent at the default 128),
/// then every media message chunked at 4096.
fn publisher_stream(messages: &[(MessageHeader, Bytes)]) -> Vec<u8> {
    let mut encoder = ChunkEncoder::new();
    let mut out = OutBuf::new();
    let mut wire = Vec::new();
    let set_chunk_size = MessageHeader {
        csid: 2,
        timestamp: 0,
        type_id: type_id::SET_CHUNK_SIZE,
        stream_id: 0,
    };
    let size = Bytes::copy_from_slice(&CHUNK_SIZE.to_be_bytes());
    encoder.encode(&set_chunk_size, &size, &mut out);
    encoder.set_chunk_size(CHUNK_SIZE);
    for (header, payload) in messages {
        encoder.encode(header, payload, &mut out);
        drain(&mut out, &mut wire);
    }
    wire
}

/// Decodes `wire` as the server does: appended in 64 KiB reads, every whole message taken out
/// after each read, Set Chunk Size applied. Returns the media payload bytes decoded.
fn decode_stream(wire: &[u8]) -> usize {
    let mut decoder = ChunkDecoder::new(DecoderLimits::default());
    let mut buf = BytesMut::new();
    let mut payload_bytes = 0;
    for read in wire.chunks(READ_SIZE) {
        if buf.capacity() - buf.len() < READ_SIZE / 4 {
            buf.reserve(READ_SIZE);
        }
        buf.extend_from_slice(read);
        while let Some(message) = decoder.decode(&mut buf).expect("valid chunk stream") {
            if message.type_id == type_id::SET_CHUNK_SIZE {
                let size: [u8; 4] = message.payload[..4].try_into().expect("4-byte body");
                decoder
                    .set_chunk_size(u32::from_be_bytes(size))
                    .expect("valid chunk size");
            } else {
                payload_bytes += message.payload.len();
            }
            black_box(&message);
        }
    }
    assert!(buf.is_empty(), "no trailing bytes");
    payload_bytes
}

fn chunk_decode_publisher_stream(c: &mut Criterion) {
    let messages = media_messages();
    let wire = publisher_stream(&messages);
    let media_bytes: usize = messages.iter().map(|(_, payload)| payload.len()).sum();
    // Setup check: the stream decodes back to exactly the media that was encoded.
    assert_eq!(decode_stream(&wire), media_bytes);

    let mut group = c.benchmark_group("chunk_decode_publisher_stream");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("obs_2s_4096", |b| {
        b.iter(|| decode_stream(black_box(&wire)));
    });
    group.finish();
}

/// Chunks every message for one destination and writes it out (io_slices, then advance as
/// a full `write_vectored` would). Returns the wire bytes produced.
fn encode_for_destination(
    encoder: &mut ChunkEncoder,
    out: &mut OutBuf,
    messages: &[(MessageHeader, Bytes)],
) -> usize {
    let mut wire_bytes = 0;
    for (header, payload) in messages {
        encoder.encode(header, payload, out);
        while !out.is_empty() {
            let mut slices = [IoSlice::new(&[]); 64];
            let count = out.io_slices(&mut slices);
            let written: usize = black_box(&slices[..count]).iter().map(|s| s.len()).sum();
            out.advance(written);
            wire_bytes += written;
        }
    }
    wire_bytes
}

/// Setup check: a keyframe's payload leaves the encoder as slices of the original `Bytes`
/// (only the chunk headers are copied).
fn assert_payload_is_shared(header: &MessageHeader, payload: &Bytes) {
    let mut encoder = ChunkEncoder::new();
    encoder.set_chunk_size(CHUNK_SIZE);
    let mut out = OutBuf::new();
    encoder.encode(header, payload, &mut out);
    let mut slices = [IoSlice::new(&[]); 64];
    let count = out.io_slices(&mut slices);
    assert!(count < slices.len(), "one keyframe fits in 64 slices");
    let range = payload.as_ptr_range();
    let shared: usize = slices[..count]
        .iter()
        .filter(|slice| range.contains(&slice.as_ptr()))
        .map(|slice| slice.len())
        .sum();
    assert_eq!(
        shared,
        payload.len(),
        "every payload byte is shared, none copied"
    );
    assert!(out.len() - shared < 64, "only chunk headers are copied");
}

fn chunk_encode_per_destination(c: &mut Criterion) {
    let messages = media_messages();
    let (key_header, keyframe) = messages
        .iter()
        .max_by_key(|(_, payload)| payload.len())
        .expect("messages");
    assert_payload_is_shared(key_header, keyframe);

    let mut encoder = ChunkEncoder::new();
    encoder.set_chunk_size(CHUNK_SIZE);
    let mut out = OutBuf::new();
    let wire_bytes = encode_for_destination(&mut encoder, &mut out, &messages);

    let mut group = c.benchmark_group("chunk_encode_per_destination");
    group.throughput(Throughput::Bytes(wire_bytes as u64));
    group.bench_function("obs_2s_4096", |b| {
        b.iter(|| {
            // A fresh destination each time: type-0 headers first, as after connect.
            encoder.reset();
            encode_for_destination(&mut encoder, &mut out, black_box(&messages))
        });
    });
    group.finish();
}

/// What a publisher sends before its media: a plain handshake (C0, C1, and a C2 the server
/// does not check), then connect, createStream and publish on message stream 1.
fn publisher_setup() -> Vec<u8> {
    let mut encoder = ChunkEncoder::new();
    let mut out = OutBuf::new();
    let mut wire = vec![3];
    wire.extend_from_slice(&[0; 2 * 1536]);
    let connect = Amf0Value::object([
        ("app", "live".into()),
        ("tcUrl", "rtmp://127.0.0.1/live".into()),
    ]);
    let publish = vec!["key".into(), "live".into()];
    let commands = [
        (0, Command::new("connect", 1.0, connect, vec![])),
        (
            0,
            Command::new("createStream", 2.0, Amf0Value::Null, vec![]),
        ),
        (
            MEDIA_STREAM_ID,
            Command::new("publish", 3.0, Amf0Value::Null, publish),
        ),
    ];
    for (stream_id, command) in commands {
        let (type_id, payload) = Message::Command(command).encode();
        let header = MessageHeader {
            csid: 3,
            timestamp: 0,
            type_id,
            stream_id,
        };
        encoder.encode(&header, &payload, &mut out);
    }
    drain(&mut out, &mut wire);
    wire
}

/// A server session that has accepted the publish of [`publisher_setup`].
fn publishing_session(setup: &[u8]) -> ServerSession {
    let mut session = ServerSession::new(ServerConfig::default(), Instant::now());
    let mut buf = BytesMut::from(setup);
    while let Some(event) = session.poll(&mut buf, Instant::now()).expect("valid setup") {
        if let ServerEvent::Publish { stream_id, .. } = event {
            session.accept_publish(stream_id);
        }
    }
    assert!(buf.is_empty(), "the setup is consumed");
    session
}

/// Runs `wire` through `session` as the connection driver does: 64 KiB reads, each with
/// its time, every event taken after each read. Returns the media payload bytes that came
/// out as events.
fn serve_publisher(mut session: ServerSession, wire: &[u8]) -> usize {
    let mut buf = BytesMut::new();
    let mut payload_bytes = 0;
    for read in wire.chunks(READ_SIZE) {
        if buf.capacity() - buf.len() < READ_SIZE / 4 {
            buf.reserve(READ_SIZE);
        }
        buf.extend_from_slice(read);
        let read_at = Instant::now();
        while let Some(event) = session.poll(&mut buf, read_at).expect("valid session") {
            if let ServerEvent::Audio { payload, .. } | ServerEvent::Video { payload, .. } = &event
            {
                payload_bytes += payload.len();
            }
            black_box(&event);
        }
    }
    assert!(buf.is_empty(), "no trailing bytes");
    payload_bytes
}

fn session_publisher_stream(c: &mut Criterion) {
    let messages = media_messages();
    let setup = publisher_setup();
    let wire = publisher_stream(&messages);
    let media_bytes: usize = messages.iter().map(|(_, payload)| payload.len()).sum();
    // Setup check: every media message comes out of the session as an event.
    assert_eq!(
        serve_publisher(publishing_session(&setup), &wire),
        media_bytes
    );

    let mut group = c.benchmark_group("session_publisher_stream");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("obs_2s_4096", |b| {
        // A fresh publishing session each time, made outside the timed part: what is timed
        // is the media path alone.
        b.iter_batched(
            || publishing_session(&setup),
            |session| serve_publisher(session, black_box(&wire)),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(
    benches,
    chunk_decode_publisher_stream,
    chunk_encode_per_destination,
    session_publisher_stream
);
criterion_main!(benches);
