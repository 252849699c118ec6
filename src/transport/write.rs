//! Writing an [`OutBuf`] with vectored writes.
//!
//! Chunk headers and shared payload slices go to the socket in one `writev`, so a
//! payload is never copied into a per-connection buffer.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use std::time::Duration;

use tokio::io::AsyncWrite;

use crate::rtmp::chunk::OutBuf;

/// Slices handed to one `writev`; Linux's IOV_MAX is 1024, and 64 already amortises
/// the syscall over many chunks.
const MAX_IO_SLICES: usize = 64;
/// The slice array used when what is queued lists no more than this: a typical
/// write (an inter frame of a few chunks and an audio message) fits, and filling
/// an array of 64 empty slices first cost more than listing the slices did
/// (callgrind, BENCHMARKS.md).
const FEW_IO_SLICES: usize = 24;

/// Writes everything queued in `out`, then flushes the transport (TLS needs it).
pub async fn write_out<W: AsyncWrite + Unpin>(
    io: &mut W,
    out: &mut OutBuf,
) -> std::io::Result<u64> {
    let mut written = 0u64;
    std::future::poll_fn(|cx| poll_write_out(io, out, &mut written, cx)).await?;
    Ok(written)
}

/// The poll form of [`write_out`], for callers that share the transport under a
/// lock (a lock cannot be held across an `.await`) or that must not wait at all
/// (polled once with a no-op waker). Adds what it wrote to `written` as it goes, so
/// a `Pending` still accounts for the bytes that did go out.
pub fn poll_write_out<W: AsyncWrite + Unpin>(
    io: &mut W,
    out: &mut OutBuf,
    written: &mut u64,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    while !out.is_empty() {
        let n = if out.slice_bound() <= FEW_IO_SLICES {
            ready!(poll_write_slices::<W, FEW_IO_SLICES>(io, out, cx))?
        } else {
            ready!(poll_write_slices::<W, MAX_IO_SLICES>(io, out, cx))?
        };
        if n == 0 {
            return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
        }
        out.advance(n);
        *written += n as u64;
    }
    Pin::new(io).poll_flush(cx)
}

/// One `writev` of at most `N` of the slices `out` lists.
fn poll_write_slices<W: AsyncWrite + Unpin, const N: usize>(
    io: &mut W,
    out: &OutBuf,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    let mut slices = [IoSlice::new(&[]); N];
    let count = out.io_slices(&mut slices);
    Pin::new(io).poll_write_vectored(cx, &slices[..count])
}

/// A write that did not finish within its deadline, or failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The peer stopped reading: the write could not finish within the limit.
    #[error("peer did not read for {0:?}")]
    Stalled(Duration),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Runs a write with a stall deadline: the one rule both directions use, so that a
/// peer that stops reading costs a bounded wait and then its connection, never a
/// task blocked for good. The write is polled once before any timer is set, since
/// most writes finish at once and need none.
pub async fn within<T>(
    limit: Duration,
    mut write: impl FnMut(&mut Context<'_>) -> Poll<std::io::Result<T>>,
) -> Result<T, WriteError> {
    {
        // Scoped: a `Context` is not `Send`, and held across the `.await` below it
        // would make every caller's future `!Send` (no task could be spawned with it).
        let mut once = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(done) = write(&mut once) {
            return Ok(done?);
        }
    }
    match tokio::time::timeout(limit, std::future::poll_fn(write)).await {
        Ok(done) => Ok(done?),
        Err(_) => Err(WriteError::Stalled(limit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_peer_that_does_not_read_stalls_the_write_after_the_limit() {
        let (mut near, _far) = tokio::io::duplex(16);
        let mut out = crate::rtmp::chunk::OutBuf::default();
        out.push_shared(bytes::Bytes::from_static(&[7; 64]));
        let mut written = 0;
        let limit = Duration::from_millis(50);
        let result = within(limit, |cx| {
            poll_write_out(&mut near, &mut out, &mut written, cx)
        })
        .await;
        assert!(matches!(result, Err(WriteError::Stalled(l)) if l == limit));
        assert_eq!(written, 16, "what fitted went out and is counted");
    }

    #[tokio::test]
    async fn a_write_that_fits_finishes_without_a_timer() {
        let (mut near, _far) = tokio::io::duplex(1024);
        let mut out = crate::rtmp::chunk::OutBuf::default();
        out.push_shared(bytes::Bytes::from_static(&[7; 64]));
        let mut written = 0;
        within(Duration::ZERO, |cx| {
            poll_write_out(&mut near, &mut out, &mut written, cx)
        })
        .await
        .unwrap();
        assert_eq!(written, 64);
    }
}
