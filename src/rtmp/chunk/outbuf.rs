//! Queue of bytes waiting to be written to one connection, shaped for `write_vectored`.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use super::header_bytes::HeaderBytes;

/// Scratch space reserved at a time for copied bytes. Chunk headers are 1-18 bytes, so one
/// block holds hundreds of them; once every part cut from a block has been written, `BytesMut`
/// reclaims the block instead of allocating, which keeps the steady state allocation-free.
const SCRATCH_BLOCK: usize = 4096;

/// Queue of bytes to write: small control data copied into a reusable scratch buffer, message
/// payloads shared (a reference count, no copy).
///
/// Why: a relay sends the same media payload to many connections; only the few header bytes
/// differ. Keeping payloads as shared parts and handing the kernel a list of slices
/// ([`OutBuf::io_slices`]) means one payload allocation serves every destination.
///
/// A chunked message is one part (`OutBuf::push_chunked`): its payload is held once and its
/// chunk headers are interleaved only when the slices are listed, so queuing a message costs
/// one reference count however many chunks it has (a `Bytes::slice` per chunk would cost an
/// atomic increment and decrement each, per destination).
///
/// Consecutive copied bytes coalesce into one part; a part is cut from the scratch buffer
/// (`split().freeze()`, no copy) only when a shared part follows it.
#[derive(Debug, Default)]
pub struct OutBuf {
    /// Parts in write order. The scratch tail (not yet cut into a part) comes after them.
    parts: VecDeque<Part>,
    /// Copied bytes not yet cut into a part; always the last bytes in the queue.
    scratch: BytesMut,
    /// Total bytes pending (parts plus scratch tail).
    len: usize,
    /// Slices the parts list at most (see [`OutBuf::slice_bound`]).
    part_slices: usize,
}

#[derive(Debug)]
enum Part {
    /// Bytes written as they are.
    Flat(Bytes),
    /// One message: first chunk header, then the payload cut into chunks with a continuation
    /// header before each chunk after the first.
    Chunked(Chunked),
}

#[derive(Debug)]
struct Chunked {
    first: HeaderBytes,
    continuation: HeaderBytes,
    payload: Bytes,
    chunk_size: usize,
    /// Bytes of this part already written.
    written: usize,
    /// Bytes of this part in all (headers included).
    len: usize,
}

impl Chunked {
    fn remaining(&self) -> usize {
        self.len - self.written
    }

    /// Calls `emit` with each unwritten slice in order until it returns false (its
    /// destination is full); returns false in that case.
    fn for_each_slice<'a>(&'a self, mut emit: impl FnMut(&'a [u8]) -> bool) -> bool {
        let mut skip = self.written;
        let mut visit = |segment: &'a [u8]| -> bool {
            if skip >= segment.len() {
                skip -= segment.len();
                return true;
            }
            let rest = segment.get(skip..).unwrap_or_default();
            skip = 0;
            emit(rest)
        };
        if !visit(self.first.as_slice()) {
            return false;
        }
        for (index, chunk) in self.payload.chunks(self.chunk_size).enumerate() {
            if index > 0 && !visit(self.continuation.as_slice()) {
                return false;
            }
            if !visit(chunk) {
                return false;
            }
        }
        true
    }
}

impl Part {
    /// Slices the whole part lists: a flat part one; a chunked part its first header
    /// and each chunk, with a continuation header before every chunk after the first.
    fn slices(&self) -> usize {
        match self {
            Part::Flat(_) => 1,
            Part::Chunked(chunked) => 2 * chunked.payload.len().div_ceil(chunked.chunk_size),
        }
    }

    fn remaining(&self) -> usize {
        match self {
            Part::Flat(bytes) => bytes.len(),
            Part::Chunked(chunked) => chunked.remaining(),
        }
    }

    /// Drops the first `n` bytes; `n` is less than [`remaining`](Part::remaining).
    fn advance(&mut self, n: usize) {
        match self {
            Part::Flat(bytes) => bytes.advance(n),
            Part::Chunked(chunked) => chunked.written += n,
        }
    }
}

/// Payloads up to this size are copied next to their header rather than shared: a copy of a
/// few dozen bytes (control messages, commands) is cheaper than a part of their own.
const COPY_PAYLOAD_MAX: usize = 64;

impl OutBuf {
    /// Creates an empty queue; buffers are allocated on first use and then reused.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a copy of `bytes` (small control data such as chunk headers or protocol control
    /// messages, where sharing would cost more than copying).
    pub fn push_copy(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.scratch.capacity() - self.scratch.len() < bytes.len() {
            // Reserving a whole block lets BytesMut reclaim its old block when every part cut
            // from it has been written, instead of allocating a small buffer each time.
            self.scratch.reserve(bytes.len().max(SCRATCH_BLOCK));
        }
        self.scratch.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Appends `bytes` without copying (typically a slice of a shared message payload).
    pub fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.cut_scratch();
        self.len += bytes.len();
        self.push_part(Part::Flat(bytes));
    }

