//! Chunk stream encoder: cuts messages into chunks for one peer connection.
//!
//! Only the chunk headers are produced here (built on the stack); the [`OutBuf`] keeps them
//! with one shared handle on the message payload and interleaves them when it lists the
//! slices to write, so the payload is never copied however many connections send it.

use bytes::Bytes;

use super::csid_map::CsidMap;
use super::header_bytes::HeaderBytes;
use super::{
    DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP_MARKER, MAX_CHUNK_SIZE, MAX_CSID, MAX_MESSAGE_LEN,
    MIN_CSID, MessageHeader, OutBuf,
};

/// Encodes messages into chunks for one outgoing connection.
///
/// Header choice for a message's first chunk, per chunk stream (FFmpeg's rule):
/// - type 0 (absolute timestamp) when the chunk stream is fresh (or after [`reset`]), the
///   message stream id changed, or the timestamp went backwards;
/// - otherwise type 1 (delta, length, type) when the length or type id changed;
/// - otherwise type 2 (delta only), even when the delta is unchanged: a new message never
///   starts with a type-3 chunk, which spares peers the "type 3 re-applies the delta" rule and
///   the extended-timestamp ambiguity of new-message type-3 chunks.
///
/// Continuation chunks are type 3. When the first header's timestamp or delta is >= 0xFFFFFF it
/// is written as 0xFFFFFF plus a 4-byte extended field, and that field is repeated on every
/// continuation chunk of the message (2012 spec; FFmpeg and nginx expect it).
///
/// Any chunk stream id 2..=65599 is encoded (1-, 2- or 3-byte basic header), but callers should
/// stay below 64: FFmpeg's own writer mishandles larger ids.
///
/// [`reset`]: ChunkEncoder::reset
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    streams: CsidMap<LastHeader>,
}

/// What the peer's decoder remembers about a chunk stream after our last message on it.
#[derive(Debug, Clone, Copy)]
struct LastHeader {
    timestamp: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

/// The header type chosen for a message's first chunk, with its timestamp field value.
#[derive(Debug, Clone, Copy)]
enum FirstHeader {
    /// Type 0: absolute timestamp.
    Full { timestamp: u32 },
    /// Type 1: delta, new length and type id.
    NewLengthOrType { delta: u32 },
    /// Type 2: delta only.
    DeltaOnly { delta: u32 },
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// Creates an encoder at the default chunk size of 128 with no chunk stream state.
    pub fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: CsidMap::default(),
        }
    }

    /// Changes the outgoing chunk size for the following messages. The caller must already
    /// have queued the Set Chunk Size message (encoded at the old size). Values are clamped to
    /// 1..=0x7FFF_FFFF, the range the peer can accept.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_CHUNK_SIZE);
    }

    /// The outgoing chunk size in force.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Forgets all chunk stream state, so the next message on every chunk stream gets a type-0
    /// header. Use it when the peer's decoder state is gone or unknown.
    pub fn reset(&mut self) {
        self.streams.clear();
    }

    /// Appends `payload` as one message with `header` to `out`: chunk headers are built here,
    /// the payload is shared (see `OutBuf::push_chunked`).
    ///
    /// A payload longer than 16 MiB - 1 or a csid outside 2..=65599 cannot be expressed on the
    /// wire; both are caller bugs (decoded messages never exceed the limit). Rather than
    /// corrupt the stream or panic, the message is dropped and an error is logged.
    pub fn encode(&mut self, header: &MessageHeader, payload: &Bytes, out: &mut OutBuf) {
        let Some(length) = u32::try_from(payload.len())
            .ok()
            .filter(|&length| length <= MAX_MESSAGE_LEN)
        else {
            tracing::error!(
                csid = header.csid,
                length = payload.len(),
                "message longer than 16 MiB - 1 cannot be chunked; dropped"
            );
            return;
        };
        if !(MIN_CSID..=MAX_CSID).contains(&header.csid) {
            tracing::error!(
                csid = header.csid,
                "chunk stream id outside 2..=65599 cannot be encoded; message dropped"
            );
            return;
        }
        let first = self.choose_first_header(header, length);
        self.streams.insert(
            header.csid,
            LastHeader {
                timestamp: header.timestamp,
                length,
                type_id: header.type_id,
                stream_id: header.stream_id,
            },
        );
        self.write_chunks(header, first, length, payload, out);
    }

    /// Picks the smallest first-chunk header the peer can decode from its state (see the type
    /// docs for the rule).
    fn choose_first_header(&self, header: &MessageHeader, length: u32) -> FirstHeader {
        match self.streams.get(header.csid) {
            Some(last)
                if last.stream_id == header.stream_id && header.timestamp >= last.timestamp =>
            {
                let delta = header.timestamp - last.timestamp;
                if last.length != length || last.type_id != header.type_id {
                    FirstHeader::NewLengthOrType { delta }
                } else {
                    FirstHeader::DeltaOnly { delta }
                }
            }
            _ => FirstHeader::Full {
                timestamp: header.timestamp,
            },
        }
    }

    /// Queues the first chunk header, then the payload with a type-3 header before every
    /// continuation chunk.
    fn write_chunks(
        &self,
        header: &MessageHeader,
        first: FirstHeader,
        length: u32,
        payload: &Bytes,
        out: &mut OutBuf,
    ) {
        let first_header = first_chunk_header(header, first, length);
        let timestamp_field = match first {
            FirstHeader::Full { timestamp } => timestamp,
            FirstHeader::NewLengthOrType { delta } | FirstHeader::DeltaOnly { delta } => delta,
        };
        let continuation_header = continuation_chunk_header(header.csid, timestamp_field);
        let chunk_size = usize::try_from(self.chunk_size).unwrap_or(usize::MAX);

        out.push_chunked(first_header, payload, chunk_size, continuation_header);
    }
}

