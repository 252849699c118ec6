//! The order of a chunked push's chunks, without I/O: chunks arrive numbered,
//! maybe out of order, maybe not at all; they leave in order, and a chunk that
//! has not come when a later one is waiting is given up on after one chunk's
//! time and replaced by silence, so the stream goes on without a hole.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How far ahead of the next chunk due a chunk may be (in chunks): enough for
/// a phone on a bad network, bounded so one session holds little.
pub const WINDOW: u64 = 16;

/// Why a chunk was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Its place in the stream has passed (sent, or filled with silence).
    #[error("chunk {0} comes too late: the stream is past it")]
    TooLate(u64),
    /// More than [`WINDOW`] chunks ahead of the one due.
    #[error("chunk {0} is more than {WINDOW} chunks ahead of chunk {1}, the one due")]
    TooFarAhead(u64, u64),
    /// The same number twice.
    #[error("chunk {0} came already")]
    Duplicate(u64),
    /// The session was ended.
    #[error("the session has ended")]
    Ended,
}

/// What to send next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The next chunk.
    Chunk(Bytes),
    /// One chunk's worth of silence in place of a chunk given up on.
    Silence,
    /// Nothing yet: ask again by then (or when a chunk comes, `None`).
    Wait(Option<Instant>),
    /// The session ended and everything was sent.
    End,
}

/// The chunks waiting for their turn.
#[derive(Debug)]
pub struct Reorder {
    next: u64,
    pending: BTreeMap<u64, Bytes>,
    /// How long a missing chunk is waited for once a later one is here.
    gap_wait: Duration,
    gap_since: Option<Instant>,
    closing: bool,
}

impl Reorder {
    /// Chunks from number 0, each `chunk` long.
    pub fn new(chunk: Duration) -> Self {
        Self {
            next: 0,
            pending: BTreeMap::new(),
            gap_wait: chunk,
            gap_since: None,
            closing: false,
        }
    }

    /// Takes chunk `seq`.
    pub fn offer(&mut self, seq: u64, data: Bytes) -> Result<(), ChunkError> {
        self.admits(seq)?;
        self.pending.insert(seq, data);
        Ok(())
    }

    /// Whether chunk `seq` would be taken now: asked before a chunk is
    /// decoded, so that one that would be refused costs no decoding.
    pub fn admits(&self, seq: u64) -> Result<(), ChunkError> {
        if self.closing {
            return Err(ChunkError::Ended);
        }
        if seq < self.next {
            return Err(ChunkError::TooLate(seq));
        }
        if seq >= self.next + WINDOW {
            return Err(ChunkError::TooFarAhead(seq, self.next));
        }
        if self.pending.contains_key(&seq) {
            return Err(ChunkError::Duplicate(seq));
        }
        Ok(())
    }

    /// The client ended the session: what is waiting goes out (holes filled),
    /// then [`Step::End`].
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// What to send at `now`.
    pub fn step(&mut self, now: Instant) -> Step {
        if let Some(data) = self.pending.remove(&self.next) {
            self.next += 1;
            self.gap_since = None;
            return Step::Chunk(data);
        }
        if self.pending.is_empty() {
            return if self.closing {
                Step::End
            } else {
                Step::Wait(None)
            };
        }
        // A hole, with later chunks waiting behind it.
        let since = *self.gap_since.get_or_insert(now);
        if self.closing || now >= since + self.gap_wait {
            self.next += 1;
            self.gap_since = None;
            return Step::Silence;
        }
        Step::Wait(Some(since + self.gap_wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u8) -> Bytes {
        Bytes::from(vec![n])
    }

    #[test]
    fn chunks_leave_in_order_and_a_hole_becomes_silence_after_one_chunks_time() {
        let second = Duration::from_secs(1);
        let start = Instant::now();
        let mut order = Reorder::new(second);
        assert_eq!(order.step(start), Step::Wait(None));
        order.offer(1, chunk(1)).unwrap();
        order.offer(0, chunk(0)).unwrap();
        assert_eq!(order.step(start), Step::Chunk(chunk(0)));
        assert_eq!(order.step(start), Step::Chunk(chunk(1)));
        // 2 never comes; 3 does.
        order.offer(3, chunk(3)).unwrap();
        assert_eq!(order.step(start), Step::Wait(Some(start + second)));
        assert_eq!(
            order.step(start + second / 2),
            Step::Wait(Some(start + second))
        );
        assert_eq!(order.step(start + second), Step::Silence);
        assert_eq!(order.step(start + second), Step::Chunk(chunk(3)));
        assert_eq!(order.offer(2, chunk(2)), Err(ChunkError::TooLate(2)));
        assert_eq!(order.offer(3, chunk(3)), Err(ChunkError::TooLate(3)));
        assert_eq!(order.admits(5), Ok(()));
        order.offer(5, chunk(5)).unwrap();
        assert_eq!(order.admits(5), Err(ChunkError::Duplicate(5)));
        assert_eq!(order.offer(5, chunk(5)), Err(ChunkError::Duplicate(5)));
        assert_eq!(order.admits(2), Err(ChunkError::TooLate(2)));
        assert_eq!(
            order.offer(4 + WINDOW, chunk(9)),
            Err(ChunkError::TooFarAhead(4 + WINDOW, 4))
        );
        // Ending: the hole at 4 is filled at once, then the end.
        order.close();
        assert_eq!(order.step(start + second), Step::Silence);
        assert_eq!(order.step(start + second), Step::Chunk(chunk(5)));
        assert_eq!(order.step(start + second), Step::End);
        assert_eq!(order.offer(6, chunk(6)), Err(ChunkError::Ended));
    }
}
