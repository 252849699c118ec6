//! What one chunk stream remembers between chunks.

use bytes::Bytes;

use super::super::RawMessage;
#[cfg(doc)]
use super::ChunkDecoder;
use super::header::MessageStart;

/// The unreceived part of a chunk taken in pieces: its next bytes are payload, no header.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChunkRest {
    pub(super) csid: u32,
    /// Payload bytes of the chunk still to come.
    pub(super) remaining: usize,
}

/// What a chunk stream remembers between chunks: the header of its latest message (inherited by
/// type 1/2/3 headers) and the message being reassembled, if any.
#[derive(Debug, Default)]
pub(super) struct ChunkStream {
    pub(super) timestamp: u32,
    /// Delta a new-message type-3 chunk re-applies (the timestamp field of the last type 0/1/2
    /// header, extended value included).
    pub(super) delta: u32,
    pub(super) length: u32,
    pub(super) type_id: u8,
    pub(super) stream_id: u32,
    /// The 4-byte extended field of the last type 0/1/2 header, when it had one; type-3 chunks
    /// then carry (or, for librtmp peers, omit) the same 4 bytes.
    pub(super) extended: Option<u32>,
    pub(super) partial: Option<Partial>,
}

/// A message whose first chunks arrived but not its last.
#[derive(Debug)]
pub(super) struct Partial {
    /// Payload bytes received so far.
    pub(super) data: Vec<u8>,
    /// Capacity reserved for `data` (exact, via `reserve_exact`), as counted in
    /// [`ChunkDecoder::pending_bytes`].
    pub(super) reserved: usize,
}

impl ChunkStream {
    /// Records the header of a message that starts now; later headers inherit from it.
    pub(super) fn begin_message(&mut self, start: MessageStart) {
        self.timestamp = start.timestamp;
        self.delta = start.delta;
        self.length = start.length;
        self.type_id = start.type_id;
        self.stream_id = start.stream_id;
        self.extended = start.extended;
    }

    pub(super) fn message(&self, csid: u32, payload: Bytes) -> RawMessage {
        RawMessage {
            csid,
            timestamp: self.timestamp,
            type_id: self.type_id,
            stream_id: self.stream_id,
            payload,
        }
    }
}
