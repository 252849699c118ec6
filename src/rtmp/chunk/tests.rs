//! Cross-cutting tests of the chunk layer: encoder -> decoder round trips, random and mutated
//! input to the decoder, and allocation counts on the hot paths. Hand-written byte vectors live
//! next to the decoder and encoder.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::IoSlice;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::{
    ChunkDecoder, ChunkEncoder, ChunkError, DecoderLimits, MAX_BUFFERED_CHUNK, MessageHeader,
    OutBuf, PendingBudget, RawMessage,
};

/// Parses whitespace-separated hex bytes, so vectors read like the spec's diagrams.
pub(super) fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|byte| u8::from_str_radix(byte, 16).expect("test vector is valid hex"))
        .collect()
}

/// Writes everything queued in `out` the way a socket loop would: `io_slices` into a small
/// fixed array, then `advance` by what was "written". Returns the bytes in order.
pub(super) fn drain(out: &mut OutBuf) -> Vec<u8> {
    let mut written = Vec::with_capacity(out.len());
    while !out.is_empty() {
        let mut slices = [IoSlice::new(&[]); 16];
        let count = out.io_slices(&mut slices);
        let before = written.len();
        for slice in &slices[..count] {
            written.extend_from_slice(slice);
        }
        out.advance(written.len() - before);
    }
    written
}

/// Decodes every complete message in `bytes` at once.
pub(super) fn decode_all(
    decoder: &mut ChunkDecoder,
    bytes: &[u8],
) -> Result<Vec<RawMessage>, ChunkError> {
    let mut buf = BytesMut::from(bytes);
    let mut messages = Vec::new();
    while let Some(message) = decoder.decode(&mut buf)? {
        messages.push(message);
    }
    Ok(messages)
}

/// Decodes `bytes` fed one byte at a time, as the slowest possible socket would deliver them.
pub(super) fn decode_bytewise(
    decoder: &mut ChunkDecoder,
    bytes: &[u8],
) -> Result<Vec<RawMessage>, ChunkError> {
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for &byte in bytes {
        buf.extend_from_slice(&[byte]);
        while let Some(message) = decoder.decode(&mut buf)? {
            messages.push(message);
        }
    }
    Ok(messages)
}

/// Applies a decoded message the way the session does for the chunk layer's own control
/// messages: Set Chunk Size (type 1) and Abort (type 2) on any chunk stream.
fn apply_control(decoder: &mut ChunkDecoder, message: &RawMessage) -> Result<(), ChunkError> {
    let Ok(value) = <[u8; 4]>::try_from(message.payload.as_ref()) else {
        return Ok(());
    };
    match message.type_id {
        1 => decoder.set_chunk_size(u32::from_be_bytes(value)),
        2 => {
            decoder.abort(u32::from_be_bytes(value));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Feeds `bytes` in pieces cut at `cuts` (offsets, any order, out-of-range ignored), applying
/// control messages, checking the memory bound after every call. Stops at the first error.
fn decode_in_pieces(
    decoder: &mut ChunkDecoder,
    limits: &DecoderLimits,
    bytes: &[u8],
    cuts: &[usize],
) -> (Vec<RawMessage>, Option<ChunkError>) {
    let mut cuts: Vec<usize> = cuts.iter().map(|&cut| cut.min(bytes.len())).collect();
    cuts.push(bytes.len());
    cuts.sort_unstable();
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    let mut start = 0;
    for end in cuts {
        buf.extend_from_slice(&bytes[start..end]);
        start = end;
        loop {
            let result = decoder.decode(&mut buf);
            assert!(decoder.pending_bytes() <= limits.max_pending_bytes);
            assert!(decoder.held_capacity() <= limits.max_pending_bytes);
            match result {
                Ok(Some(message)) => {
                    if let Err(error) = apply_control(decoder, &message) {
                        return (messages, Some(error));
                    }
                    messages.push(message);
                }
                Ok(None) => break,
                Err(error) => return (messages, Some(error)),
            }
        }
    }
    (messages, None)
}

#[derive(Debug, Clone)]
struct TestMessage {
    header: MessageHeader,
    payload: Bytes,
}

fn arb_csid() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(3u32),
        Just(4),
        Just(63),
        Just(64),
        Just(319),
        Just(320),
        Just(65599),
        2u32..=65599,
    ]
}

fn arb_timestamp_step() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        1u32..100,
        Just(0xFF_FFFF),
        0xFF_FF00u32..0x100_0100,
        any::<u32>(),
    ]
}

