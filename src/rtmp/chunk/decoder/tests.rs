//! Chunk decoder tests: every header form, extended timestamps, interleaving, limits, and the
//! shared budget, on byte vectors written by hand.

use bytes::BytesMut;

use super::super::PendingBudget;
use super::super::tests::{decode_all, decode_bytewise, hex};
use super::plan::MAX_INITIAL_RESERVE;
use super::*;

/// The default limits, but any chunk size allowed: the vectors below use tiny chunk sizes
/// to show each header form in a few bytes.
fn decoder() -> ChunkDecoder {
    ChunkDecoder::new(DecoderLimits {
        min_chunk_size: 1,
        ..DecoderLimits::default()
    })
}

fn message(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> RawMessage {
    RawMessage {
        csid,
        timestamp,
        type_id,
        stream_id,
        payload: Bytes::copy_from_slice(payload),
    }
}

/// `header` (hex) followed by `len` payload bytes of value `fill`.
fn chunk(header: &str, fill: u8, len: usize) -> Vec<u8> {
    let mut bytes = hex(header);
    bytes.extend(std::iter::repeat_n(fill, len));
    bytes
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn filled(parts: &[(u8, usize)]) -> Vec<u8> {
    parts
        .iter()
        .flat_map(|&(fill, len)| std::iter::repeat_n(fill, len))
        .collect()
}

#[test]
fn decodes_set_chunk_size_with_type0_header() {
    let wire = hex("02 00 00 00 00 00 04 01 00 00 00 00 00 00 10 00");
    let messages = decode_all(&mut decoder(), &wire).unwrap();
    assert_eq!(messages, vec![message(2, 0, 1, 0, &[0, 0, 0x10, 0])]);
}

#[test]
fn decodes_two_byte_basic_header() {
    // Field 0 -> csid = 64 + next byte; stream id 1 is little-endian.
    let wire = hex("00 06 00 00 0A 00 00 02 08 01 00 00 00 AA BB");
    let messages = decode_all(&mut decoder(), &wire).unwrap();
    assert_eq!(messages, vec![message(70, 10, 8, 1, &[0xAA, 0xBB])]);
}

#[test]
fn decodes_three_byte_basic_header() {
    // Field 1 -> csid = 64 + byte1 + byte2 * 256 = 64 + 0x2C + 256 = 364.
    let wire = hex("01 2C 01 00 00 0A 00 00 01 09 01 00 00 00 CC");
    let messages = decode_all(&mut decoder(), &wire).unwrap();
    assert_eq!(messages, vec![message(364, 10, 9, 1, &[0xCC])]);
}

#[test]
fn decodes_extreme_chunk_stream_ids_in_every_form() {
    let wire = concat(&[
        hex("00 00 00 00 01 00 00 01 08 00 00 00 00 01"), // 64, two-byte form
        hex("00 FF 00 00 01 00 00 01 08 00 00 00 00 02"), // 319
        hex("01 00 00 00 00 02 00 00 01 08 00 00 00 00 03"), // 64, three-byte form
        hex("01 FF FF 00 00 01 00 00 01 08 00 00 00 00 04"), // 65599
        hex("3F 00 00 01 00 00 01 08 00 00 00 00 05"),    // 63, one-byte form
    ]);
    let messages = decode_all(&mut decoder(), &wire).unwrap();
    let ids: Vec<(u32, u32)> = messages.iter().map(|m| (m.csid, m.timestamp)).collect();
    assert_eq!(ids, vec![(64, 1), (319, 1), (64, 2), (65599, 1), (63, 1)]);
}

#[test]
fn continuation_chunks_with_multi_byte_basic_headers() {
    let mut decoder = decoder();
    decoder.set_chunk_size(2).unwrap();
    let wire = concat(&[
        hex("00 06 00 00 00 00 00 03 09 01 00 00 00 AA BB"),
        hex("C0 06 CC"),
        hex("01 2C 01 00 00 00 00 00 03 09 01 00 00 00 DD EE"),
        hex("C1 2C 01 FF"),
    ]);
    let messages = decode_all(&mut decoder, &wire).unwrap();
    assert_eq!(
        messages,
        vec![
            message(70, 0, 9, 1, &[0xAA, 0xBB, 0xCC]),
            message(364, 0, 9, 1, &[0xDD, 0xEE, 0xFF]),
        ]
    );
}

#[test]
fn type_1_2_3_headers_inherit_and_add_deltas() {
    let wire = concat(&[
        chunk("04 00 03 E8 00 00 20 08 01 00 00 00", 0x11, 32), // type 0, ts 1000
        chunk("84 00 00 14", 0x22, 32),                         // type 2, +20
        chunk("C4", 0x33, 32),                                  // type 3, new message: +20
        chunk("C4", 0x44, 32),                                  // +20 again
        hex("44 00 00 0A 00 00 03 09 55 55 55"),                // type 1, +10, len 3, video
        hex("C4 66 66 66"),                                     // type 3: +10
    ]);
    let messages = decode_all(&mut decoder(), &wire).unwrap();
    assert_eq!(
        messages,
        vec![
            message(4, 1000, 8, 1, &[0x11; 32]),
            message(4, 1020, 8, 1, &[0x22; 32]),
            message(4, 1040, 8, 1, &[0x33; 32]),
            message(4, 1060, 8, 1, &[0x44; 32]),
            message(4, 1070, 9, 1, &[0x55; 3]),
            message(4, 1080, 9, 1, &[0x66; 3]),
        ]
    );
}

#[test]
fn type3_after_type0_reapplies_the_type0_timestamp_as_delta() {
    // FFmpeg and SRS: the type-0 timestamp field doubles as the delta type 3 re-applies.
    let wire = hex("04 00 00 64 00 00 01 08 01 00 00 00 AA C4 BB");
    let messages = decode_all(&mut decoder(), &wire).unwrap();
    assert_eq!(
        messages,
        vec![
            message(4, 100, 8, 1, &[0xAA]),
            message(4, 200, 8, 1, &[0xBB])
        ]
    );
}

#[test]
fn message_spanning_three_chunks() {
    let wire = concat(&[
        chunk("04 00 03 E8 00 01 33 09 01 00 00 00", 1, 128),
        chunk("C4", 2, 128),
        chunk("C4", 3, 51),
    ]);
    let mut decoder = decoder();
    let messages = decode_all(&mut decoder, &wire).unwrap();
    let payload = filled(&[(1, 128), (2, 128), (3, 51)]);
    assert_eq!(messages, vec![message(4, 1000, 9, 1, &payload)]);
    assert_eq!(decoder.pending_bytes(), 0);
}

#[test]
fn interleaved_messages_on_two_chunk_streams() {
    let wire = concat(&[
        chunk("04 00 00 00 00 00 C8 09 01 00 00 00", 0xA1, 128),
        chunk("06 00 00 05 00 00 0A 08 01 00 00 00", 0xB0, 10),
        chunk("C4", 0xA2, 72),
    ]);
    let messages = decode_all(&mut decoder(), &wire).unwrap();
    assert_eq!(
        messages,
        vec![
            message(6, 5, 8, 1, &[0xB0; 10]),
            message(4, 0, 9, 1, &filled(&[(0xA1, 128), (0xA2, 72)])),
        ]
    );
}

#[test]
fn set_chunk_size_between_chunks_of_one_message() {
    let wire = concat(&[
        chunk("04 00 00 00 00 01 2C 09 01 00 00 00", 1, 128), // 300 bytes, 128 so far
        hex("02 00 00 00 00 00 04 01 00 00 00 00 00 00 01 00"), // Set Chunk Size 256
        chunk("C4", 2, 172),                                  // the rest in one chunk
        chunk("84 00 00 01", 3, 256),                         // next 300-byte message: 256 + 44 now
        chunk("C4", 4, 44),
    ]);
    let mut decoder = decoder();
    let mut buf = BytesMut::from(&wire[..]);
    let control = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(control, message(2, 0, 1, 0, &[0, 0, 1, 0]));
    decoder.set_chunk_size(256).unwrap();
    assert_eq!(decoder.chunk_size(), 256);
    let first = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(first.payload, filled(&[(1, 128), (2, 172)]));
    let second = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(second.timestamp, 1);
    assert_eq!(second.payload, filled(&[(3, 256), (4, 44)]));
    assert!(buf.is_empty());
}

#[test]
fn abort_drops_the_partial_message() {
    let first_chunk = chunk("04 00 00 64 00 00 C8 09 01 00 00 00", 1, 128);
    let mut decoder = decoder();
    let mut buf = BytesMut::from(&first_chunk[..]);
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    assert_eq!(decoder.pending_bytes(), 200);
    decoder.abort(4);
    decoder.abort(99); // unknown chunk stream: ignored
    assert_eq!(decoder.pending_bytes(), 0);
    // Header state survives: a type-3 chunk starts a new message re-applying delta 100.
    let wire = concat(&[chunk("C4", 2, 128), chunk("C4", 3, 72)]);
    let messages = decode_all(&mut decoder, &wire).unwrap();
    assert_eq!(
        messages,
        vec![message(4, 200, 9, 1, &filled(&[(2, 128), (3, 72)]))]
    );
}

#[test]
fn header_inside_incomplete_message_is_an_error_unless_aborted() {
    let wire = concat(&[
        chunk("04 00 00 00 00 00 C8 09 01 00 00 00", 1, 128),
        chunk("04 00 00 00 00 00 02 09 01 00 00 00", 2, 2),
    ]);
    let error = decode_all(&mut decoder(), &wire).unwrap_err();
    assert_eq!(
        error,
        ChunkError::HeaderInsideMessage {
            csid: 4,
            fmt: 0,
            received: 128,
            length: 200
        }
    );
    assert_eq!(
        error.to_string(),
        "type-0 chunk header on chunk stream 4 while its message is incomplete \
         (128 of 200 bytes received)"
    );
}

/// First chunk of a 200-byte message with extended timestamp 0x01000000 on csid 4.
fn extended_first_chunk() -> Vec<u8> {
    chunk("04 FF FF FF 00 00 C8 09 01 00 00 00 01 00 00 00", 0xAB, 128)
}

#[test]
fn extended_timestamp_repeated_on_continuation_is_consumed() {
    // 2012 spec / FFmpeg / OBS writers repeat the 4 bytes on type-3 chunks.
    let wire = concat(&[extended_first_chunk(), chunk("C4 01 00 00 00", 0xCD, 72)]);
    let messages = decode_all(&mut decoder(), &wire).unwrap();
    let payload = filled(&[(0xAB, 128), (0xCD, 72)]);
    assert_eq!(messages, vec![message(4, 0x0100_0000, 9, 1, &payload)]);
}

#[test]
fn extended_timestamp_omitted_on_continuation_is_payload() {
    // librtmp writers omit them: the peeked bytes differ, so they stay payload.
    let wire = concat(&[extended_first_chunk(), chunk("C4", 0xCD, 72)]);
    let expected = vec![message(
        4,
        0x0100_0000,
        9,
        1,
        &filled(&[(0xAB, 128), (0xCD, 72)]),
    )];
    assert_eq!(decode_all(&mut decoder(), &wire).unwrap(), expected);
    assert_eq!(decode_bytewise(&mut decoder(), &wire).unwrap(), expected);
}

#[test]
fn extended_delta_on_type1_is_repeated_as_delta_or_as_absolute() {
    let small = hex("04 00 03 E8 00 00 01 08 01 00 00 00 AA"); // ts 1000
    let type1 = chunk("44 FF FF FF 00 00 C8 09 01 00 00 00", 0xAB, 128); // delta 0x01000000
    let expected = message(4, 0x0100_03E8, 9, 1, &filled(&[(0xAB, 128), (0xCD, 72)]));
    // FFmpeg/nginx repeat the delta itself.
    let wire = concat(&[
        small.clone(),
        type1.clone(),
        chunk("C4 01 00 00 00", 0xCD, 72),
    ]);
    assert_eq!(decode_all(&mut decoder(), &wire).unwrap()[1], expected);
    // Writers that put the absolute timestamp there are recognised as well.
    let wire = concat(&[small, type1, chunk("C4 01 00 03 E8", 0xCD, 72)]);
    assert_eq!(decode_all(&mut decoder(), &wire).unwrap()[1], expected);
}

#[test]
fn type3_new_message_after_extended_header_reads_the_delta() {
    let wire = concat(&[
        hex("04 FF FF FF 00 00 01 08 01 00 00 00 01 00 00 00 AA"),
        hex("C4 01 00 00 00 BB"), // new message: the 4 bytes are always read
    ]);
    let messages = decode_all(&mut decoder(), &wire).unwrap();
    assert_eq!(
        messages,
        vec![
            message(4, 0x0100_0000, 8, 1, &[0xAA]),
            message(4, 0x0200_0000, 8, 1, &[0xBB]),
        ]
    );
}

#[test]
fn timestamps_wrap_modulo_2_pow_32() {
    let wire = concat(&[
        hex("04 FF FF FF 00 00 01 08 01 00 00 00 FF FF FF F0 AA"), // 0xFFFFFFF0
        hex("84 00 00 20 BB"),                                     // +0x20 wraps to 0x10
        hex("C4 CC"),                                              // +0x20 again
    ]);
    let messages = decode_all(&mut decoder(), &wire).unwrap();
    let stamps: Vec<u32> = messages.iter().map(|m| m.timestamp).collect();
    assert_eq!(stamps, vec![0xFFFF_FFF0, 0x10, 0x30]);
}

#[test]
fn fresh_chunk_stream_may_start_with_type1_like_librtmp_pings() {
    let wire = hex("42 00 00 00 00 00 06 04 00 06 00 00 00 01 43 00 00 05 00 00 01 14 07");
    let messages = decode_all(&mut decoder(), &wire).unwrap();
    assert_eq!(
        messages,
        vec![
            message(2, 0, 4, 0, &[0, 6, 0, 0, 0, 1]),
            message(3, 5, 20, 0, &[7]),
        ]
    );
}

#[test]
fn fresh_chunk_stream_starting_with_type2_or_type3_is_rejected() {
    let error = decode_all(&mut decoder(), &hex("84 00 00 14 00")).unwrap_err();
    assert_eq!(error, ChunkError::MissingInitialHeader { csid: 4, fmt: 2 });
    let error = decode_all(&mut decoder(), &hex("C5")).unwrap_err();
    assert_eq!(error, ChunkError::MissingInitialHeader { csid: 5, fmt: 3 });
}

#[test]
fn zero_length_messages_are_returned() {
    let wire = hex("04 00 00 0A 00 00 00 08 01 00 00 00 C4");
    let messages = decode_all(&mut decoder(), &wire).unwrap();
    assert_eq!(
        messages,
        vec![message(4, 10, 8, 1, &[]), message(4, 20, 8, 1, &[])]
    );
}

#[test]
fn incomplete_chunks_consume_nothing() {
    let mut decoder = decoder();
    // Header cut short, then a single-chunk message whose payload is cut short.
    for partial in [
        "04 00 00",
        "04 00 00 00 00 00 03 08 01 00 00 00 AA BB",
        "00",
        "01 05",
    ] {
        let mut buf = BytesMut::from(&hex(partial)[..]);
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), hex(partial).len(), "{partial}");
    }
    // Extended timestamp not yet complete.
    let mut buf = BytesMut::from(&hex("04 FF FF FF 00 00 01 08 01 00 00 00 01 00")[..]);
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    assert_eq!(buf.len(), 14);
    // Multi-chunk: the whole first chunk is consumed, the cut second chunk is left.
    let wire = concat(&[
        chunk("04 00 00 00 00 00 C8 09 01 00 00 00", 1, 128),
        chunk("C4", 2, 5),
    ]);
    let mut buf = BytesMut::from(&wire[..]);
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    assert_eq!(&buf[..], &chunk("C4", 2, 5)[..]);
}

