//! Parsing chunk headers: the 1-3 byte basic header, the type 0/1/2 message headers, and the
//! type-3 forms whose meaning depends on what the chunk stream holds.

use super::stream::ChunkStream;

/// Byte length of the message header for chunk types 0, 1, 2 and 3.
pub(super) const MESSAGE_HEADER_LEN: [usize; 4] = [11, 7, 3, 0];

/// Header values of a message that a chunk starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct MessageStart {
    pub(super) timestamp: u32,
    pub(super) delta: u32,
    pub(super) length: u32,
    pub(super) type_id: u8,
    pub(super) stream_id: u32,
    pub(super) extended: Option<u32>,
}

/// A parsed chunk header: where its payload starts and, for the first chunk of a message, the
/// message's header values.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChunkHeader {
    pub(super) csid: u32,
    /// Basic header + message header + extended timestamp bytes, if consumed.
    pub(super) header_len: usize,
    /// Set when this chunk starts a new message.
    pub(super) start: Option<MessageStart>,
}

/// First 1-3 bytes of every chunk.
#[derive(Debug, Clone, Copy)]
pub(super) struct BasicHeader {
    pub(super) fmt: u8,
    pub(super) csid: u32,
    pub(super) len: usize,
}

/// Fields of a type 0/1/2 message header; absent fields are inherited.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeaderFields {
    pub(super) timestamp_field: u32,
    pub(super) length: Option<u32>,
    pub(super) type_id: Option<u8>,
    pub(super) stream_id: Option<u32>,
}

/// Parses a type-3 chunk header: a continuation if the chunk stream has a partial message,
/// else the first chunk of a new message with every header field inherited.
pub(super) fn parse_type3(
    basic: BasicHeader,
    stream: &ChunkStream,
    rest: &[u8],
) -> Option<ChunkHeader> {
    match &stream.partial {
        Some(_) => parse_continuation(basic, stream, rest),
        None => parse_type3_message_start(basic, stream, rest),
    }
}

/// A type-3 chunk starting a new message: re-applies the previous delta. After an extended
/// header the 4 bytes are read unconditionally and are the delta (FFmpeg's behaviour).
pub(super) fn parse_type3_message_start(
    basic: BasicHeader,
    stream: &ChunkStream,
    rest: &[u8],
) -> Option<ChunkHeader> {
    let mut header_len = basic.len;
    let (delta, extended) = match stream.extended {
        Some(_) => {
            let value = read_u32_be(rest, 0)?;
            header_len += 4;
            (value, Some(value))
        }
        None => (stream.delta, None),
    };
    let start = MessageStart {
        timestamp: stream.timestamp.wrapping_add(delta),
        delta,
        length: stream.length,
        type_id: stream.type_id,
        stream_id: stream.stream_id,
        extended,
    };
    Some(ChunkHeader {
        csid: basic.csid,
        header_len,
        start: Some(start),
    })
}

/// A type-3 continuation chunk: carries the next bytes of the partial message, preceded by
/// the repeated extended timestamp if this peer repeats it (SRS-style peek, see
/// [`ChunkDecoder`]).
pub(super) fn parse_continuation(
    basic: BasicHeader,
    stream: &ChunkStream,
    rest: &[u8],
) -> Option<ChunkHeader> {
    let mut header_len = basic.len;
    if let Some(extended) = stream.extended {
        let peeked = read_u32_be(rest, 0)?;
        if peeked == extended || peeked == stream.timestamp {
            header_len += 4;
        }
    }
    Some(ChunkHeader {
        csid: basic.csid,
        header_len,
        start: None,
    })
}

/// Parses the 1-3 byte basic header; `None` if `buf` is too short.
pub(super) fn parse_basic_header(buf: &[u8]) -> Option<BasicHeader> {
    let first = *buf.first()?;
    let fmt = first >> 6;
    let (csid, len) = match first & 0x3F {
        0 => (64 + u32::from(*buf.get(1)?), 2),
        1 => {
            let low = u32::from(*buf.get(1)?);
            let high = u32::from(*buf.get(2)?);
            (64 + low + high * 256, 3)
        }
        inline => (u32::from(inline), 1),
    };
    Some(BasicHeader { fmt, csid, len })
}

pub(super) fn message_header_len(fmt: u8) -> usize {
    MESSAGE_HEADER_LEN
        .get(usize::from(fmt))
        .copied()
        .unwrap_or_default()
}

/// Parses a type 0/1/2 message header from the bytes after the basic header; `None` if they
/// are not all buffered yet.
pub(super) fn parse_message_header(fmt: u8, rest: &[u8]) -> Option<HeaderFields> {
    let header = rest.get(..message_header_len(fmt))?;
    let timestamp_field = read_u24_be(header, 0)?;
    let (length, type_id) = if fmt <= 1 {
        (Some(read_u24_be(header, 3)?), Some(*header.get(6)?))
    } else {
        (None, None)
    };
    // The message stream id is the one little-endian field of the chunk header.
    let stream_id = if fmt == 0 {
        Some(u32::from_le_bytes(read_array(header, 7)?))
    } else {
        None
    };
    Some(HeaderFields {
        timestamp_field,
        length,
        type_id,
        stream_id,
    })
}

pub(super) fn read_array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

pub(super) fn read_u24_be(buf: &[u8], at: usize) -> Option<u32> {
    let [a, b, c] = read_array::<3>(buf, at)?;
    Some(u32::from_be_bytes([0, a, b, c]))
}

pub(super) fn read_u32_be(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(read_array(buf, at)?))
}
