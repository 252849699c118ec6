//! RTMP chunk stream layer, sans-I/O: bytes in, whole messages out ([`ChunkDecoder`]);
//! messages in, chunk bytes out ([`ChunkEncoder`] writing into an [`OutBuf`]).
//!
//! RTMP cuts every message into chunks of at most "chunk size" payload bytes, each preceded by a
//! 1-3 byte basic header (format + chunk stream id) and a 11/7/3/0 byte message header (types
//! 0-3) that omits whatever is unchanged since the previous chunk on the same chunk stream.
//! Chunks of different chunk streams may interleave, so the decoder keeps header state and a
//! reassembly buffer per chunk stream id (csid).
//!
//! Why this shape:
//! - No I/O and no clock: every edge case (interleaving, extended timestamps, limits) is a unit
//!   test on byte vectors, and the same code serves TCP and TLS sessions.
//! - Zero copy where it matters: a message that fits in one chunk is split off the input buffer
//!   without copying (unless the chunk is over 64 KiB and arrives in pieces, see
//!   [`MAX_BUFFERED_CHUNK`]); a multi-chunk message is copied once into its reassembly buffer.
//!   On the way out, a message's payload is shared by reference counting (one [`bytes::Bytes`]
//!   handle per message per connection) and only the small chunk headers are built, so fanning
//!   one packet out to N destinations costs N header sets.
//! - Every size a peer controls (message length, number of chunk streams, bytes held in partial
//!   messages, chunk size) is bounded before anything is allocated; see [`DecoderLimits`]. What
//!   all server connections together hold in partial messages is bounded too, by a
//!   [`PendingBudget`] they share.
//!
//! Interop decisions (what FFmpeg, OBS, librtmp, SRS and nginx-rtmp send, and how each case is
//! taken) are documented on [`ChunkDecoder`] and [`ChunkEncoder`].

mod budget;
mod csid_map;
mod decoder;
mod encoder;
mod header_bytes;
mod outbuf;
#[cfg(test)]
mod tests;

pub use budget::{BudgetAccount, BudgetRefusal, PendingBudget};
pub use decoder::{
    ChunkDecoder, DEFAULT_MAX_CHUNK_STREAMS, DEFAULT_MAX_PENDING_BYTES, DEFAULT_MIN_CHUNK_SIZE,
    DecoderLimits, MAX_BUFFERED_CHUNK,
};
pub use encoder::ChunkEncoder;
pub use outbuf::OutBuf;

use bytes::Bytes;

/// Chunk size both directions start with until a Set Chunk Size message says otherwise (spec).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;

/// Largest chunk size a Set Chunk Size message can carry: the top bit of its 32-bit field must
/// be zero. Sizes above [`MAX_MESSAGE_LEN`] behave like it, since no message is longer.
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;

/// Largest message length the 24-bit length field can express (16 MiB - 1). FFmpeg's FLV muxer
/// refuses anything longer too, so no legitimate media message exceeds it.
pub const MAX_MESSAGE_LEN: u32 = 0xFF_FFFF;

/// Value of the 24-bit timestamp field meaning "the real value follows in a 4-byte extended
/// timestamp field".
const EXTENDED_TIMESTAMP_MARKER: u32 = 0xFF_FFFF;

/// Smallest chunk stream id: 0 and 1 are the escape values of the basic header's 6-bit field.
const MIN_CSID: u32 = 2;

/// Largest chunk stream id the 3-byte basic header can express (64 + 0xFFFF).
const MAX_CSID: u32 = 64 + 0xFFFF;

/// Longest chunk header: 3-byte basic header + 11-byte type-0 header + 4-byte extended
/// timestamp. Used to size the stack buffer headers are built in and the read-buffer hint.
const MAX_CHUNK_HEADER_LEN: usize = 3 + 11 + 4;

/// One complete RTMP message as it came off (or goes onto) the chunk stream.
///
/// The payload is a [`Bytes`] so the hub can hand the same allocation to every subscriber.
/// `csid` is kept because it tells the session which chunk stream the peer used (useful for
/// diagnostics); senders choose their own csid when re-encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// Chunk stream id the message arrived on.
    pub csid: u32,
    /// Absolute message timestamp in milliseconds, modulo 2^32.
    pub timestamp: u32,
    /// RTMP message type id (1-6 protocol control, 8 audio, 9 video, 18 data, 20 command, ...).
    pub type_id: u8,
    /// Message stream id (0 for control and connection-level commands).
    pub stream_id: u32,
    /// The message body, exactly `length` bytes.
    pub payload: Bytes,
}