#[test]
fn single_chunk_payload_shares_the_input_buffer() {
    let wire = chunk("04 00 00 00 00 00 64 09 01 00 00 00", 7, 100);
    let mut buf = BytesMut::from(&wire[..]);
    let payload_start = buf.as_ptr().wrapping_add(12);
    let message = decoder().decode(&mut buf).unwrap().unwrap();
    assert_eq!(message.payload.as_ptr(), payload_start);
    assert_eq!(message.payload.len(), 100);
}

#[test]
fn chunk_size_validation() {
    let mut decoder = ChunkDecoder::new(DecoderLimits::default());
    assert_eq!(
        decoder.set_chunk_size(0),
        Err(ChunkError::InvalidChunkSize { size: 0 })
    );
    assert_eq!(
        decoder.set_chunk_size(0x8000_0000),
        Err(ChunkError::InvalidChunkSize { size: 0x8000_0000 })
    );
    assert_eq!(decoder.chunk_size(), 128);
    // Below the minimum: refused with a clear error, the size in force stays.
    let error = decoder.set_chunk_size(63).unwrap_err();
    assert_eq!(error, ChunkError::ChunkSizeTooSmall { size: 63, min: 64 });
    assert_eq!(
        error.to_string(),
        "chunk size 63 is below the minimum of 64: tiny chunks cost more to decode than \
         they carry, and no encoder uses them"
    );
    assert_eq!(
        decoder.set_chunk_size(1),
        Err(ChunkError::ChunkSizeTooSmall { size: 1, min: 64 })
    );
    assert_eq!(decoder.chunk_size(), 128);
    decoder.set_chunk_size(64).unwrap();
    decoder.set_chunk_size(0x7FFF_FFFF).unwrap();
    assert_eq!(decoder.chunk_size(), 0x7FFF_FFFF);
    // A huge chunk size acts like the message limit, and bigger chunks than 64 KiB are
    // taken in pieces: the input buffer never needs to hold more than one such piece.
    assert_eq!(decoder.max_chunk_bytes(), 18 + MAX_BUFFERED_CHUNK);
    let wire = chunk("04 00 00 00 00 03 E8 09 01 00 00 00", 5, 1000);
    let messages = decode_all(&mut decoder, &wire).unwrap();
    assert_eq!(messages[0].payload.len(), 1000);
    assert_eq!(decoder.held_capacity(), 0);
}

