//! Phase one of decoding a chunk: what the chunk at the front of the input is, and whether every
//! limit allows it, worked out without changing anything.

use super::super::{ChunkError, EXTENDED_TIMESTAMP_MARKER};
#[cfg(doc)]
use super::DecoderLimits;
use super::header::{
    BasicHeader, ChunkHeader, MessageStart, message_header_len, parse_basic_header,
    parse_message_header, parse_type3, read_u32_be,
};
use super::stream::{ChunkRest, ChunkStream};
use super::{ChunkDecoder, MAX_BUFFERED_CHUNK};

/// Most bytes reserved for a multi-chunk message when its first chunk arrives, whatever length
/// it declares. Audio and nearly all video frames of common bitrates fit, so they get exactly
/// one allocation and one copy; a larger frame grows by doubling (clamped to its declared length)
/// as its chunks actually arrive. Without this cap a 13-byte header declaring 16 MiB would make
/// us reserve 16 MiB.
pub(super) const MAX_INITIAL_RESERVE: usize = 256 * 1024;

/// A chunk (or a piece of one) present in the input buffer and accepted by every limit: what
/// to consume and how it changes the chunk stream.
#[derive(Debug)]
pub(super) struct ChunkPlan {
    pub(super) csid: u32,
    /// Basic header + message header + extended timestamp bytes, if consumed (0 for the later
    /// pieces of a chunk taken in pieces).
    pub(super) header_len: usize,
    /// Payload bytes consumed now.
    pub(super) payload_len: usize,
    /// Payload bytes of this chunk that follow later (0 unless the chunk is taken in pieces).
    pub(super) rest: usize,
    /// Set when this chunk starts a new message.
    pub(super) start: Option<MessageStart>,
    /// Capacity the chunk stream's reassembly buffer must have after this chunk (0 when the
    /// message is complete within this chunk and needs no buffer).
    pub(super) reserve_to: usize,
    /// How much `reserve_to` adds to what the chunk stream has reserved already.
    pub(super) grow: usize,
}

impl ChunkDecoder {
    /// Phase one: works out what the chunk at the front of `buf` is, without changing anything.
    /// `Ok(None)` means the whole chunk is not buffered yet (or, for a chunk taken in pieces,
    /// not its header or no new payload byte).
    pub(super) fn plan_chunk(&self, buf: &[u8]) -> Result<Option<ChunkPlan>, ChunkError> {
        if let Some(rest) = self.in_chunk {
            return self.plan_rest_of_chunk(rest, buf.len());
        }
        let Some(basic) = parse_basic_header(buf) else {
            return Ok(None);
        };
        let rest = buf.get(basic.len..).unwrap_or_default();
        let stream = self.streams.get(basic.csid);
        if stream.is_none() {
            self.check_fresh_chunk_stream(basic)?;
        }
        let header = match (basic.fmt, stream) {
            (3, Some(stream)) => parse_type3(basic, stream, rest),
            // Fresh csid with type 3 was rejected by check_fresh_chunk_stream.
            (3, None) => None,
            _ => self.parse_with_header(basic, stream, rest)?,
        };
        let Some(header) = header else {
            return Ok(None);
        };
        self.plan_payload(header, stream, buf.len())
    }

    /// Rejects a chunk that would open one chunk stream too many, or that opens one with a
    /// header type that has nothing to inherit from.
    fn check_fresh_chunk_stream(&self, basic: BasicHeader) -> Result<(), ChunkError> {
        if basic.fmt >= 2 {
            return Err(ChunkError::MissingInitialHeader {
                csid: basic.csid,
                fmt: basic.fmt,
            });
        }
        if self.streams.len() >= self.limits.max_chunk_streams {
            return Err(ChunkError::TooManyChunkStreams {
                csid: basic.csid,
                max: self.limits.max_chunk_streams,
            });
        }
        if basic.fmt == 1 {
            tracing::debug!(
                csid = basic.csid,
                "chunk stream starts with a type-1 header (librtmp ping style); accepted"
            );
        }
        Ok(())
    }

    /// Parses a type 0, 1 or 2 chunk header: always the first chunk of a new message.
    fn parse_with_header(
        &self,
        basic: BasicHeader,
        stream: Option<&ChunkStream>,
        rest: &[u8],
    ) -> Result<Option<ChunkHeader>, ChunkError> {
        if let Some(stream) = stream
            && let Some(partial) = &stream.partial
        {
            return Err(ChunkError::HeaderInsideMessage {
                csid: basic.csid,
                fmt: basic.fmt,
                received: partial.data.len(),
                length: stream.length,
            });
        }
        let Some(fields) = parse_message_header(basic.fmt, rest) else {
            return Ok(None);
        };
        // A fresh chunk stream opened by type 1 inherits zeros: stream id 0, delta from 0.
        let fresh = ChunkStream::default();
        let previous = stream.unwrap_or(&fresh);
        let length = fields.length.unwrap_or(previous.length);
        self.check_message_length(basic.csid, length)?;

        let mut header_len = basic.len + message_header_len(basic.fmt);
        let (timestamp_value, extended) = if fields.timestamp_field == EXTENDED_TIMESTAMP_MARKER {
            let Some(value) = read_u32_be(rest, message_header_len(basic.fmt)) else {
                return Ok(None);
            };
            header_len += 4;
            (value, Some(value))
        } else {
            (fields.timestamp_field, None)
        };
        let timestamp = if basic.fmt == 0 {
            timestamp_value
        } else {
            previous.timestamp.wrapping_add(timestamp_value)
        };
        let start = MessageStart {
            timestamp,
            delta: timestamp_value,
            length,
            type_id: fields.type_id.unwrap_or(previous.type_id),
            stream_id: fields.stream_id.unwrap_or(previous.stream_id),
            extended,
        };
        Ok(Some(ChunkHeader {
            csid: basic.csid,
            header_len,
            start: Some(start),
        }))
    }