/// Builds the header of a message's first chunk.
fn first_chunk_header(header: &MessageHeader, first: FirstHeader, length: u32) -> HeaderBytes {
    let mut bytes = HeaderBytes::new();
    let (fmt, timestamp_field) = match first {
        FirstHeader::Full { timestamp } => (0, timestamp),
        FirstHeader::NewLengthOrType { delta } => (1, delta),
        FirstHeader::DeltaOnly { delta } => (2, delta),
    };
    bytes.push_basic_header(fmt, header.csid);
    bytes.push_u24(timestamp_field.min(EXTENDED_TIMESTAMP_MARKER));
    if fmt <= 1 {
        bytes.push_u24(length);
        bytes.push(&[header.type_id]);
    }
    if fmt == 0 {
        // The message stream id is the one little-endian field of the chunk header.
        bytes.push(&header.stream_id.to_le_bytes());
    }
    bytes.push_extended_timestamp(timestamp_field);
    bytes
}

/// Builds the type-3 header used for every continuation chunk of a message.
fn continuation_chunk_header(csid: u32, timestamp_field: u32) -> HeaderBytes {
    let mut bytes = HeaderBytes::new();
    bytes.push_basic_header(3, csid);
    bytes.push_extended_timestamp(timestamp_field);
    bytes
}

#[cfg(test)]
mod tests {
    use super::super::tests::{drain, hex};
    use super::*;