#[test]
fn chunk_size_one_works_where_allowed() {
    let mut decoder = decoder();
    decoder.set_chunk_size(1).unwrap();
    let wire = hex("04 00 00 00 00 00 03 09 01 00 00 00 AA C4 BB C4 CC");
    let messages = decode_all(&mut decoder, &wire).unwrap();
    assert_eq!(messages, vec![message(4, 0, 9, 1, &[0xAA, 0xBB, 0xCC])]);
}

#[test]
fn message_longer_than_limit_is_rejected_from_its_header() {
    let limits = DecoderLimits {
        max_message_len: 1000,
        ..DecoderLimits::default()
    };
    // Only the header: the error comes before any payload is awaited or reserved.
    let wire = hex("04 00 00 00 00 03 E9 09 01 00 00 00");
    let error = decode_all(&mut ChunkDecoder::new(limits), &wire).unwrap_err();
    assert_eq!(
        error,
        ChunkError::MessageTooLong {
            csid: 4,
            length: 1001,
            max: 1000
        }
    );
    assert_eq!(
        error.to_string(),
        "message on chunk stream 4 declares 1001 bytes, over the limit of 1000"
    );
    // Type 1 headers are checked too.
    let wire = hex("04 00 00 00 00 00 00 09 01 00 00 00 44 00 00 00 00 03 E9 09");
    let error = decode_all(&mut ChunkDecoder::new(limits), &wire).unwrap_err();
    assert!(matches!(
        error,
        ChunkError::MessageTooLong { length: 1001, .. }
    ));
}