    /// Plans the payload after a parsed header: the whole chunk when it is buffered, else, for
    /// a chunk too big to wait for, the part that is buffered. Every limit is checked against
    /// the whole chunk first, so a violation is reported as soon as the header is in.
    fn plan_payload(
        &self,
        header: ChunkHeader,
        stream: Option<&ChunkStream>,
        buffered: usize,
    ) -> Result<Option<ChunkPlan>, ChunkError> {
        let partial = stream.and_then(|stream| stream.partial.as_ref());
        let (length, received, reserved) = match (&header.start, partial, stream) {
            (Some(start), _, _) => (start.length, 0, 0),
            (None, Some(partial), Some(stream)) => {
                (stream.length, partial.data.len(), partial.reserved)
            }
            // A continuation header is only parsed for a chunk stream with a partial message.
            _ => return Ok(None),
        };
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        let chunk_len = length
            .saturating_sub(received)
            .min(self.effective_chunk_size());
        let whole = self.plan_piece(header, length, received, reserved, chunk_len, 0)?;
        if header.header_len.saturating_add(chunk_len) <= buffered {
            return Ok(Some(whole));
        }
        if chunk_len <= MAX_BUFFERED_CHUNK || header.header_len > buffered {
            return Ok(None);
        }
        let available = buffered - header.header_len;
        self.plan_piece(
            header,
            length,
            received,
            reserved,
            available,
            chunk_len - available,
        )
        .map(Some)
    }

    /// Plans a later piece of a chunk taken in pieces: the payload bytes buffered now, up to
    /// the end of the chunk.
    fn plan_rest_of_chunk(
        &self,
        rest: ChunkRest,
        buffered: usize,
    ) -> Result<Option<ChunkPlan>, ChunkError> {
        let take = rest.remaining.min(buffered);
        let Some(stream) = self.streams.get(rest.csid) else {
            return Ok(None);
        };
        let Some(partial) = &stream.partial else {
            return Ok(None);
        };
        if take == 0 {
            return Ok(None);
        }
        let header = ChunkHeader {
            csid: rest.csid,
            header_len: 0,
            start: None,
        };
        let length = usize::try_from(stream.length).unwrap_or(usize::MAX);
        self.plan_piece(
            header,
            length,
            partial.data.len(),
            partial.reserved,
            take,
            rest.remaining - take,
        )
        .map(Some)
    }

    /// Completes a plan that consumes `take` payload bytes of a message of `length` bytes, of
    /// which `received` are already in a reassembly buffer with `reserved` bytes of capacity:
    /// how much the buffer must hold afterwards, checked against the connection's limit.
    fn plan_piece(
        &self,
        header: ChunkHeader,
        length: usize,
        received: usize,
        reserved: usize,
        take: usize,
        rest: usize,
    ) -> Result<ChunkPlan, ChunkError> {
        let reserve_to = if header.start.is_some() {
            if take == length {
                // Complete in one chunk: split off the input buffer, nothing to reserve.
                0
            } else {
                length.min(take.max(MAX_INITIAL_RESERVE))
            }
        } else {
            let received_after = received.saturating_add(take);
            if received_after <= reserved {
                reserved
            } else {
                // Double what we have, so a big frame costs O(log n) reallocations, but never
                // beyond the declared length.
                received_after.max(reserved.saturating_mul(2)).min(length)
            }
        };
        self.check_pending(header.csid, reserved, reserve_to)?;
        Ok(ChunkPlan {
            csid: header.csid,
            header_len: header.header_len,
            payload_len: take,
            rest,
            start: header.start,
            reserve_to,
            grow: reserve_to.saturating_sub(reserved),
        })
    }

    fn check_message_length(&self, csid: u32, length: u32) -> Result<(), ChunkError> {
        if length > self.limits.max_message_len {
            return Err(ChunkError::MessageTooLong {
                csid,
                length,
                max: self.limits.max_message_len,
            });
        }
        Ok(())
    }

    /// Checks that growing one reassembly buffer from `reserved` to `reserve_to` bytes keeps all
    /// partial messages within [`DecoderLimits::max_pending_bytes`].
    fn check_pending(
        &self,
        csid: u32,
        reserved: usize,
        reserve_to: usize,
    ) -> Result<(), ChunkError> {
        let would_hold = self
            .pending_bytes
            .saturating_sub(reserved)
            .saturating_add(reserve_to);
        if reserve_to > reserved && would_hold > self.limits.max_pending_bytes {
            return Err(ChunkError::PendingBytesExceeded {
                csid,
                would_hold,
                max: self.limits.max_pending_bytes,
            });
        }
        Ok(())
    }
}
