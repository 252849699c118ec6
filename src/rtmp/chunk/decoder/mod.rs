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
//!
//! The files: the limits a peer is held to (`limits.rs`), what each chunk stream remembers
//! between chunks (`stream.rs`), parsing chunk headers (`header.rs`), phase one (`plan.rs`),
//! and here the decoder itself with phase two.

use bytes::{Buf, Bytes, BytesMut};

#[cfg(doc)]
use super::budget::PendingBudget;
use super::budget::{BudgetAccount, BudgetRefusal};
use super::csid_map::CsidMap;
use super::{ChunkError, DEFAULT_CHUNK_SIZE, MAX_CHUNK_HEADER_LEN, MAX_CHUNK_SIZE, RawMessage};

mod header;
mod limits;
mod plan;
mod stream;
#[cfg(test)]
mod tests;

pub use limits::{
    DEFAULT_MAX_CHUNK_STREAMS, DEFAULT_MAX_PENDING_BYTES, DEFAULT_MIN_CHUNK_SIZE, DecoderLimits,
    MAX_BUFFERED_CHUNK,
};
use plan::ChunkPlan;
use stream::{ChunkRest, ChunkStream, Partial};

/// Decodes the chunk stream a peer sends into complete [`RawMessage`]s.
///
/// Interop behaviour (what FFmpeg, OBS, librtmp, SRS and nginx-rtmp send, and how each case is
/// taken):
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
