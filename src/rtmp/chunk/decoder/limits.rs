//! What a peer may make one decoder hold: the [`DecoderLimits`] and their defaults.

#[cfg(doc)]
use super::super::ChunkError;
use super::super::MAX_MESSAGE_LEN;

/// Default for [`DecoderLimits::max_chunk_streams`]. Real publishers use a handful of chunk
/// streams (FFmpeg 2-8, OBS 2-4, nginx 3-7); nginx-rtmp allows 32. 64 leaves room for odd
/// clients while capping the per-connection header state a peer can make us keep.
pub const DEFAULT_MAX_CHUNK_STREAMS: usize = 64;

/// Default for [`DecoderLimits::max_pending_bytes`]: room for one maximal (16 MiB - 1) message
/// plus interleaved audio/data on other chunk streams, while capping what one connection can
/// make us hold before a message is complete.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 32 * 1024 * 1024;

/// Default for [`DecoderLimits::min_chunk_size`]. Every encoder and server in use sends 128
/// (the spec's initial size) or more: OBS and nginx 4096, SRS 60000 (SRS refuses anything
/// below 128). Below 64 the per-chunk work (a header to parse, a lookup, a copy) outweighs
/// the payload it carries, so a peer could keep a thread busy for the length of a big message
/// at one byte per chunk.
pub const DEFAULT_MIN_CHUNK_SIZE: u32 = 64;

/// Largest chunk payload the decoder waits to have whole in the input buffer. A bigger chunk
/// (a peer whose chunk size is above 64 KiB) is taken into its message's reassembly buffer
/// piece by piece as it arrives, where it counts against the pending-bytes limits: otherwise
/// a peer announcing a 16 MiB chunk size could make the connection's read buffer hold up to
/// 16 MiB of a message that never ends, outside every limit. Chunk sizes up to 64 KiB (the
/// largest prism and common peers send) are unaffected, single-chunk messages included.
pub const MAX_BUFFERED_CHUNK: usize = 64 * 1024;

/// Bounds on what a peer can make the decoder hold. All of them are checked before the memory
/// is reserved, and each violation is its own [`ChunkError`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Largest message accepted, in bytes. Capped by the wire format at
    /// [`MAX_MESSAGE_LEN`]; lower it to refuse huge messages early.
    pub max_message_len: u32,
    /// Most chunk streams a connection may use (each keeps a little header state forever).
    pub max_chunk_streams: usize,
    /// Most bytes all partially received messages together may reserve.
    pub max_pending_bytes: usize,
    /// Smallest chunk size a Set Chunk Size message may set; a smaller one is refused
    /// ([`ChunkError::ChunkSizeTooSmall`]), which closes the connection.
    ///
    /// Why refuse the size rather than, say, media cut into small chunks: the cost of a
    /// message grows with its chunk count, whatever the message is, so the size is where the
    /// cost is decided. Refusing it at once costs nothing, needs no state, and tells the peer
    /// (and the log) exactly what was wrong, while no real encoder ever comes near the limit.
    pub min_chunk_size: u32,
}

impl Default for DecoderLimits {
    /// Safe values for a public ingest: the full 24-bit message length (16 MiB - 1, which
    /// legitimate keyframes can approach at high bitrates; nginx's 1 MiB default is known to
    /// break such streams), [`DEFAULT_MAX_CHUNK_STREAMS`] chunk streams,
    /// [`DEFAULT_MAX_PENDING_BYTES`] of partial messages and chunks of at least
    /// [`DEFAULT_MIN_CHUNK_SIZE`] bytes.
    fn default() -> Self {
        Self {
            max_message_len: MAX_MESSAGE_LEN,
            max_chunk_streams: DEFAULT_MAX_CHUNK_STREAMS,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            min_chunk_size: DEFAULT_MIN_CHUNK_SIZE,
        }
    }
}
