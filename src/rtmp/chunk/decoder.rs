//! Chunk stream decoder: reassembles complete RTMP messages from the peer's chunks.
//!
//! Decoding is two-phase: [`ChunkDecoder::plan_chunk`] looks at the buffered bytes and the
//! per-chunk-stream state without changing anything and either says "need more bytes", rejects
//! the chunk, or describes it; only then [`ChunkDecoder::commit_chunk`] consumes exactly that
//! chunk. So the input buffer is only ever advanced by whole chunks (or, for chunks larger than
//! [`MAX_BUFFERED_CHUNK`], by whole pieces of one), and a limit violation is reported before any
//! memory is reserved for it. Between the two, memory a reassembly buffer is about to grow by
//! is reserved from the connection's share of the [`PendingBudget`] all server connections
//! draw from, when it has one.

use bytes::{Buf, Bytes, BytesMut};

#[cfg(doc)]
use super::budget::PendingBudget;
use super::budget::{BudgetAccount, BudgetRefusal};
use super::csid_map::CsidMap;
use super::{
    ChunkError, DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP_MARKER, MAX_CHUNK_HEADER_LEN,
    MAX_CHUNK_SIZE, MAX_MESSAGE_LEN, RawMessage,
};

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

/// Most bytes reserved for a multi-chunk message when its first chunk arrives, whatever length
/// it declares. Audio and nearly all video frames of common bitrates fit, so they get exactly
/// one allocation and one copy; a larger frame grows by doubling (clamped to its declared length)
/// as its chunks actually arrive. Without this cap a 13-byte header declaring 16 MiB would make
/// us reserve 16 MiB.
const MAX_INITIAL_RESERVE: usize = 256 * 1024;

/// Largest chunk payload the decoder waits to have whole in the input buffer. A bigger chunk
/// (a peer whose chunk size is above 64 KiB) is taken into its message's reassembly buffer
/// piece by piece as it arrives, where it counts against the pending-bytes limits: otherwise
/// a peer announcing a 16 MiB chunk size could make the connection's read buffer hold up to
/// 16 MiB of a message that never ends, outside every limit. Chunk sizes up to 64 KiB (the
/// largest prism and common peers send) are unaffected, single-chunk messages included.
pub const MAX_BUFFERED_CHUNK: usize = 64 * 1024;

/// Byte length of the message header for chunk types 0, 1, 2 and 3.
const MESSAGE_HEADER_LEN: [usize; 4] = [11, 7, 3, 0];

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

/// Decodes the chunk stream a peer sends into complete [`RawMessage`]s.
///
/// Interop behaviour (see `rtmp-interop.md` section 2):
/// - Type 0 timestamps are absolute; type 1/2 fields and type-3 re-applications are deltas added
///   modulo 2^32. A type 0 header's timestamp also becomes the delta a following new-message
///   type-3 chunk re-applies (what FFmpeg and SRS do).
/// - A type-3 chunk that starts a new message re-applies the previous delta (FMLE sends audio
///   that way).
/// - A fresh chunk stream must start with type 0. Type 1 is accepted too, with message stream
///   id 0 and the delta counted from 0, because librtmp sends its pings that way (SRS only warns
///   as well). Type 2 or 3 on a fresh chunk stream is rejected: there is no length to inherit.
/// - Extended timestamps: a 24-bit field of 0xFFFFFF means a 4-byte value follows (for type 1/2
///   it is a delta). On a type-3 chunk after such a header, the two camps differ: the 2012 spec,
///   FFmpeg and OBS repeat the 4 bytes, librtmp-based peers omit them. A type-3 chunk that
///   *starts* a message always carries them (read unconditionally, as FFmpeg does, and used as
///   the delta). For a *continuation* chunk the decoder peeks the 4 bytes and consumes them only
///   if they equal the extended value of the message's header or its absolute timestamp (SRS's
///   heuristic); otherwise they are payload. A payload chunk that happens to start with those
///   exact 4 bytes would be misread, a 2^-31 chance accepted by every tolerant server.
///   While fewer than 4 bytes follow such a continuation header, the decoder waits for more even
///   if the chunk's remaining payload is shorter, because it cannot tell the camps apart yet.
/// - A type 0/1/2 header while the chunk stream's message is incomplete is an error
///   ([`ChunkError::HeaderInsideMessage`]); the peer must send an Abort message first.
/// - Chunk sizes above `max_message_len` behave like it: no chunk carries more than the rest of
///   its message, so the chunk size alone never causes an allocation. Chunks above
///   [`MAX_BUFFERED_CHUNK`] are taken in pieces, so the input buffer never has to hold one whole.
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: DecoderLimits,
    chunk_size: u32,
    streams: CsidMap<ChunkStream>,
    /// Sum of [`Partial::reserved`] over all chunk streams, checked against
    /// [`DecoderLimits::max_pending_bytes`] (and reserved from `budget`, when there is one).
    pending_bytes: usize,
    /// This connection's share of the budget all server connections draw from.
    budget: Option<BudgetAccount>,
    /// Set while the input continues a chunk larger than [`MAX_BUFFERED_CHUNK`] whose header
    /// and first bytes were taken already.
    in_chunk: Option<ChunkRest>,
}