    fn header(csid: u32, timestamp: u32, type_id: u8, stream_id: u32) -> MessageHeader {
        MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        }
    }

    /// Encodes one message and returns exactly the bytes it produced.
    fn encode(encoder: &mut ChunkEncoder, header: MessageHeader, payload: &[u8]) -> Vec<u8> {
        let mut out = OutBuf::new();
        encoder.encode(&header, &Bytes::copy_from_slice(payload), &mut out);
        drain(&mut out)
    }

    fn with_payload(header_hex: &str, payload: &[u8]) -> Vec<u8> {
        [hex(header_hex), payload.to_vec()].concat()
    }

    #[test]
    fn set_chunk_size_message_gets_a_type0_header() {
        let mut encoder = ChunkEncoder::new();
        let bytes = encode(&mut encoder, header(2, 0, 1, 0), &[0, 0, 0x10, 0]);
        assert_eq!(
            bytes,
            hex("02 00 00 00 00 00 04 01 00 00 00 00 00 00 10 00")
        );
    }

    #[test]
    fn header_type_follows_what_changed() {
        let mut encoder = ChunkEncoder::new();
        let payload = [1, 2, 3, 4];
        encode(&mut encoder, header(4, 1000, 8, 1), &payload);
        // Same length, type and stream: type 2 with the delta.
        let bytes = encode(&mut encoder, header(4, 1020, 8, 1), &payload);
        assert_eq!(bytes, with_payload("84 00 00 14", &payload));
        // Same delta again: still type 2, never a type-3 start.
        let bytes = encode(&mut encoder, header(4, 1040, 8, 1), &payload);
        assert_eq!(bytes, with_payload("84 00 00 14", &payload));
        // Zero delta: type 2 with delta 0.
        let bytes = encode(&mut encoder, header(4, 1040, 8, 1), &payload);
        assert_eq!(bytes, with_payload("84 00 00 00", &payload));
        // New length: type 1.
        let bytes = encode(&mut encoder, header(4, 1050, 8, 1), &[9, 9]);
        assert_eq!(bytes, with_payload("44 00 00 0A 00 00 02 08", &[9, 9]));
        // New type id: type 1.
        let bytes = encode(&mut encoder, header(4, 1050, 9, 1), &[9, 9]);
        assert_eq!(bytes, with_payload("44 00 00 00 00 00 02 09", &[9, 9]));
        // Timestamp went backwards: type 0, absolute.
        let bytes = encode(&mut encoder, header(4, 5, 9, 1), &[9, 9]);
        assert_eq!(
            bytes,
            with_payload("04 00 00 05 00 00 02 09 01 00 00 00", &[9, 9])
        );
        // Stream id changed: type 0, stream id little-endian.
        let bytes = encode(&mut encoder, header(4, 6, 9, 0x0102_0304), &[9, 9]);
        assert_eq!(
            bytes,
            with_payload("04 00 00 06 00 00 02 09 04 03 02 01", &[9, 9])
        );
        // Other chunk streams are independent.
        let bytes = encode(&mut encoder, header(5, 7, 9, 0x0102_0304), &[9, 9]);
        assert_eq!(
            bytes,
            with_payload("05 00 00 07 00 00 02 09 04 03 02 01", &[9, 9])
        );
    }

    #[test]
    fn reset_forgets_chunk_stream_state() {
        let mut encoder = ChunkEncoder::new();
        encode(&mut encoder, header(4, 1000, 8, 1), &[1]);
        encoder.reset();
        let bytes = encode(&mut encoder, header(4, 1020, 8, 1), &[1]);
        assert_eq!(
            bytes,
            with_payload("04 00 03 FC 00 00 01 08 01 00 00 00", &[1])
        );
    }

    #[test]
    fn long_message_is_split_with_type3_continuations() {
        let mut encoder = ChunkEncoder::new();
        let payload: Vec<u8> = (0..300).map(|i| i as u8).collect();
        let bytes = encode(&mut encoder, header(6, 0, 9, 1), &payload);
        let expected = [
            hex("06 00 00 00 00 01 2C 09 01 00 00 00"),
            payload[..128].to_vec(),
            hex("C6"),
            payload[128..256].to_vec(),
            hex("C6"),
            payload[256..].to_vec(),
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn message_of_exactly_one_chunk_has_no_continuation() {
        let mut encoder = ChunkEncoder::new();
        let bytes = encode(&mut encoder, header(6, 0, 9, 1), &[7; 128]);
        assert_eq!(
            bytes,
            with_payload("06 00 00 00 00 00 80 09 01 00 00 00", &[7; 128])
        );
    }

    #[test]
    fn chunk_stream_ids_use_the_shortest_basic_header() {
        let cases = [
            (63, "3F", "FF"),
            (64, "00 00", "C0 00"),
            (70, "00 06", "C0 06"),
            (319, "00 FF", "C0 FF"),
            (320, "01 00 01", "C1 00 01"),
            (400, "01 50 01", "C1 50 01"),
            (65599, "01 FF FF", "C1 FF FF"),
        ];
        for (csid, first, continuation) in cases {
            let mut encoder = ChunkEncoder::new();
            encoder.set_chunk_size(1);
            let bytes = encode(&mut encoder, header(csid, 0, 8, 0), &[0xAA, 0xBB]);
            let expected = [
                hex(first),
                hex("00 00 00 00 00 02 08 00 00 00 00 AA"),
                hex(continuation),
                hex("BB"),
            ]
            .concat();
            assert_eq!(bytes, expected, "csid {csid}");
        }
    }

    #[test]
    fn extended_timestamp_is_repeated_on_every_continuation() {
        let mut encoder = ChunkEncoder::new();
        let payload = [0x5A; 200];
        let bytes = encode(&mut encoder, header(6, 0x0100_0000, 9, 1), &payload);
        let expected = [
            hex("06 FF FF FF 00 00 C8 09 01 00 00 00 01 00 00 00"),
            payload[..128].to_vec(),
            hex("C6 01 00 00 00"),
            payload[128..].to_vec(),
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn extended_field_starts_at_0xffffff() {
        let mut encoder = ChunkEncoder::new();
        let bytes = encode(&mut encoder, header(6, 0xFF_FFFE, 9, 1), &[1]);
        assert_eq!(
            bytes,
            with_payload("06 FF FF FE 00 00 01 09 01 00 00 00", &[1])
        );
        encoder.reset();
        let bytes = encode(&mut encoder, header(6, 0xFF_FFFF, 9, 1), &[1]);
        assert_eq!(
            bytes,
            with_payload("06 FF FF FF 00 00 01 09 01 00 00 00 00 FF FF FF", &[1])
        );
    }

    #[test]
    fn extended_delta_on_type2_and_its_continuations() {
        let mut encoder = ChunkEncoder::new();
        encoder.set_chunk_size(2);
        encode(&mut encoder, header(6, 0, 9, 1), &[1, 2, 3]);
        let bytes = encode(&mut encoder, header(6, 0x0100_0005, 9, 1), &[4, 5, 6]);
        assert_eq!(
            bytes,
            hex("86 FF FF FF 01 00 00 05 04 05 C6 01 00 00 05 06")
        );
    }

    #[test]
    fn zero_length_message_is_just_a_header() {
        let mut encoder = ChunkEncoder::new();
        let bytes = encode(&mut encoder, header(6, 0, 8, 1), &[]);
        assert_eq!(bytes, hex("06 00 00 00 00 00 00 08 01 00 00 00"));
    }

    #[test]
    fn chunk_size_is_clamped_to_the_valid_range() {
        let mut encoder = ChunkEncoder::new();
        assert_eq!(encoder.chunk_size(), 128);
        encoder.set_chunk_size(0);
        assert_eq!(encoder.chunk_size(), 1);
        encoder.set_chunk_size(u32::MAX);
        assert_eq!(encoder.chunk_size(), 0x7FFF_FFFF);
        // A chunk size above the message length: one chunk.
        let bytes = encode(&mut encoder, header(6, 0, 9, 1), &[3; 1000]);
        assert_eq!(bytes.len(), 12 + 1000);
    }

    #[test]
    fn unencodable_messages_are_dropped_without_output_or_state() {
        let mut encoder = ChunkEncoder::new();
        for csid in [0, 1, 65600, u32::MAX] {
            assert!(encode(&mut encoder, header(csid, 0, 8, 1), &[1]).is_empty());
        }
        let mut out = OutBuf::new();
        let too_long = Bytes::from(vec![0; 0x100_0000]);
        encoder.encode(&header(6, 10, 9, 1), &too_long, &mut out);
        assert!(out.is_empty());
        // Nothing was remembered for csid 6: the next message still gets a type-0 header.
        let bytes = encode(&mut encoder, header(6, 20, 9, 1), &[1]);
        assert_eq!(
            bytes,
            with_payload("06 00 00 14 00 00 01 09 01 00 00 00", &[1])
        );
        // The largest legal message is encoded.
        let largest = Bytes::from(vec![0; 0xFF_FFFF]);
        encoder.encode(&header(6, 30, 9, 1), &largest, &mut out);
        assert!(out.len() > 0xFF_FFFF);
    }

    #[test]
    fn payload_chunks_share_the_payload_memory() {
        let mut encoder = ChunkEncoder::new();
        let payload = Bytes::from(vec![0x42; 300]);
        let mut out = OutBuf::new();
        encoder.encode(&header(6, 0, 9, 1), &payload, &mut out);
        let mut slices = [std::io::IoSlice::new(&[]); 8];
        let count = out.io_slices(&mut slices);
        // header, 128 payload, C6, 128 payload, C6, 44 payload
        let lengths: Vec<usize> = slices[..count].iter().map(|s| s.len()).collect();
        assert_eq!(lengths, vec![12, 128, 1, 128, 1, 44]);
        let base = payload.as_ptr();
        assert_eq!(slices[1].as_ptr(), base);
        assert_eq!(slices[3].as_ptr(), base.wrapping_add(128));
        assert_eq!(slices[5].as_ptr(), base.wrapping_add(256));
    }
}
