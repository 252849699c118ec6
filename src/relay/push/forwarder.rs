//! The live phase of a push: packets from the hub to the ingest, replies from the
//! ingest, and a clean unpublish at the end.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::shared_ingest::SharedIngest;
use super::{Ended, PushError};
use crate::hub::{DirectSink, Packet, Subscriber, SubscriberQueue};
use crate::transport::within;

/// How long a clean unpublish may take before the connection is dropped anyway.
const UNPUBLISH_GRACE: Duration = Duration::from_secs(2);

/// The live phase: packets from the hub to the ingest, replies from the ingest.
///
/// The connection sits in a [`SharedIngest`] shared with the hub. While this destination
/// keeps up, the publisher's task writes each batch to it directly (the connection is the
/// queue's [`DirectSink`]), so a destination costs no task wake-up per packet; this
/// task wakes only for the ingest's replies, a stop, the stream's end, or a write
/// that could not finish at once. It then finishes that write under its stall
/// timeout and takes packets from its queue (under the hub's drop policy) until it
/// has caught up, and hands the connection back.
pub(super) struct Forwarder<S> {
    ingest: Arc<SharedIngest<S>>,
    buf: BytesMut,
    batch: Vec<Packet>,
    stall_timeout: Duration,
}

impl<S> Forwarder<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Takes over a connection that has just started publishing; `buf` holds
    /// whatever the ingest sent after accepting the publish.
    pub(super) fn new(ingest: SharedIngest<S>, buf: BytesMut, stall_timeout: Duration) -> Self {
        Self {
            ingest: Arc::new(ingest),
            buf,
            batch: Vec::with_capacity(256),
            stall_timeout,
        }
    }

    pub(super) async fn run(
        mut self,
        subscriber: &Subscriber,
        stop: &CancellationToken,
    ) -> Result<Ended, PushError> {
        let queue = subscriber.queue();
        // However this ends, the publisher stops writing here and lets go of the connection
        // (and so of the socket).
        let _disarm = Disarm(&queue);
        let sink: Arc<dyn DirectSink> = self.ingest.clone();
        // One wait for the whole connection: a fresh one per loop would register
        // and unregister a waiter (two locks) every time.
        let stopped = stop.cancelled();
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                biased;
                () = &mut stopped => {
                    queue.disarm();
                    self.unpublish().await;
                    return Ok(Ended::Stopped);
                }
                read = poll_fn(|cx| self.ingest.poll_read(cx, &mut self.buf)) => {
                    if read? == 0 {
                        return Err(PushError::Closed);
                    }
                    self.ingest.on_replies(&mut self.buf)?;
                }
                more = subscriber.recv_batch(&mut self.batch) => {
                    if !more {
                        self.unpublish().await;
                        return Ok(Ended::StreamEnded);
                    }
                    self.ingest.encode(self.batch.drain(..));
                }
            }
            self.flush().await?;
            // Caught up: the next batches go out from the publisher's task.
            queue.arm(Arc::clone(&sink));
        }
    }

    /// Sends what the session holds. Most sends finish at once and need no timer; one
    /// that has to wait for the ingest gets the stall timeout.
    async fn flush(&self) -> Result<(), PushError> {
        Ok(within(self.stall_timeout, |cx| self.ingest.poll_send(cx)).await?)
    }

    /// FCUnpublish + deleteStream, then close: how platforms tell an end from a drop.
    async fn unpublish(&self) {
        self.ingest.unpublish();
        let _ = timeout(UNPUBLISH_GRACE, async {
            let _ = poll_fn(|cx| self.ingest.poll_send(cx)).await;
            let _ = poll_fn(|cx| self.ingest.poll_shutdown(cx)).await;
        })
        .await;
    }
}

/// Takes delivery back from the publisher's task when the forwarder ends.
struct Disarm<'a>(&'a SubscriberQueue);

impl Drop for Disarm<'_> {
    fn drop(&mut self) {
        self.0.disarm();
    }
}
