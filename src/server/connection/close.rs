//! A clean close: the write half shut down (over TLS, close_notify), then a short
//! linger that reads what the peer still sends, so its last messages are not
//! answered with a reset.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::transport::ReadPolicy;

/// How long a clean close may take to flush (TLS close_notify) before the socket
/// is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a cleanly ended connection stays half-closed, reading what the peer
/// still sends, before it is closed anyway. A player told the stream ended answers
/// with deleteStream and an acknowledgement: closing before they arrive makes the
/// kernel answer them with a reset, and librtmp players take a reset as a network
/// error and reconnect at once.
const LINGER: Duration = Duration::from_secs(3);

/// Ends a connection that ended cleanly: so that the peer sees an orderly close
/// rather than a truncation. Bounded: the peer may not read, or not close. On
/// shutdown the linger is skipped.
pub(super) async fn close<S>(io: &mut S, buf: &mut BytesMut, shutdown: &CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = timeout(CLOSE_TIMEOUT, io.shutdown()).await;
    if !shutdown.is_cancelled() {
        linger(io, buf, shutdown).await;
    }
}

/// After the write half is shut down, reads (and ignores) what the peer still
/// sends until it closes too, for at most [`LINGER`], so that its last messages
/// are not answered with a reset.
async fn linger<S>(io: &mut S, buf: &mut BytesMut, shutdown: &CancellationToken)
where
    S: AsyncRead + Unpin,
{
    let drain = async {
        loop {
            buf.clear();
            match ReadPolicy::CONNECTION.read(io, buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        _ = timeout(LINGER, drain) => {}
        () = shutdown.cancelled() => {}
    }
}