fn arb_payload() -> impl Strategy<Value = Bytes> {
    let len = prop_oneof![Just(0usize), Just(4), Just(200), 0usize..700];
    len.prop_flat_map(|len| prop::collection::vec(any::<u8>(), len))
        .prop_map(Bytes::from)
}

/// Messages with timestamps accumulated from steps (so deltas, repeats, jumps past 0xFFFFFF and
/// wraps past 2^32 all occur), on a mix of chunk streams. Type 1/2 are left out: in the round
/// trip those are the chunk layer's own control messages.
fn arb_messages() -> impl Strategy<Value = Vec<TestMessage>> {
    let message = (
        arb_csid(),
        arb_timestamp_step(),
        prop_oneof![Just(8u8), Just(9), Just(18), Just(20), 3u8..=255],
        prop_oneof![Just(0u32), Just(1), any::<u32>()],
        arb_payload(),
    );
    prop::collection::vec(message, 1..12).prop_map(|items| {
        let mut timestamp = 0u32;
        items
            .into_iter()
            .map(|(csid, step, type_id, stream_id, payload)| {
                timestamp = timestamp.wrapping_add(step);
                TestMessage {
                    header: MessageHeader {
                        csid,
                        timestamp,
                        type_id,
                        stream_id,
                    },
                    payload,
                }
            })
            .collect()
    })
}

fn arb_chunk_size() -> impl Strategy<Value = u32> {
    prop_oneof![1u32..=16, 17u32..=512, 513u32..=65536]
}

/// The default limits, but any chunk size allowed: the round trips below use tiny chunk sizes
/// to exercise every header form, which a public ingest refuses (see
/// [`DecoderLimits::min_chunk_size`]).
fn any_chunk_size() -> DecoderLimits {
    DecoderLimits {
        min_chunk_size: 1,
        ..DecoderLimits::default()
    }
}

fn raw(message: &TestMessage) -> RawMessage {
    RawMessage {
        csid: message.header.csid,
        timestamp: message.header.timestamp,
        type_id: message.header.type_id,
        stream_id: message.header.stream_id,
        payload: message.payload.clone(),
    }
}

fn set_chunk_size_message(size: u32) -> TestMessage {
    TestMessage {
        header: MessageHeader {
            csid: 2,
            timestamp: 0,
            type_id: 1,
            stream_id: 0,
        },
        payload: Bytes::copy_from_slice(&size.to_be_bytes()),
    }
}

/// Encodes `messages`, switching to `second_size` (announced by a Set Chunk Size message)
/// before message `switch_at`. Returns the wire bytes and the messages the peer must decode.
fn encode_stream(
    messages: &[TestMessage],
    first_size: u32,
    second_size: u32,
    switch_at: usize,
) -> (Vec<u8>, Vec<RawMessage>) {
    let mut encoder = ChunkEncoder::new();
    let mut out = OutBuf::new();
    let mut expected = Vec::new();
    let announce = set_chunk_size_message(first_size);
    encoder.encode(&announce.header, &announce.payload, &mut out);
    encoder.set_chunk_size(first_size);
    expected.push(raw(&announce));
    for (index, message) in messages.iter().enumerate() {
        if index == switch_at {
            let announce = set_chunk_size_message(second_size);
            encoder.encode(&announce.header, &announce.payload, &mut out);
            encoder.set_chunk_size(second_size);
            expected.push(raw(&announce));
        }
        encoder.encode(&message.header, &message.payload, &mut out);
        expected.push(raw(message));
    }
    (drain(&mut out), expected)
}

