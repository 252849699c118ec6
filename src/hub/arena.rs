//! Where a publisher's small media payloads are copied when they enter the hub:
//! one after another into shared blocks, rather than each into an allocation
//! of its own.
//!
//! A payload that arrived in one chunk is a slice of the block its connection
//! read it into, and is copied before the hub keeps it (see
//! [`super::packet::Packet::own_small_payload`] for why). Copied into a `Vec`,
//! each such payload cost two allocations: its own buffer, and the shared
//! reference count `Bytes` allocates at its first clone. Copied here, it costs
//! neither: the block's reference count is allocated once per block, and every
//! clone of every payload in it is a count increment.
//!
//! What this holds beyond the payload bytes the hub's limits count: a block
//! lives while any payload in it does, and the hub keeps and drops a stream's
//! media in arrival order (GOP cache, subscriber queues), so that is about one
//! block at each end of what is kept. Configuration (sequence headers,
//! metadata), which a stream may keep for hours, is never put here, so that it
//! never holds a block alone.

use bytes::{Bytes, BytesMut};

/// Size of a block: large enough that a stream of audio and small frames
/// allocates rarely (one block per ~64 KiB of them), small enough that the
/// block a stream holds at each end of its GOP cache costs little.
pub const BLOCK: usize = 64 * 1024;

/// A publisher's current block.
#[derive(Debug, Default)]
pub struct PayloadArena {
    block: BytesMut,
}

impl PayloadArena {
    /// `payload` copied into the current block (a new one when it does not fit
    /// in what is left), as a `Bytes` that shares the block.
    pub fn copy(&mut self, payload: &[u8]) -> Bytes {
        if self.block.capacity() - self.block.len() < payload.len() {
            self.block = BytesMut::with_capacity(BLOCK.max(payload.len()));
        }
        self.block.extend_from_slice(payload);
        self.block.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_share_a_block_until_it_is_full_and_keep_their_bytes() {
        let mut arena = PayloadArena::default();
        let first = arena.copy(b"audio frame");
        let second = arena.copy(&[7; 1000]);
        assert_eq!(&first[..], b"audio frame");
        assert_eq!(&second[..], &[7; 1000][..]);
        // Contiguous in one block.
        assert_eq!(first.as_ptr().wrapping_add(first.len()), second.as_ptr());
        // A payload that does not fit starts a new block; the old payloads stay.
        let big = arena.copy(&vec![9; BLOCK - 500]);
        assert_ne!(second.as_ptr().wrapping_add(second.len()), big.as_ptr());
        assert_eq!(&second[..], &[7; 1000][..]);
        assert!(big.iter().all(|&b| b == 9));
        // A clone is the same bytes, not a copy.
        assert_eq!(big.clone().as_ptr(), big.as_ptr());
    }

    #[test]
    fn a_payload_larger_than_a_block_gets_a_block_of_its_size() {
        let mut arena = PayloadArena::default();
        let huge = arena.copy(&vec![1; BLOCK * 2]);
        assert_eq!(huge.len(), BLOCK * 2);
        assert_eq!(&arena.copy(b"next")[..], b"next");
    }
}