#[test]
fn too_many_chunk_streams_is_rejected() {
    let limits = DecoderLimits {
        max_chunk_streams: 2,
        ..DecoderLimits::default()
    };
    let mut decoder = ChunkDecoder::new(limits);
    let wire = hex("03 00 00 00 00 00 00 14 00 00 00 00 04 00 00 00 00 00 00 08 01 00 00 00");
    assert_eq!(decode_all(&mut decoder, &wire).unwrap().len(), 2);
    let error = decode_all(&mut decoder, &hex("05 00 00")).unwrap_err();
    assert_eq!(error, ChunkError::TooManyChunkStreams { csid: 5, max: 2 });
    assert_eq!(
        error.to_string(),
        "chunk stream 5 would exceed the limit of 2 chunk streams per connection"
    );
    // Known chunk streams keep working.
    assert_eq!(decode_all(&mut decoder, &hex("C4")).unwrap().len(), 1);
}

#[test]
fn pending_bytes_limit_counts_all_partial_messages() {
    let limits = DecoderLimits {
        max_pending_bytes: 300,
        ..DecoderLimits::default()
    };
    let wire = concat(&[
        chunk("04 00 00 00 00 00 C8 09 01 00 00 00", 1, 128),
        chunk("06 00 00 00 00 00 C8 09 01 00 00 00", 2, 128),
    ]);
    let mut decoder = ChunkDecoder::new(limits);
    let error = decode_all(&mut decoder, &wire).unwrap_err();
    assert_eq!(
        error,
        ChunkError::PendingBytesExceeded {
            csid: 6,
            would_hold: 400,
            max: 300
        }
    );
    assert_eq!(
        error.to_string(),
        "partial messages would hold 400 bytes (growing chunk stream 6), over the limit of 300"
    );
    assert_eq!(decoder.pending_bytes(), 200);
}