proptest! {
    #[test]
    fn encoder_output_decodes_to_the_same_messages(
        messages in arb_messages(),
        first_size in arb_chunk_size(),
        second_size in arb_chunk_size(),
        switch_at in 0usize..12,
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let (wire, expected) = encode_stream(&messages, first_size, second_size, switch_at);
        let limits = any_chunk_size();
        let mut decoder = ChunkDecoder::new(limits);
        let cuts: Vec<usize> = cuts.iter().map(|cut| cut % (wire.len() + 1)).collect();
        let (decoded, error) = decode_in_pieces(&mut decoder, &limits, &wire, &cuts);
        prop_assert_eq!(error, None);
        prop_assert_eq!(decoded, expected);
        prop_assert_eq!(decoder.pending_bytes(), 0);
    }

    #[test]
    fn random_bytes_never_panic_or_exceed_limits(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in prop::collection::vec(0usize..2048, 0..8),
        small_limits in any::<bool>(),
    ) {
        let limits = if small_limits {
            DecoderLimits {
                max_message_len: 4096,
                max_chunk_streams: 4,
                max_pending_bytes: 6000,
                min_chunk_size: 1,
            }
        } else {
            DecoderLimits::default()
        };
        let mut decoder = ChunkDecoder::new(limits);
        decode_in_pieces(&mut decoder, &limits, &bytes, &cuts);
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        chunk_size in arb_chunk_size(),
    ) {
        // Start from a state with an extended timestamp and a partial message, so random bytes
        // hit the type-3 peek and continuation paths too.
        let mut wire = hex("04 FF FF FF 00 01 00 09 01 00 00 00 01 00 00 00");
        wire.extend_from_slice(&[0xAB; 100]);
        wire.extend_from_slice(&bytes);
        let limits = DecoderLimits { max_pending_bytes: 100_000, ..DecoderLimits::default() };
        let mut decoder = ChunkDecoder::new(limits);
        prop_assert!(decoder.set_chunk_size(chunk_size.max(100)).is_ok());
        decode_in_pieces(&mut decoder, &limits, &wire, &[]);
    }

    #[test]
    fn mutated_streams_never_panic_or_exceed_limits(
        messages in arb_messages(),
        chunk_size in arb_chunk_size(),
        mutations in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let (mut wire, _) = encode_stream(&messages, chunk_size, chunk_size, usize::MAX);
        for (at, byte, kind) in mutations {
            let at = at % (wire.len() + 1);
            match kind {
                0 if at < wire.len() => wire[at] = byte,
                1 => wire.insert(at, byte),
                _ if at < wire.len() => { wire.remove(at); }
                _ => {}
            }
        }
        let limits = DecoderLimits { max_pending_bytes: 1 << 20, ..any_chunk_size() };
        let mut decoder = ChunkDecoder::new(limits);
        decode_in_pieces(&mut decoder, &limits, &wire, &[]);
    }
}

/// Messages big enough that chunk sizes above [`MAX_BUFFERED_CHUNK`] are taken in pieces, with
/// small ones between them.
fn arb_big_messages() -> impl Strategy<Value = Vec<TestMessage>> {
    let len = prop_oneof![0usize..300, 60_000usize..70_000, 100_000usize..300_000];
    let message = (
        prop_oneof![Just(4u32), Just(6), Just(70)],
        prop_oneof![Just(8u8), Just(9)],
        len,
        any::<u8>(),
    );
    prop::collection::vec(message, 1..5).prop_map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(index, (csid, type_id, len, seed))| TestMessage {
                header: MessageHeader {
                    csid,
                    // Some past 0xFFFFFF, so pieces follow extended-timestamp headers too.
                    timestamp: (index as u32) * 0x60_0000,
                    type_id,
                    stream_id: 1,
                },
                payload: (0..len)
                    .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                    .collect::<Vec<u8>>()
                    .into(),
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn chunks_bigger_than_the_buffered_maximum_decode_the_same_in_any_pieces(
        messages in arb_big_messages(),
        chunk_size in prop_oneof![Just(65_536u32), Just(65_537), 100_000u32..400_000, Just(0x7FFF_FFFF)],
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let (wire, expected) = encode_stream(&messages, chunk_size, chunk_size, usize::MAX);
        let limits = DecoderLimits::default();
        let mut decoder = ChunkDecoder::new(limits);
        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (wire.len() + 1)).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        let mut start = 0;
        for end in cuts {
            buf.extend_from_slice(&wire[start..end]);
            start = end;
            while let Some(message) = decoder.decode(&mut buf).expect("a valid stream") {
                apply_control(&mut decoder, &message).expect("valid control message");
                decoded.push(message);
            }
            // What is left waiting is never more than one chunk of at most the buffered
            // maximum: a peer's chunk size cannot make the input buffer hold more.
            prop_assert!(buf.len() <= decoder.max_chunk_bytes());
            prop_assert!(decoder.max_chunk_bytes() <= MAX_BUFFERED_CHUNK + 18);
            prop_assert!(decoder.held_capacity() <= limits.max_pending_bytes);
        }
        prop_assert_eq!(decoded, expected);
        prop_assert_eq!(decoder.pending_bytes(), 0);
    }
}