/// Header of a message to encode. The length is not stored because it is always the payload's
/// length; keeping a second copy would only invite disagreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// Chunk stream id to send on (2..=65599; keep it below 64 for old peers, see
    /// [`ChunkEncoder`]).
    pub csid: u32,
    /// Absolute message timestamp in milliseconds, modulo 2^32.
    pub timestamp: u32,
    /// RTMP message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
}

/// Why the chunk stream from a peer cannot be decoded. Every variant is fatal for the
/// connection: after an error the decoder's state no longer matches the peer's, so the session
/// must close it (the message is meant for logs; it never contains payload bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Set Chunk Size carried 0 or a value with the top bit set.
    #[error("invalid chunk size {size}: must be between 1 and {MAX_CHUNK_SIZE} (top bit clear)")]
    InvalidChunkSize {
        /// The value the peer sent.
        size: u32,
    },
    /// A message header declared a length above [`DecoderLimits::max_message_len`].
    #[error("message on chunk stream {csid} declares {length} bytes, over the limit of {max}")]
    MessageTooLong {
        /// Chunk stream the header arrived on.
        csid: u32,
        /// Declared message length.
        length: u32,
        /// Configured limit.
        max: u32,
    },
    /// The peer opened more chunk streams than [`DecoderLimits::max_chunk_streams`].
    #[error("chunk stream {csid} would exceed the limit of {max} chunk streams per connection")]
    TooManyChunkStreams {
        /// The chunk stream id that would have been one too many.
        csid: u32,
        /// Configured limit.
        max: usize,
    },
    /// Partially received messages would hold more than [`DecoderLimits::max_pending_bytes`].
    #[error(
        "partial messages would hold {would_hold} bytes (growing chunk stream {csid}), \
         over the limit of {max}"
    )]
    PendingBytesExceeded {
        /// Chunk stream whose reassembly buffer needed to grow.
        csid: u32,
        /// Bytes all partial messages would have reserved after growing.
        would_hold: usize,
        /// Configured limit.
        max: usize,
    },
    /// Set Chunk Size asked for less than [`DecoderLimits::min_chunk_size`].
    #[error(
        "chunk size {size} is below the minimum of {min}: tiny chunks cost more to decode than \
         they carry, and no encoder uses them"
    )]
    ChunkSizeTooSmall {
        /// The value the peer sent.
        size: u32,
        /// Configured minimum.
        min: u32,
    },
    /// The budget for partial messages shared by all connections is spent, and this
    /// connection would hold more of it than any other: it is the one closed.
    #[error(
        "partial messages of all connections would exceed their shared budget of {max} bytes, \
         and this connection would hold the most of it ({would_hold} bytes, growing chunk \
         stream {csid})"
    )]
    PendingBudgetExhausted {
        /// Chunk stream whose reassembly buffer needed to grow.
        csid: u32,
        /// Bytes this connection's partial messages would have reserved after growing.
        would_hold: usize,
        /// The shared budget.
        max: usize,
    },
    /// Another connection needed room in the shared budget for partial messages, and this
    /// connection held the most of it.
    #[error(
        "closed to make room in the shared budget of {max} bytes for partial messages of all \
         connections: this connection held the most of it ({held} bytes)"
    )]
    EvictedFromPendingBudget {
        /// Bytes this connection's partial messages held.
        held: usize,
        /// The shared budget.
        max: usize,
    },
    /// A chunk stream's first chunk was type 2 or 3, which need a previous header to inherit
    /// from.
    #[error(
        "chunk stream {csid} starts with a type-{fmt} chunk header, which needs a previous \
         header on that chunk stream (the first chunk must be type 0)"
    )]
    MissingInitialHeader {
        /// Chunk stream id.
        csid: u32,
        /// Header type that arrived (2 or 3).
        fmt: u8,
    },
    /// A type 0/1/2 header arrived on a chunk stream whose previous message is still incomplete
    /// (continuation chunks must be type 3; an interrupted message must be aborted first).
    #[error(
        "type-{fmt} chunk header on chunk stream {csid} while its message is incomplete \
         ({received} of {length} bytes received)"
    )]
    HeaderInsideMessage {
        /// Chunk stream id.
        csid: u32,
        /// Header type that arrived (0, 1 or 2).
        fmt: u8,
        /// Bytes of the incomplete message received so far.
        received: usize,
        /// Declared length of the incomplete message.
        length: u32,
    },
}