#[test]
fn large_message_grows_its_buffer_within_the_pending_limit() {
    let limits = DecoderLimits {
        max_pending_bytes: 300 * 1024,
        ..DecoderLimits::default()
    };
    let mut decoder = ChunkDecoder::new(limits);
    decoder.set_chunk_size(65536).unwrap();
    // A 1 MiB message: 256 KiB reserved up front (not 1 MiB), then growth to 512 KiB trips
    // the limit once the fifth chunk arrives.
    let mut chunks = vec![chunk("04 00 00 00 10 00 00 09 01 00 00 00", 1, 65536)];
    chunks.extend(std::iter::repeat_n(chunk("C4", 1, 65536), 4));
    let mut buf = BytesMut::new();
    let mut results = Vec::new();
    for bytes in &chunks {
        buf.extend_from_slice(bytes);
        results.push(decoder.decode(&mut buf));
        assert!(decoder.held_capacity() <= 300 * 1024);
        if results.len() == 1 {
            assert_eq!(decoder.pending_bytes(), 256 * 1024);
        }
    }
    assert_eq!(&results[..4], &[Ok(None), Ok(None), Ok(None), Ok(None)]);
    assert_eq!(
        results[4],
        Err(ChunkError::PendingBytesExceeded {
            csid: 4,
            would_hold: 512 * 1024,
            max: 300 * 1024
        })
    );
}

