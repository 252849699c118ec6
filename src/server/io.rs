//! The thin I/O edge: writing an [`OutBuf`] with vectored writes.
//!
//! Chunk headers and shared payload slices go to the socket in one `writev`, so a
//! payload is never copied into a per-connection buffer.

use std::io::IoSlice;

use tokio::io::{AsyncWrite, AsyncWriteExt};

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
    while !out.is_empty() {
        let n = {
            let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
            let count = out.io_slices(&mut slices);
            io.write_vectored(&slices[..count]).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        out.advance(n);
        written += n as u64;
    }
    io.flush().await?;
    Ok(written)
}