/// The unreceived part of a chunk taken in pieces: its next bytes are payload, no header.
#[derive(Debug, Clone, Copy)]
struct ChunkRest {
    csid: u32,
    /// Payload bytes of the chunk still to come.
    remaining: usize,
}

/// What a chunk stream remembers between chunks: the header of its latest message (inherited by
/// type 1/2/3 headers) and the message being reassembled, if any.
#[derive(Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    /// Delta a new-message type-3 chunk re-applies (the timestamp field of the last type 0/1/2
    /// header, extended value included).
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The 4-byte extended field of the last type 0/1/2 header, when it had one; type-3 chunks
    /// then carry (or, for librtmp peers, omit) the same 4 bytes.
    extended: Option<u32>,
    partial: Option<Partial>,
}

/// A message whose first chunks arrived but not its last.
#[derive(Debug)]
struct Partial {
    /// Payload bytes received so far.
    data: Vec<u8>,
    /// Capacity reserved for `data` (exact, via `reserve_exact`), as counted in
    /// [`ChunkDecoder::pending_bytes`].
    reserved: usize,
}

/// Header values of a message that a chunk starts.
#[derive(Debug, Clone, Copy)]
struct MessageStart {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: Option<u32>,
}

/// A parsed chunk header: where its payload starts and, for the first chunk of a message, the
/// message's header values.
#[derive(Debug, Clone, Copy)]
struct ChunkHeader {
    csid: u32,
    /// Basic header + message header + extended timestamp bytes, if consumed.
    header_len: usize,
    /// Set when this chunk starts a new message.
    start: Option<MessageStart>,
}

/// A chunk (or a piece of one) present in the input buffer and accepted by every limit: what
/// to consume and how it changes the chunk stream.
#[derive(Debug)]
struct ChunkPlan {
    csid: u32,
    /// Basic header + message header + extended timestamp bytes, if consumed (0 for the later
    /// pieces of a chunk taken in pieces).
    header_len: usize,
    /// Payload bytes consumed now.
    payload_len: usize,
    /// Payload bytes of this chunk that follow later (0 unless the chunk is taken in pieces).
    rest: usize,
    /// Set when this chunk starts a new message.
    start: Option<MessageStart>,
    /// Capacity the chunk stream's reassembly buffer must have after this chunk (0 when the
    /// message is complete within this chunk and needs no buffer).
    reserve_to: usize,
    /// How much `reserve_to` adds to what the chunk stream has reserved already.
    grow: usize,
}

/// First 1-3 bytes of every chunk.
#[derive(Debug, Clone, Copy)]
struct BasicHeader {
    fmt: u8,
    csid: u32,
    len: usize,
}

/// Fields of a type 0/1/2 message header; absent fields are inherited.
#[derive(Debug, Clone, Copy)]
struct HeaderFields {
    timestamp_field: u32,
    length: Option<u32>,
    type_id: Option<u8>,
    stream_id: Option<u32>,
}

impl ChunkDecoder {
    /// Creates a decoder at the default chunk size of 128 with no chunk stream state.
    pub fn new(limits: DecoderLimits) -> Self {
        Self {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: CsidMap::default(),
            pending_bytes: 0,
            budget: None,
            in_chunk: None,
        }
    }

    /// Creates a decoder whose reassembly buffers also draw on a budget shared with other
    /// connections (see [`PendingBudget`]). What it holds is given back as messages complete
    /// or are aborted, and all of it when the decoder is dropped (with the account).
    pub fn with_budget(limits: DecoderLimits, account: BudgetAccount) -> Self {
        Self {
            budget: Some(account),
            ..Self::new(limits)
        }
    }

    /// This decoder's share of a shared budget, if it has one: its eviction token tells the
    /// driver to close the connection.
    pub fn budget(&self) -> Option<&BudgetAccount> {
        self.budget.as_ref()
    }