#[test]
fn a_chunk_bigger_than_the_buffered_maximum_is_taken_as_it_arrives() {
    let mut decoder = decoder();
    decoder.set_chunk_size(0x7FFF_FFFF).unwrap();
    // One chunk of a 16 MiB - 1 message: only its header and 1000 bytes have arrived.
    let mut buf = BytesMut::from(&chunk("04 00 00 00 FF FF FF 09 01 00 00 00", 7, 1000)[..]);
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    // Taken into the reassembly buffer (bounded by the pending limits), not left in the
    // input for the read buffer to grow around; and 256 KiB reserved, not 16 MiB.
    assert!(buf.is_empty());
    assert_eq!(decoder.pending_bytes(), MAX_INITIAL_RESERVE);
    // The rest arrives in pieces of any size; no header between them.
    let mut sent = 1000;
    for piece in [1, 300_000, 5_000_000, 0xFF_FFFF - 5_301_001] {
        buf.extend_from_slice(&vec![7; piece]);
        sent += piece;
        let decoded = decoder.decode(&mut buf).unwrap();
        assert!(buf.is_empty());
        if sent < 0xFF_FFFF {
            assert_eq!(decoded, None);
            assert!(decoder.pending_bytes() < 2 * sent.max(MAX_INITIAL_RESERVE));
        } else {
            let message = decoded.expect("the message is complete");
            assert_eq!(message.payload.len(), 0xFF_FFFF);
            assert!(message.payload.iter().all(|&b| b == 7));
        }
    }
    assert_eq!(decoder.pending_bytes(), 0);
    // The next chunk has a header again.
    let wire = chunk("04 00 00 00 00 00 03 09 01 00 00 00", 9, 3);
    let messages = decode_all(&mut decoder, &wire).unwrap();
    assert_eq!(messages, vec![message(4, 0, 9, 1, &[9, 9, 9])]);
}

#[test]
fn a_big_chunk_counts_against_the_pending_limit_as_it_arrives() {
    let mut decoder = ChunkDecoder::new(DecoderLimits {
        max_pending_bytes: 1 << 20,
        ..DecoderLimits::default()
    });
    decoder.set_chunk_size(0x7FFF_FFFF).unwrap();
    // A 2 MiB single-chunk message: waiting for it whole would hold it in the read buffer,
    // outside the limit; in pieces the reassembly buffer trips the limit.
    let mut buf = BytesMut::from(&chunk("04 00 00 00 20 00 00 09 01 00 00 00", 1, 900_000)[..]);
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(&[1; 200_000]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(ChunkError::PendingBytesExceeded {
            csid: 4,
            would_hold: 1_800_000,
            max: 1 << 20
        })
    );
}

/// Starts a multi-chunk message of 1 MiB on `csid`, sending only its first chunk.
fn start_big_message(decoder: &mut ChunkDecoder, csid: u8) -> Result<(), ChunkError> {
    let header = format!("{csid:02X} 00 00 00 10 00 00 09 01 00 00 00");
    decode_all(decoder, &chunk(&header, 1, 128)).map(|_| ())
}