proptest! {
    #[test]
    fn a_shared_budget_counts_exactly_what_decoders_hold_and_gets_it_all_back(
        streams in prop::collection::vec(
            (arb_messages(), arb_chunk_size(), prop::collection::vec((any::<usize>(), any::<u8>()), 0..4)),
            2..4,
        ),
        max in 500usize..5000,
        rounds in prop::collection::vec(0usize..4, 1..40),
    ) {
        let limits = DecoderLimits { max_pending_bytes: 3000, ..any_chunk_size() };
        let budget = PendingBudget::new(max, limits.max_pending_bytes);
        let mut peers: Vec<(ChunkDecoder, Vec<u8>, usize, bool)> = streams
            .iter()
            .map(|(messages, chunk_size, mutations)| {
                let (mut wire, _) = encode_stream(messages, *chunk_size, *chunk_size, usize::MAX);
                for &(at, byte) in mutations {
                    let at = at % (wire.len() + 1);
                    if at < wire.len() {
                        wire[at] = byte;
                    }
                }
                (ChunkDecoder::with_budget(limits, budget.account()), wire, 0, false)
            })
            .collect();
        // Feed the peers' streams interleaved, 97 bytes at a time, as connections would.
        for peer in rounds {
            let count = peers.len();
            let (decoder, wire, fed, failed) = &mut peers[peer % count];
            if *failed {
                continue;
            }
            let end = (*fed + 97).min(wire.len());
            let mut buf = BytesMut::from(&wire[*fed..end]);
            *fed = end;
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(message)) => {
                        if apply_control(decoder, &message).is_err() {
                            *failed = true;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        *failed = true;
                        break;
                    }
                }
            }
            // Any leftover partial chunk is dropped: this decoder's stream is out of step
            // from here, which only makes the input more hostile.
            let held: usize = peers.iter().map(|(decoder, ..)| decoder.pending_bytes()).sum();
            prop_assert_eq!(budget.used(), held);
            prop_assert!(held <= max + limits.max_pending_bytes);
        }
        drop(peers);
        prop_assert_eq!(budget.used(), 0);
    }
}

#[test]
fn encoder_output_decodes_the_same_when_fed_byte_by_byte() {
    let messages: Vec<TestMessage> = [
        (3, 0, 20, 0, 150),
        (4, 0, 18, 1, 300),
        (6, 0xFF_FFFF, 9, 1, 400),
        (6, 0x100_0000, 9, 1, 400),
        (4, 0x100_0010, 8, 1, 7),
        (400, 5, 8, 1, 0),
        (70, 0xFFFF_FFF0, 9, 1, 260),
        (70, 0x10, 9, 1, 260),
    ]
    .iter()
    .map(|&(csid, timestamp, type_id, stream_id, len)| TestMessage {
        header: MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        },
        payload: Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
    })
    .collect();
    let (wire, expected) = encode_stream(&messages, 128, 100, 4);
    let mut decoder = ChunkDecoder::new(DecoderLimits::default());
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    for &byte in &wire {
        buf.extend_from_slice(&[byte]);
        while let Some(message) = decoder.decode(&mut buf).expect("valid stream") {
            apply_control(&mut decoder, &message).expect("valid control message");
            decoded.push(message);
        }
    }
    assert_eq!(decoded, expected);
    assert!(buf.is_empty());
}

