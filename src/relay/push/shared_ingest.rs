//! The live connection to the ingest (socket + client session), shared under a lock
//! by the destination's task and the publisher's direct-write path.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

use super::log_event;
use crate::hub::{DirectSink, Packet, PacketKind};
use crate::relay::status::DestinationStatus;
use crate::rtmp::client::{ClientError, ClientSession};
use crate::timestamp::Rebaser;
use crate::transport::{ReadPolicy, poll_write_out};

/// One live push connection (the ingest's socket and its [`ClientSession`]), shared
/// by the destination's task and, while the destination keeps up, the publisher's
/// task, which writes each batch to it directly as the queue's [`DirectSink`]. The
/// lock is only ever held for one poll or one non-waiting write, never across an
/// `.await`.
pub(super) struct SharedIngest<S> {
    state: Mutex<IngestState<S>>,
    status: Arc<DestinationStatus>,
}

struct IngestState<S> {
    io: S,
    session: ClientSession,
    rebaser: Rebaser,
}

impl<S> std::fmt::Debug for SharedIngest<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedIngest").finish_non_exhaustive()
    }
}

impl<S> SharedIngest<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(super) fn new(io: S, session: ClientSession, status: Arc<DestinationStatus>) -> Self {
        Self {
            state: Mutex::new(IngestState {
                io,
                session,
                rebaser: Rebaser::new(),
            }),
            status,
        }
    }

    fn lock(&self) -> MutexGuard<'_, IngestState<S>> {
        // Nothing under this lock can be left half-done by a panic in a way that
        // matters more than the connection; carry on rather than cascade.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Encodes packets: shared payloads, chunk headers only, rebased timestamps.
    pub(super) fn encode(&self, packets: impl Iterator<Item = Packet>) {
        let mut state = self.lock();
        for packet in packets {
            state.encode(&packet);
        }
    }

    /// Writes what the session holds, counting what went out.
    pub(super) fn poll_send(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut written = 0;
        let sent = self.lock().poll_write(&mut written, cx);
        self.count(written);
        sent
    }

    fn count(&self, written: u64) {
        if written > 0 {
            self.status.add_bytes_out(written);
        }
    }

    /// Reads what the ingest sent into `buf`, growing it as [`ReadPolicy::PUSH`] says.
    pub(super) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<std::io::Result<usize>> {
        ReadPolicy::PUSH.poll_read(&mut self.lock().io, buf, cx)
    }

    pub(super) fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.lock().io).poll_shutdown(cx)
    }

    /// Queues FCUnpublish + deleteStream for the next send.
    pub(super) fn unpublish(&self) {
        self.lock().session.unpublish();
    }

    /// Handles what the ingest sent (acknowledgements, pings, status); replies it
    /// needs are queued in the session for the next send.
    pub(super) fn on_replies(&self, buf: &mut BytesMut) -> Result<(), ClientError> {
        let mut state = self.lock();
        while let Some(event) = state.session.poll(buf)? {
            log_event(&event);
        }
        Ok(())
    }
}

impl<S: AsyncWrite + Unpin> IngestState<S> {
    fn poll_write(&mut self, written: &mut u64, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        poll_write_out(&mut self.io, self.session.out(), written, cx)
    }
}

impl<S> IngestState<S> {
    fn encode(&mut self, packet: &Packet) {
        let timestamp = packet.stamp(&mut self.rebaser);
        match packet.kind {
            PacketKind::Metadata => self.session.send_metadata(timestamp, &packet.payload),
            _ => self
                .session
                .send_media(packet.type_id(), timestamp, &packet.payload),
        }
    }
}

impl<S> DirectSink for SharedIngest<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn send_now(&self, packets: &mut VecDeque<Packet>) -> bool {
        let mut written = 0;
        let sent = {
            let mut state = self.lock();
            for packet in packets.drain(..) {
                state.encode(&packet);
            }
            poll_now(|cx| state.poll_write(&mut written, cx))
        };
        self.count(written);
        matches!(sent, Poll::Ready(Ok(())))
    }
}

/// Polls `poll` once with a no-op waker and outside tokio's per-task budget: for a
/// write that must not wait. The publisher's task writes to many ingests per batch, and
/// a spent budget must not pass for a slow ingest.
fn poll_now<T>(poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
    let mut cx = Context::from_waker(Waker::noop());
    std::pin::pin!(tokio::task::unconstrained(poll_fn(poll))).poll(&mut cx)
}