    /// [`ChunkError::EvictedFromPendingBudget`] once this decoder's account was evicted to make
    /// room for another connection (every later [`Self::decode`] fails with it); `Ok` before.
    pub fn check_budget(&self) -> Result<(), ChunkError> {
        match &self.budget {
            Some(account) if account.evicted().is_cancelled() => {
                Err(ChunkError::EvictedFromPendingBudget {
                    held: self.pending_bytes,
                    max: account.budget(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Applies the peer's Set Chunk Size message. It takes effect for the next chunk, including
    /// continuation chunks of a message already in progress (the peer changes size between
    /// chunks). Values above `max_message_len` are accepted but act like it, so nothing is
    /// allocated because of the chunk size alone; values below
    /// [`DecoderLimits::min_chunk_size`] are refused.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(ChunkError::InvalidChunkSize { size });
        }
        if size < self.limits.min_chunk_size {
            return Err(ChunkError::ChunkSizeTooSmall {
                size,
                min: self.limits.min_chunk_size,
            });
        }
        self.chunk_size = size;
        Ok(())
    }

    /// The peer's current chunk size, as last set.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Applies the peer's Abort message: drops the partial message on `csid` (its reserved
    /// memory is released) but keeps the header state so later type 1/2/3 headers still inherit
    /// from it. Unknown chunk streams are ignored.
    pub fn abort(&mut self, csid: u32) {
        if let Some(partial) = self.streams.get_mut(csid).and_then(|s| s.partial.take()) {
            self.release(partial.reserved);
        }
    }

    /// Bytes currently reserved by partially received messages (what
    /// [`DecoderLimits::max_pending_bytes`] bounds); for metrics and tests.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Capacity actually allocated by reassembly buffers, to check in tests that the accounting
    /// in [`Self::pending_bytes`] matches memory.
    #[cfg(test)]
    pub(super) fn held_capacity(&self) -> usize {
        self.streams
            .values()
            .filter_map(|stream| stream.partial.as_ref())
            .map(|partial| partial.data.capacity())
            .sum()
    }

    /// Largest whole chunk `decode` may wait for (header included). The I/O layer must let its
    /// read buffer grow at least this far, or a peer using a big chunk size would stall. Never
    /// more than [`MAX_BUFFERED_CHUNK`] of payload: bigger chunks are taken in pieces.
    pub fn max_chunk_bytes(&self) -> usize {
        MAX_CHUNK_HEADER_LEN.saturating_add(self.effective_chunk_size().min(MAX_BUFFERED_CHUNK))
    }

    /// Decodes the next complete message from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` ends before a message completes: all whole chunks in it
    /// have been consumed (and the bytes of a trailing incomplete chunk left in place, unless it
    /// is one taken in pieces). Returns at most one message per call so the caller can apply a
    /// Set Chunk Size or Abort before the next chunk is read.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RawMessage>, ChunkError> {
        self.check_budget()?;
        loop {
            let Some(plan) = self.plan_chunk(buf)? else {
                return Ok(None);
            };
            self.reserve_shared(&plan)?;
            if let Some(message) = self.commit_chunk(plan, buf) {
                return Ok(Some(message));
            }
        }
    }

    /// Chunk payload size in force: the peer's chunk size, but never above the largest message
    /// we accept (and never 0, so every message makes progress).
    fn effective_chunk_size(&self) -> usize {
        let size = self.chunk_size.min(self.limits.max_message_len).max(1);
        usize::try_from(size).unwrap_or(usize::MAX)
    }

    /// Phase one: works out what the chunk at the front of `buf` is, without changing anything.
    /// `Ok(None)` means the whole chunk is not buffered yet (or, for a chunk taken in pieces,
    /// not its header or no new payload byte).
    fn plan_chunk(&self, buf: &[u8]) -> Result<Option<ChunkPlan>, ChunkError> {
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

    /// Between the phases: reserves what the plan grows a reassembly buffer by from the shared
    /// budget, if this decoder has one.
    fn reserve_shared(&self, plan: &ChunkPlan) -> Result<(), ChunkError> {
        let Some(account) = &self.budget else {
            return Ok(());
        };
        if plan.grow == 0 {
            return Ok(());
        }
        account.reserve(plan.grow).map_err(|refusal| match refusal {
            BudgetRefusal::Exhausted { would_hold, max } => ChunkError::PendingBudgetExhausted {
                csid: plan.csid,
                would_hold,
                max,
            },
            BudgetRefusal::Evicted { held, max } => {
                ChunkError::EvictedFromPendingBudget { held, max }
            }
        })
    }

    /// Gives back `bytes` reserved by a reassembly buffer that is gone.
    fn release(&mut self, bytes: usize) {
        self.pending_bytes = self.pending_bytes.saturating_sub(bytes);
        if let Some(account) = &self.budget {
            account.release(bytes);
        }
    }

    /// Phase two: consumes the planned chunk (or piece) from `buf` and updates the chunk
    /// stream. Returns the message if this completed one.
    fn commit_chunk(&mut self, plan: ChunkPlan, buf: &mut BytesMut) -> Option<RawMessage> {
        // plan_chunk checked that header and payload are buffered; the min() calls only make
        // that visible without a panicking path.
        buf.advance(plan.header_len.min(buf.len()));
        let payload_len = plan.payload_len.min(buf.len());
        self.in_chunk = (plan.rest > 0).then_some(ChunkRest {
            csid: plan.csid,
            remaining: plan.rest,
        });
        let stream = self.streams.get_or_default(plan.csid);

        if let Some(start) = plan.start {
            stream.begin_message(start);
            if plan.reserve_to == 0 {
                // The whole message is in this chunk: hand out the input bytes themselves.
                let payload = buf.split_to(payload_len).freeze();
                return Some(stream.message(plan.csid, payload));
            }
            stream.partial = Some(Partial {
                data: Vec::new(),
                reserved: 0,
            });
        }

        let partial = stream.partial.as_mut()?;
        if plan.reserve_to > partial.reserved {
            partial
                .data
                .reserve_exact(plan.reserve_to.saturating_sub(partial.data.len()));
            self.pending_bytes = self
                .pending_bytes
                .saturating_add(plan.reserve_to - partial.reserved);
            partial.reserved = plan.reserve_to;
        }
        partial.data.extend_from_slice(buf.get(..payload_len)?);
        buf.advance(payload_len);

        if partial.data.len() < usize::try_from(stream.length).unwrap_or(usize::MAX) {
            return None;
        }
        let partial = stream.partial.take()?;
        let message = stream.message(plan.csid, Bytes::from(partial.data));
        // Bytes::from(Vec) takes over the allocation: no second copy. Its memory now belongs
        // to the message (and to the hub's bounded queues and cache), no longer to the budget.
        self.release(partial.reserved);
        Some(message)
    }
}

/// Parses a type-3 chunk header: a continuation if the chunk stream has a partial message,
/// else the first chunk of a new message with every header field inherited.
fn parse_type3(basic: BasicHeader, stream: &ChunkStream, rest: &[u8]) -> Option<ChunkHeader> {
    match &stream.partial {
        Some(_) => parse_continuation(basic, stream, rest),
        None => parse_type3_message_start(basic, stream, rest),
    }
}

/// A type-3 chunk starting a new message: re-applies the previous delta. After an extended
/// header the 4 bytes are read unconditionally and are the delta (FFmpeg's behaviour).
fn parse_type3_message_start(
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
fn parse_continuation(
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

impl ChunkStream {
    /// Records the header of a message that starts now; later headers inherit from it.
    fn begin_message(&mut self, start: MessageStart) {
        self.timestamp = start.timestamp;
        self.delta = start.delta;
        self.length = start.length;
        self.type_id = start.type_id;
        self.stream_id = start.stream_id;
        self.extended = start.extended;
    }

    fn message(&self, csid: u32, payload: Bytes) -> RawMessage {
        RawMessage {
            csid,
            timestamp: self.timestamp,
            type_id: self.type_id,
            stream_id: self.stream_id,
            payload,
        }
    }
}

/// Parses the 1-3 byte basic header; `None` if `buf` is too short.
fn parse_basic_header(buf: &[u8]) -> Option<BasicHeader> {
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

fn message_header_len(fmt: u8) -> usize {
    MESSAGE_HEADER_LEN
        .get(usize::from(fmt))
        .copied()
        .unwrap_or_default()
}

/// Parses a type 0/1/2 message header from the bytes after the basic header; `None` if they
/// are not all buffered yet.
fn parse_message_header(fmt: u8, rest: &[u8]) -> Option<HeaderFields> {
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

fn read_array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn read_u24_be(buf: &[u8], at: usize) -> Option<u32> {
    let [a, b, c] = read_array::<3>(buf, at)?;
    Some(u32::from_be_bytes([0, a, b, c]))
}

fn read_u32_be(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(read_array(buf, at)?))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::super::PendingBudget;
    use super::super::tests::{decode_all, decode_bytewise, hex};
    use super::*;

    /// The default limits, but any chunk size allowed: the vectors below use tiny chunk sizes
    /// to show each header form in a few bytes.
    fn decoder() -> ChunkDecoder {
        ChunkDecoder::new(DecoderLimits {
            min_chunk_size: 1,
            ..DecoderLimits::default()
        })
    }

    fn message(
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> RawMessage {
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
            chunk("84 00 00 01", 3, 256), // next 300-byte message: 256 + 44 now
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
}