// Allocation counting. A counting allocator for this test binary; counts are per thread so
// tests running in parallel do not disturb each other.

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_allocation() {
    // try_with: never panic inside the allocator, even during thread teardown.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only a
// const-initialised thread-local Cell, which never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Allocations (including reallocations) made by this thread while running `work`.
fn allocations_during(work: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    work();
    ALLOCATIONS.with(Cell::get) - before
}

fn media_messages() -> Vec<TestMessage> {
    let audio = Bytes::from(vec![0xAF; 300]);
    let video = Bytes::from(vec![0x17; 9000]);
    let mut messages = Vec::new();
    for frame in 0..20u32 {
        messages.push(TestMessage {
            header: MessageHeader {
                csid: 4,
                timestamp: frame * 23,
                type_id: 8,
                stream_id: 1,
            },
            payload: audio.clone(),
        });
        messages.push(TestMessage {
            header: MessageHeader {
                csid: 6,
                // Past 0xFFFFFF so extended timestamps are exercised as well.
                timestamp: 0x100_0000 + frame * 33,
                type_id: 9,
                stream_id: 1,
            },
            payload: video.clone(),
        });
    }
    messages
}

#[test]
fn encoding_allocates_nothing_in_steady_state() {
    let messages = media_messages();
    let mut encoder = ChunkEncoder::new();
    encoder.set_chunk_size(4096);
    let mut out = OutBuf::new();
    let send_all = |encoder: &mut ChunkEncoder, out: &mut OutBuf| {
        for message in &messages {
            encoder.encode(&message.header, &message.payload, out);
            // Like a connection that writes as it goes: a few parts per write_vectored call.
            while !out.is_empty() {
                let mut slices = [IoSlice::new(&[]); 8];
                let count = out.io_slices(&mut slices);
                let written: usize = slices[..count].iter().map(|slice| slice.len()).sum();
                out.advance(written);
            }
        }
    };
    // Warm-up: chunk stream table, part queue, scratch block, payload promotion to shared.
    send_all(&mut encoder, &mut out);
    encoder.reset();
    send_all(&mut encoder, &mut out);
    encoder.reset();
    let allocations = allocations_during(|| send_all(&mut encoder, &mut out));
    assert_eq!(allocations, 0);
}

#[test]
fn decoding_allocates_once_per_multi_chunk_message_and_never_for_single_chunks() {
    let messages = media_messages();
    let mut encoder = ChunkEncoder::new();
    encoder.set_chunk_size(4096);
    let mut out = OutBuf::new();
    for message in &messages {
        encoder.encode(&message.header, &message.payload, &mut out);
    }
    let wire = drain(&mut out);
    let mut decoder = ChunkDecoder::new(DecoderLimits::default());
    decoder.set_chunk_size(4096).expect("valid chunk size");
    let mut buf = BytesMut::from(&wire[..]);
    let mut decoded = Vec::with_capacity(messages.len());
    // Warm-up: the first audio and video messages create the chunk stream state and turn the
    // input buffer into a shared one.
    for _ in 0..2 {
        decoded.push(decoder.decode(&mut buf).expect("valid").expect("complete"));
    }
    let allocations = allocations_during(|| {
        while let Some(message) = decoder.decode(&mut buf).expect("valid") {
            decoded.push(message);
        }
    });
    // 19 remaining video frames of 9000 bytes (3 chunks each) need one buffer each; the 19
    // audio frames fit in one chunk and are split off the input.
    assert_eq!(allocations, 19);
    assert_eq!(decoded.len(), messages.len());
    for (message, expected) in decoded.iter().zip(&messages) {
        assert_eq!(message.payload, expected.payload);
    }
}
