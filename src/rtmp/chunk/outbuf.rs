//! Queue of bytes waiting to be written to one connection, shaped for `write_vectored`.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Scratch space reserved at a time for copied bytes. Chunk headers are 1-18 bytes, so one
/// block holds hundreds of them; once every part cut from a block has been written, `BytesMut`
/// reclaims the block instead of allocating, which keeps the steady state allocation-free.
const SCRATCH_BLOCK: usize = 4096;

/// Queue of bytes to write: small headers copied into a reusable scratch buffer, payload slices
/// shared (`Bytes::slice`: a reference count, no copy).
///
/// Why: a relay sends the same media payload to many connections; only the few header bytes
/// differ. Keeping payloads as shared parts and handing the kernel a list of slices
/// ([`OutBuf::io_slices`]) means one payload allocation serves every destination.
///
/// Consecutive copied bytes coalesce into one part; a part is cut from the scratch buffer
/// (`split().freeze()`, no copy) only when a shared part follows it.
#[derive(Debug, Default)]
pub struct OutBuf {
    /// Parts in write order. The scratch tail (not yet cut into a part) comes after them.
    parts: VecDeque<Bytes>,
    /// Copied bytes not yet cut into a part; always the last bytes in the queue.
    scratch: BytesMut,
    /// Total bytes pending (parts plus scratch tail).
    len: usize,
}

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
        self.parts.push_back(bytes);
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
    /// slices were filled (fewer than pending parts when `dst` is short, so callers may pass a
    /// fixed array such as 64 slices and loop).
    pub fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let pending = self
            .parts
            .iter()
            .map(|part| part.as_ref())
            .chain(std::iter::once(self.scratch.as_ref()))
            .filter(|slice| !slice.is_empty());
        let mut filled = 0;
        for (slot, slice) in dst.iter_mut().zip(pending) {
            *slot = IoSlice::new(slice);
            filled += 1;
        }
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
            if front.len() <= n {
                n -= front.len();
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
            self.parts.push_back(self.scratch.split().freeze());
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Everything pending, in order, without consuming it.
    fn pending(out: &OutBuf) -> Vec<u8> {
        let mut slices = vec![IoSlice::new(&[]); 1024];
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
        Write(usize),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40).prop_map(Op::Copy),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(Op::Shared),
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
                    Op::Write(n) => {
                        out.advance(n);
                        model.drain(..n.min(model.len()));
                    }
                }
                prop_assert_eq!(out.len(), model.len());
                prop_assert_eq!(out.is_empty(), model.is_empty());
                prop_assert_eq!(pending(&out), model.iter().copied().collect::<Vec<u8>>());
            }
        }
    }
}
