//! Writing an [`OutBuf`] with vectored writes.
//!
//! Chunk headers and shared payload slices go to the socket in one `writev`, so a
//! payload is never copied into a per-connection buffer.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;

use crate::rtmp::chunk::OutBuf;

/// Slices handed to one `writev`; Linux's IOV_MAX is 1024, and 64 already amortises
/// the syscall over many chunks.
const MAX_IO_SLICES: usize = 64;

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
        let n = {
            let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
            let count = out.io_slices(&mut slices);
            ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]))?
        };
        if n == 0 {
            return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
        }
        out.advance(n);
        *written += n as u64;
    }
    Pin::new(io).poll_flush(cx)
}
