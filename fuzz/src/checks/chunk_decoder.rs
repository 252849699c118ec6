//! Proves that `ChunkDecoder` never panics on any chunk stream, keeps every peer-controlled
//! size within its `DecoderLimits` (pending bytes, message length), and decodes the same
//! messages whether the bytes arrive at once or split into arbitrary reads.
//!
//! Input: [chunk size selector, split seed, bytes...]. Like prism's link layer, a decoded Set
//! Chunk Size (type 1) or Abort (type 2) message is applied to the decoder before the next
//! decode, so mid-stream chunk-size changes are exercised too.

use super::Splitter;
use bytes::BytesMut;
use prism::rtmp::chunk::{ChunkDecoder, ChunkError, DecoderLimits, RawMessage};

const LIMITS: DecoderLimits = DecoderLimits {
    max_message_len: 65_536,
    max_chunk_streams: 8,
    max_pending_bytes: 1 << 20,
    // Tiny chunk sizes reach every header form quickly; prism's own minimum (64) is a
    // plain comparison, tested in the decoder's unit tests.
    min_chunk_size: 1,
};

/// Chunk sizes worth trying first: tiny, spec default, common, at and past the limits, invalid.
const SIZES: [u32; 12] = [
    1,
    2,
    3,
    7,
    64,
    128,
    4096,
    65_535,
    65_536,
    65_537,
    0x7FFF_FFFF,
    0,
];

fn chunk_size(selector: u8) -> u32 {
    match SIZES.get(usize::from(selector)) {
        Some(&size) => size,
        None => u32::from(selector) * 37,
    }
}

/// Decodes `pieces` in order; returns the messages and the error that ended the stream, if any.
fn run<'a>(
    selector: u8,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> (Vec<RawMessage>, Option<ChunkError>) {
    let mut decoder = ChunkDecoder::new(LIMITS);
    // Invalid sizes (0) are refused and leave the default in force.
    let _ = decoder.set_chunk_size(chunk_size(selector));
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            let result = decoder.decode(&mut buf);
            assert!(
                decoder.pending_bytes() <= LIMITS.max_pending_bytes,
                "pending {} > limit",
                decoder.pending_bytes()
            );
            match result {
                Ok(None) => break,
                Ok(Some(message)) => {
                    assert!(message.payload.len() <= LIMITS.max_message_len as usize);
                    match (message.type_id, message.payload.first_chunk::<4>()) {
                        (1, Some(&size)) => {
                            let size = u32::from_be_bytes(size) & 0x7FFF_FFFF;
                            if let Err(error) = decoder.set_chunk_size(size) {
                                return (messages, Some(error));
                            }
                        }
                        (2, Some(&csid)) => decoder.abort(u32::from_be_bytes(csid)),
                        _ => {}
                    }
                    messages.push(message);
                }
                Err(error) => return (messages, Some(error)),
            }
        }
    }
    (messages, None)
}

/// Runs one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    let [selector, seed, rest @ ..] = data else {
        return;
    };
    let whole = run(*selector, std::iter::once(rest));
    let split = run(*selector, Splitter::new(rest, *seed, 300));
    assert_eq!(whole, split, "decoding depends on how the input was split");
}