    /// Appends one chunked message: `first` (the first chunk's header), then `payload` in
    /// pieces of `chunk_size` bytes with `continuation` before every piece after the first.
    /// The payload is shared, not copied (small ones excepted).
    pub(super) fn push_chunked(
        &mut self,
        first: HeaderBytes,
        payload: &Bytes,
        chunk_size: usize,
        continuation: HeaderBytes,
    ) {
        let chunk_size = chunk_size.max(1);
        if payload.len() <= COPY_PAYLOAD_MAX.min(chunk_size) {
            self.push_copy(first.as_slice());
            self.push_copy(payload);
            return;
        }
        let chunks = payload.len().div_ceil(chunk_size);
        let len =
            first.as_slice().len() + payload.len() + (chunks - 1) * continuation.as_slice().len();
        self.cut_scratch();
        self.len += len;
        self.push_part(Part::Chunked(Chunked {
            first,
            continuation,
            payload: payload.clone(),
            chunk_size,
            written: 0,
            len,
        }));
    }

    /// At least as many slices as [`OutBuf::io_slices`] would list now: what a
    /// writer sizes its slice array by, so that the common write (a message or
    /// two) does not fill an array sized for the largest.
    pub fn slice_bound(&self) -> usize {
        self.part_slices + usize::from(!self.scratch.is_empty())
    }

