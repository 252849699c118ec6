//! Reading from a socket into a session's input buffer: one growth policy for the
//! server's connections and the relay's pushes.
//!
//! The buffer is read into in place and the session splits complete messages off its
//! front, so the room left behind the data shrinks with every read. It is grown by a
//! whole block once less than a quarter of one is free: a read never fills only a
//! sliver (one syscall per few bytes), and the allocation happens once per block,
//! not once per read.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How a connection's input buffer grows: by `block` bytes whenever less than a
/// quarter of a block is free behind the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPolicy {
    block: usize,
}

impl ReadPolicy {
    /// For a server connection: an encoder sends megabits per second, and a larger
    /// block means fewer reads per keyframe.
    pub const CONNECTION: Self = Self::new(64 * 1024);
    /// For a push to an ingest: what comes back is a few small replies and
    /// acknowledgements.
    pub const PUSH: Self = Self::new(16 * 1024);

    /// A policy that grows the buffer `block` bytes at a time.
    pub const fn new(block: usize) -> Self {
        Self { block }
    }

    /// The size of a fresh buffer.
    pub fn buffer(self) -> BytesMut {
        BytesMut::with_capacity(self.block)
    }

    /// Makes sure at least a quarter of a block is free behind the data.
    pub fn make_room(self, buf: &mut BytesMut) {
        if buf.capacity() - buf.len() < self.block / 4 {
            buf.reserve(self.block);
        }
    }

    /// Reads once into `buf` after making room; `Ok(0)` means the peer closed.
    pub async fn read<S: AsyncRead + Unpin>(
        self,
        io: &mut S,
        buf: &mut BytesMut,
    ) -> std::io::Result<usize> {
        self.make_room(buf);
        io.read_buf(buf).await
    }

    /// The poll form of [`read`](Self::read), for a transport shared under a lock.
    pub fn poll_read<S: AsyncRead + Unpin>(
        self,
        io: &mut S,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        self.make_room(buf);
        tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_a_block_only_when_less_than_a_quarter_is_free() {
        let policy = ReadPolicy::new(1024);
        let mut buf = policy.buffer();
        buf.extend_from_slice(&[0; 700]);
        policy.make_room(&mut buf);
        assert!(buf.capacity() < 2048, "324 free of 1024: no growth");
        buf.extend_from_slice(&[0; 100]);
        policy.make_room(&mut buf);
        assert!(
            buf.capacity() - buf.len() >= 1024,
            "224 free: one more block"
        );
    }

    #[tokio::test]
    async fn reads_what_the_peer_sent_and_zero_at_its_close() {
        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b"hello")
            .await
            .unwrap();
        drop(a);
        let mut buf = BytesMut::new();
        assert_eq!(ReadPolicy::PUSH.read(&mut b, &mut buf).await.unwrap(), 5);
        assert_eq!(&buf[..], b"hello");
        assert_eq!(ReadPolicy::PUSH.read(&mut b, &mut buf).await.unwrap(), 0);
    }
}