#[test]
fn a_shared_budget_closes_the_largest_holder_not_the_small_asker() {
    let budget = PendingBudget::new(512 * 1024, DEFAULT_MAX_PENDING_BYTES);
    let mut hog = ChunkDecoder::with_budget(DecoderLimits::default(), budget.account());
    let mut honest = ChunkDecoder::with_budget(DecoderLimits::default(), budget.account());
    // The hog takes the whole budget: two messages started, 256 KiB reserved for each.
    start_big_message(&mut hog, 4).unwrap();
    start_big_message(&mut hog, 6).unwrap();
    assert_eq!(budget.used(), 512 * 1024);
    // An honest 300 kB frame needs 256 KiB to start: the hog holds more, so the hog goes.
    decode_all(
        &mut honest,
        &chunk("04 00 00 00 04 93 E0 09 01 00 00 00", 1, 128),
    )
    .unwrap();
    assert!(hog.budget().unwrap().evicted().is_cancelled());
    let error = hog.decode(&mut BytesMut::from(&hex("C4")[..])).unwrap_err();
    assert_eq!(
        error,
        ChunkError::EvictedFromPendingBudget {
            held: 512 * 1024,
            max: 512 * 1024
        }
    );
    assert_eq!(
        error.to_string(),
        "closed to make room in the shared budget of 524288 bytes for partial messages of \
         all connections: this connection held the most of it (524288 bytes)"
    );
    drop(hog);
    assert_eq!(budget.used(), 256 * 1024);

    // A second hog gets what is free, then asks for more while holding more than anyone:
    // it is the one refused, and the honest decoder is untouched.
    let mut hog = ChunkDecoder::with_budget(DecoderLimits::default(), budget.account());
    start_big_message(&mut hog, 4).unwrap();
    let error = start_big_message(&mut hog, 6).unwrap_err();
    assert_eq!(
        error,
        ChunkError::PendingBudgetExhausted {
            csid: 6,
            would_hold: 512 * 1024,
            max: 512 * 1024
        }
    );
    assert_eq!(
        error.to_string(),
        "partial messages of all connections would exceed their shared budget of 524288 \
         bytes, and this connection would hold the most of it (524288 bytes, growing chunk \
         stream 6)"
    );
    assert!(!honest.budget().unwrap().evicted().is_cancelled());
    // Its connection is closed; the honest frame completes and gives its share back.
    drop(hog);
    let mut rest: Vec<Vec<u8>> = std::iter::repeat_n(chunk("C4", 1, 128), 2342).collect();
    rest.push(chunk("C4", 1, 96));
    let messages = decode_all(&mut honest, &concat(&rest)).unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].payload.len(), 300_000);
    assert_eq!(honest.pending_bytes(), 0);
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_shared_budget_gets_back_what_completes_aborts_and_drops() {
    let budget = PendingBudget::new(DEFAULT_MAX_PENDING_BYTES, 0);
    let mut decoder = ChunkDecoder::with_budget(DecoderLimits::default(), budget.account());
    // Completed: a 300-byte message in three chunks.
    let wire = concat(&[
        chunk("04 00 00 00 00 01 2C 09 01 00 00 00", 1, 128),
        chunk("C4", 2, 128),
    ]);
    assert!(decode_all(&mut decoder, &wire).unwrap().is_empty());
    assert_eq!(budget.used(), 300);
    assert_eq!(
        decode_all(&mut decoder, &chunk("C4", 3, 44)).unwrap().len(),
        1
    );
    assert_eq!(budget.used(), 0);
    // Aborted.
    start_big_message(&mut decoder, 6).unwrap();
    assert_eq!(budget.used(), MAX_INITIAL_RESERVE);
    decoder.abort(6);
    assert_eq!(budget.used(), 0);
    // Dropped with messages in progress.
    start_big_message(&mut decoder, 4).unwrap();
    start_big_message(&mut decoder, 6).unwrap();
    assert_eq!(budget.used(), 2 * MAX_INITIAL_RESERVE);
    drop(decoder);
    assert_eq!(budget.used(), 0);
}

#[test]
fn multi_chunk_message_reserves_exactly_its_length_when_small() {
    let mut decoder = decoder();
    let mut buf = BytesMut::from(&chunk("04 00 00 00 00 01 2C 09 01 00 00 00", 1, 128)[..]);
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    assert_eq!(decoder.pending_bytes(), 300);
    assert_eq!(decoder.held_capacity(), 300);
}