    /// True when nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Fills `dst` with the pending bytes in order, for `write_vectored`; returns how many
    /// slices were filled (fewer than pending slices when `dst` is short, so callers may pass
    /// a fixed array such as 64 slices and loop).
    pub fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        let mut emit = |slice: &'a [u8]| -> bool {
            if slice.is_empty() {
                return true;
            }
            match dst.get_mut(filled) {
                Some(slot) => {
                    *slot = IoSlice::new(slice);
                    filled += 1;
                    true
                }
                None => false,
            }
        };
        for part in &self.parts {
            let more = match part {
                Part::Flat(bytes) => emit(bytes),
                Part::Chunked(chunked) => chunked.for_each_slice(&mut emit),
            };
            if !more {
                return filled;
            }
        }
        emit(&self.scratch);
        filled
    }

    /// Drops the first `n` pending bytes after a (possibly partial) write of `n` bytes. Shared
    /// parts are released (their reference dropped) as soon as they are fully written. `n`
    /// larger than [`len`](OutBuf::len) empties the queue.
    pub fn advance(&mut self, n: usize) {
        let mut n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.parts.front_mut() else {
                // Only the scratch tail is left, and len accounting guarantees it is long enough.
                self.scratch.advance(n.min(self.scratch.len()));
                return;
            };
            let remaining = front.remaining();
            if remaining <= n {
                n -= remaining;
                self.part_slices -= front.slices();
                self.parts.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// Moves the copied bytes gathered so far into their own part, so a shared part can follow.
    fn cut_scratch(&mut self) {
        if !self.scratch.is_empty() {
            let copied = self.scratch.split().freeze();
            self.push_part(Part::Flat(copied));
        }
    }

    fn push_part(&mut self, part: Part) {
        self.part_slices += part.slices();
        self.parts.push_back(part);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A chunk header holding `bytes` (at most 18).
    fn header(bytes: &[u8]) -> HeaderBytes {
        let mut header = HeaderBytes::new();
        header.push(bytes);
        assert_eq!(header.as_slice(), bytes);
        header
    }

    /// Everything pending, in order, without consuming it.
    fn pending(out: &OutBuf) -> Vec<u8> {
        let mut slices = vec![IoSlice::new(&[]); 1 << 13];
        let count = out.io_slices(&mut slices);
        slices[..count]
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect()
    }

    #[test]
    fn parts_keep_their_order_and_copies_coalesce() {
        let mut out = OutBuf::new();
        out.push_copy(b"ab");
        out.push_copy(b"cd");
        out.push_shared(Bytes::from_static(b"EFG"));
        out.push_shared(Bytes::new());
        out.push_copy(b"");
        out.push_copy(b"h");
        assert_eq!(out.len(), 8);
        let mut slices = [IoSlice::new(&[]); 8];
        let count = out.io_slices(&mut slices);
        let parts: Vec<&[u8]> = slices[..count].iter().map(|s| &**s).collect();
        assert_eq!(parts, vec![&b"abcd"[..], b"EFG", b"h"]);
    }

    #[test]
    fn io_slices_stops_at_the_destination_length() {
        let mut out = OutBuf::new();
        for _ in 0..5 {
            out.push_copy(b"h");
            out.push_shared(Bytes::from_static(b"payload"));
        }
        let mut slices = [IoSlice::new(&[]); 3];
        assert_eq!(out.io_slices(&mut slices), 3);
        assert_eq!(&*slices[2], b"h");
        assert_eq!(out.io_slices(&mut []), 0);
    }

    #[test]
    fn partial_writes_advance_inside_parts() {
        let mut out = OutBuf::new();
        out.push_copy(b"abc");
        out.push_shared(Bytes::from_static(b"DEFG"));
        out.push_copy(b"hij");
        out.advance(2); // inside the first copied part
        assert_eq!(pending(&out), b"cDEFGhij");
        out.advance(3); // across a part boundary
        assert_eq!(pending(&out), b"FGhij");
        out.advance(3); // into the scratch tail
        assert_eq!(pending(&out), b"ij");
        out.push_copy(b"k");
        assert_eq!(pending(&out), b"ijk");
        out.advance(100); // more than pending empties it
        assert!(out.is_empty());
        assert_eq!(out.len(), 0);
        assert_eq!(pending(&out), b"");
        out.push_copy(b"again");
        assert_eq!(pending(&out), b"again");
    }

    #[test]
    fn a_chunked_message_shares_its_payload_and_interleaves_headers() {
        let payload = Bytes::from((0..=255u8).cycle().take(1000).collect::<Vec<u8>>());
        let mut out = OutBuf::new();
        out.push_chunked(header(b"FIRST"), &payload, 400, header(b"C"));
        assert_eq!(out.len(), 5 + 1000 + 2);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(out.io_slices(&mut slices), 6);
        assert_eq!(&*slices[0], b"FIRST");
        assert_eq!(slices[1].as_ptr(), payload.as_ptr());
        assert_eq!(slices[1].len(), 400);
        assert_eq!(&*slices[2], b"C");
        assert_eq!(slices[5].len(), 200);
        // Written up to inside the second piece: the rest starts there.
        out.advance(5 + 400 + 1 + 10);
        let mut rest = [IoSlice::new(&[]); 8];
        assert_eq!(out.io_slices(&mut rest), 3);
        assert_eq!(rest[0].as_ptr(), payload.as_ptr().wrapping_add(410));
        assert_eq!(&*rest[1], b"C");
    }

    #[test]
    fn shared_parts_are_not_copied() {
        let payload = Bytes::from(vec![7; 1000]);
        let mut out = OutBuf::new();
        out.push_copy(b"hdr");
        out.push_shared(payload.slice(10..500));
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(out.io_slices(&mut slices), 2);
        assert_eq!(slices[1].as_ptr(), payload.as_ptr().wrapping_add(10));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Copy(Vec<u8>),
        Shared(Vec<u8>),
        Chunked {
            first: Vec<u8>,
            payload: Vec<u8>,
            chunk_size: usize,
            continuation: Vec<u8>,
        },
        Write(usize),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40).prop_map(Op::Copy),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(Op::Shared),
            (
                prop::collection::vec(any::<u8>(), 0..=18),
                prop::collection::vec(any::<u8>(), 0..300),
                // From 8: a part is then at most 77 slices, so `pending` sees them all.
                8usize..100,
                prop::collection::vec(any::<u8>(), 0..=18),
            )
                .prop_map(|(first, payload, chunk_size, continuation)| Op::Chunked {
                    first,
                    payload,
                    chunk_size,
                    continuation,
                }),
            (0usize..400).prop_map(Op::Write),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_a_byte_queue(ops in prop::collection::vec(arb_op(), 0..60)) {
            let mut out = OutBuf::new();
            let mut model: std::collections::VecDeque<u8> = Default::default();
            for op in ops {
                match op {
                    Op::Copy(bytes) => {
                        out.push_copy(&bytes);
                        model.extend(bytes);
                    }
                    Op::Shared(bytes) => {
                        model.extend(bytes.iter().copied());
                        out.push_shared(Bytes::from(bytes));
                    }
                    Op::Chunked { first, payload, chunk_size, continuation } => {
                        model.extend(first.iter().copied());
                        for (index, piece) in payload.chunks(chunk_size.max(1)).enumerate() {
                            if index > 0 {
                                model.extend(continuation.iter().copied());
                            }
                            model.extend(piece.iter().copied());
                        }
                        out.push_chunked(
                            header(&first),
                            &Bytes::from(payload),
                            chunk_size,
                            header(&continuation),
                        );
                    }
                    Op::Write(n) => {
                        out.advance(n);
                        model.drain(..n.min(model.len()));
                    }
                }
                prop_assert_eq!(out.len(), model.len());
                prop_assert_eq!(out.is_empty(), model.is_empty());
                prop_assert_eq!(pending(&out), model.iter().copied().collect::<Vec<u8>>());
                // A short slice list is a prefix of the whole.
                let mut few = [IoSlice::new(&[]); 3];
                let count = out.io_slices(&mut few);
                let prefix: Vec<u8> = few[..count].iter().flat_map(|s| s.iter().copied()).collect();
                prop_assert!(pending(&out).starts_with(&prefix));
                // The bound a writer sizes its slice array by is never short.
                let mut all = vec![IoSlice::new(&[]); 1 << 13];
                prop_assert!(out.io_slices(&mut all) <= out.slice_bound());
            }
        }
    }
}
