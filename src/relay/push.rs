//! One destination's life: connect, publish, forward the stream, and on failure
//! reconnect with backoff, for as long as the stream is live.
//!
//! Each attempt subscribes to the hub before connecting, so the new connection
//! starts with the metadata, the sequence headers and the GOP cache from a keyframe,
//! and whatever arrives while it connects waits in its bounded queue. Timestamps are
//! rebased per connection to start at 0. A slow ingest fills only its own queue.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

use super::RelayContext;
use super::destination::DestinationSpec;
use super::status::{DestinationStatus, State};
use super::tls::TlsError;
use crate::backoff::Backoff;
use crate::hub::{
    DirectSink, Hub, Packet, PacketKind, Subscriber, SubscriberKind, SubscriberQueue,
};
use crate::mask::Masked;
use crate::rtmp::client::{ClientConfig, ClientError, ClientEvent, ClientSession};
use crate::rtmp::handshake::PACKET_SIZE;
use crate::stream_name::StreamName;
use crate::timestamp::Rebaser;
use crate::transcode::encoder;
use crate::transport::{poll_write_out, write_out};
use tracing::Instrument;

/// How often a re-encoded destination checks whether its encoder has output yet.
const ENCODER_POLL: Duration = Duration::from_millis(100);
/// Read buffer growth step for the (small) traffic ingests send back.
const READ_CHUNK: usize = 16 * 1024;
/// How long a clean unpublish may take before the connection is dropped anyway.
const UNPUBLISH_GRACE: Duration = Duration::from_secs(2);
/// What the client's handshake sends (C0+C1, then C2): the first bytes of every
/// connection, which `bytes_out` has never counted.
const HANDSHAKE_OUT: u64 = 1 + 2 * PACKET_SIZE as u64;

/// Why one connection attempt ended.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// TCP connect failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// TLS failed (certificate, SNI...).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The ingest refused or broke the session (its handshake among it), or did not
    /// accept the publish in time.
    #[error(transparent)]
    Session(#[from] ClientError),
    /// The TCP connect or the TLS handshake took longer than the whole setup may.
    #[error("not publishing after {0:?}")]
    Timeout(Duration),
    /// The ingest stopped reading.
    #[error("ingest did not read for {0:?}")]
    Stalled(Duration),
    /// The ingest closed the connection.
    #[error("connection closed by the ingest")]
    Closed,
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl PushError {
    /// Whether retrying soon is pointless (the ingest refused the key or app).
    pub fn is_permanent(&self) -> bool {
        match self {
            PushError::Session(e) => e.is_permanent(),
            _ => false,
        }
    }
}

/// How an attempt ended without error.
enum Ended {
    /// The publisher stopped; the ingest got a clean unpublish.
    StreamEnded,
    /// prism is stopping or the destination was removed; clean unpublish sent.
    Stopped,
}

/// Runs one destination until the stream ends or `stop` is cancelled.
///
/// `stop` (prism shuts down, the destination is removed) ends a live connection at
/// once with a clean unpublish. `ended` (the publisher left) only cuts short a
/// connect or a backoff wait: a live connection first forwards what is still queued,
/// then unpublishes when the hub closes its queue.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    ctx: Arc<RelayContext>,
    app: String,
    name: String,
    spec: DestinationSpec,
    profile_args: Option<Vec<String>>,
    status: Arc<DestinationStatus>,
    stop: CancellationToken,
    ended: CancellationToken,
) {
    let encoder = profile_args.map(|args| {
        let token = stop.child_token();
        let output = encoder::output_name(&app, &name, &spec.id);
        let source = StreamName {
            app: app.clone(),
            name: name.clone(),
            query: String::new(),
        };
        let task = encoder::run(
            Arc::clone(&ctx.encoders),
            source,
            output.clone(),
            args,
            status.encoder().unwrap_or_default(),
            token.clone(),
        );
        let handle = tokio::spawn(task.instrument(tracing::Span::current()));
        (output, token, handle)
    });
    // A re-encoded destination publishes its encoder's output, not the source.
    let (hub, source_app, source_name) = match &encoder {
        Some((output, _, _)) => (
            &ctx.encoders.output_hub,
            output.app.clone(),
            output.name.clone(),
        ),
        None => (&ctx.hub, app.clone(), name.clone()),
    };
    let mut backoff = Backoff::new(ctx.backoff);
    let mut first = true;
    loop {
        if stop.is_cancelled() || ended.is_cancelled() {
            break;
        }
        if encoder.is_some() {
            if !wait_for_encoder(
                &ctx,
                hub,
                (&app, &name),
                (&source_app, &source_name),
                &status,
                &stop,
                &ended,
            )
            .await
            {
                break;
            }
        } else if !hub.is_live(&app, &name) {
            break;
        }
        if !first {
            status.count_reconnect();
        }
        first = false;
        status.set_state(State::Connecting);
        let subscriber = match hub.subscribe_as(&source_app, &source_name, SubscriberKind::Relay) {
            Ok(subscriber) => subscriber,
            Err(err) => {
                tracing::warn!("cannot subscribe: {err}");
                break;
            }
        };
        status.attach_queue(subscriber.queue());
        let result = attempt(&ctx, &spec, &subscriber, &status, &stop, &ended).await;
        status.end_connection_drops();
        drop(subscriber);
        let error = match result {
            Ok(Ended::StreamEnded) => {
                tracing::info!("stream ended; unpublished");
                break;
            }
            Ok(Ended::Stopped) => break,
            Err(error) => error,
        };
        let message = mask_error(&error.to_string(), &spec.target.stream_name);
        status.record_failure(message.clone());
        if status
            .live_for()
            .is_some_and(|up| up >= ctx.backoff_reset_after)
        {
            backoff.reset();
        }
        let (state, delay) = if error.is_permanent() {
            (State::Failed, ctx.failed_retry)
        } else {
            (State::Backoff, backoff.next_delay())
        };
        tracing::warn!(retry_in = ?delay, "destination {}: {message}", state_word(state));
        status.set_state(state);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => break,
            () = ended.cancelled() => break,
        }
    }
    if let Some((_, token, handle)) = encoder {
        token.cancel();
        let _ = handle.await;
    }
    status.set_state(State::Stopped);
}

/// Waits until the encoder publishes output, so that the ingest connection is not
/// opened (and left idle) before there is something to send. False when the
/// stream ended or the destination stops meanwhile.
async fn wait_for_encoder(
    ctx: &RelayContext,
    output_hub: &Hub,
    (app, name): (&str, &str),
    (out_app, out_name): (&str, &str),
    status: &DestinationStatus,
    stop: &CancellationToken,
    ended: &CancellationToken,
) -> bool {
    loop {
        if output_hub.is_live(out_app, out_name) {
            return true;
        }
        if !ctx.hub.is_live(app, name) {
            return false;
        }
        // An encoder that cannot start at all (no ffmpeg) fails the destination.
        let cannot_start = status.encoder().is_some_and(|e| e.cannot_start());
        status.set_state(if cannot_start {
            State::Failed
        } else {
            State::WaitingForEncoder
        });
        tokio::select! {
            () = tokio::time::sleep(ENCODER_POLL) => {}
            () = stop.cancelled() => return false,
            () = ended.cancelled() => return false,
        }
    }
}

fn state_word(state: State) -> &'static str {
    match state {
        State::Failed => "refused",
        _ => "failed",
    }
}

/// Replaces every occurrence of the key (with and without its query) by its mask:
/// ingests echo stream names in their error descriptions.
pub fn mask_error(message: &str, stream_name: &str) -> String {
    let mut masked = message.to_owned();
    let bare = stream_name.split('?').next().unwrap_or(stream_name);
    for secret in [stream_name, bare] {
        if !secret.is_empty() {
            masked = masked.replace(secret, &Masked(secret).to_string());
        }
    }
    masked
}

async fn attempt(
    ctx: &RelayContext,
    spec: &DestinationSpec,
    subscriber: &Subscriber,
    status: &Arc<DestinationStatus>,
    stop: &CancellationToken,
    ended: &CancellationToken,
) -> Result<Ended, PushError> {
    let target = &spec.target;
    // One deadline for the whole setup: TCP connect and TLS here, then the handshake and
    // the publish exchange, which the session times from the same start.
    let started = Instant::now();
    let deadline = started + ctx.connect_timeout;
    let tcp = timeout_at(
        deadline,
        TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| PushError::Timeout(ctx.connect_timeout))?
    .map_err(PushError::Connect)?;
    // Media must not wait for the ingest's delayed ACK.
    tcp.set_nodelay(true)?;
    if target.tls {
        let tls = timeout_at(deadline, super::tls::connect(&ctx.tls, &target.host, tcp))
            .await
            .map_err(|_| PushError::Timeout(ctx.connect_timeout))??;
        publish(ctx, spec, tls, started, subscriber, status, stop, ended).await
    } else {
        publish(ctx, spec, tcp, started, subscriber, status, stop, ended).await
    }
}

/// The TCP socket under a push connection, plain or TLS, for socket options.
trait OverTcp {
    fn tcp(&self) -> &TcpStream;
}

impl OverTcp for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl OverTcp for tokio_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Acknowledges the ingest's next segment at once instead of after the delayed-ACK
/// timer. During setup an ingest that uses Nagle (nginx-rtmp does) holds each small
/// reply until its previous segment is acknowledged, so every round trip of the
/// handshake and the connect/createStream/publish exchange waited 40 ms for our
/// delayed ACK (seen on the wire by the fan-out benchmark). Linux clears the flag
/// again by itself, so it is set before every read of the setup.
fn ack_at_once(tcp: &TcpStream) {
    #[cfg(target_os = "linux")]
    let _ = tcp.set_quickack(true);
    #[cfg(not(target_os = "linux"))]
    let _ = tcp;
}

#[allow(clippy::too_many_arguments)]
async fn publish<S>(
    ctx: &RelayContext,
    spec: &DestinationSpec,
    mut io: S,
    started: Instant,
    subscriber: &Subscriber,
    status: &Arc<DestinationStatus>,
    stop: &CancellationToken,
    ended: &CancellationToken,
) -> Result<Ended, PushError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static + OverTcp,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let config = ClientConfig {
        app: spec.target.app.clone(),
        tc_url: spec.target.tc_url.clone(),
        stream_name: spec.target.stream_name.clone(),
        flash_ver: ctx.flash_ver.clone(),
        chunk_size: ctx.chunk_size,
        limits: ctx.limits,
        publish_timeout: Some(ctx.connect_timeout),
    };
    let mut session = ClientSession::new(config, started.into_std());
    let mut setup_out = 0;
    loop {
        let deadline = session.poll_timeout();
        tokio::select! {
            ready = until_publishing(&mut io, &mut buf, &mut session, &mut setup_out, status) => {
                ready?;
                break;
            }
            () = sleep_until(deadline) => session.handle_timeout(Instant::now().into_std())?,
            () = stop.cancelled() => return Ok(Ended::Stopped),
            () = ended.cancelled() => return Ok(Ended::StreamEnded),
        }
    }
    status.set_state(State::Live);
    tracing::info!("live");
    Forwarder {
        link: Arc::new(Link::new(io, session, Arc::clone(status))),
        buf,
        batch: Vec::with_capacity(256),
        stall_timeout: ctx.stall_timeout,
    }
    .run(subscriber, stop)
    .await
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// The setup: writes what the session queued (the handshake, connect, then the calls each
/// reply triggers) before waiting for the next reply, until the ingest accepts the publish.
/// `setup_out` counts the bytes written so far (see [`send_setup`]).
async fn until_publishing<S>(
    io: &mut S,
    buf: &mut BytesMut,
    session: &mut ClientSession,
    setup_out: &mut u64,
    status: &DestinationStatus,
) -> Result<(), PushError>
where
    S: AsyncRead + AsyncWrite + Unpin + OverTcp,
{
    loop {
        send_setup(io, session, setup_out, status).await?;
        ack_at_once(io.tcp());
        read_more(io, buf).await?;
        while let Some(event) = session.poll(buf)? {
            if let ClientEvent::Publishing { .. } = event {
                send_setup(io, session, setup_out, status).await?;
                return Ok(());
            }
            log_event(&event);
        }
    }
}

/// Writes what the session queued during the setup. `bytes_out` counts all of it but the
/// handshake (C0+C1 and C2, the first [`HANDSHAKE_OUT`] bytes), which it never counted.
async fn send_setup<S>(
    io: &mut S,
    session: &mut ClientSession,
    setup_out: &mut u64,
    status: &DestinationStatus,
) -> Result<(), PushError>
where
    S: AsyncWrite + Unpin,
{
    let counted = setup_out.saturating_sub(HANDSHAKE_OUT);
    *setup_out += write_out(io, session.out()).await?;
    status.add_bytes_out(setup_out.saturating_sub(HANDSHAKE_OUT) - counted);
    Ok(())
}

async fn read_more<S: AsyncRead + Unpin>(io: &mut S, buf: &mut BytesMut) -> Result<(), PushError> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    match io.read_buf(buf).await? {
        0 => Err(PushError::Closed),
        _ => Ok(()),
    }
}

fn log_event(event: &ClientEvent) {
    match event {
        ClientEvent::Status { level, code, .. } => tracing::info!(%level, %code, "ingest status"),
        other => tracing::debug!(?other, "ingest event"),
    }
}

/// The live phase: packets from the hub to the ingest, replies from the ingest.
///
/// The connection sits in a [`Link`] shared with the hub. While this destination
/// keeps up, the publisher's task writes each batch to it directly (the link is the
/// queue's [`DirectSink`]), so a destination costs no task wake-up per packet; this
/// task wakes only for the ingest's replies, a stop, the stream's end, or a write
/// that could not finish at once. It then finishes that write under its stall
/// timeout and takes packets from its queue (under the hub's drop policy) until it
/// has caught up, and hands the link back.
struct Forwarder<S> {
    link: Arc<Link<S>>,
    buf: BytesMut,
    batch: Vec<Packet>,
    stall_timeout: Duration,
}

impl<S> Forwarder<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn run(
        mut self,
        subscriber: &Subscriber,
        stop: &CancellationToken,
    ) -> Result<Ended, PushError> {
        let queue = subscriber.queue();
        // However this ends, the publisher stops writing here and lets go of the link
        // (and so of the socket).
        let _disarm = Disarm(&queue);
        let sink: Arc<dyn DirectSink> = self.link.clone();
        // One wait for the whole connection: a fresh one per loop would register
        // and unregister a waiter (two locks) every time.
        let stopped = stop.cancelled();
        tokio::pin!(stopped);
        loop {
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            tokio::select! {
                biased;
                () = &mut stopped => {
                    queue.disarm();
                    self.unpublish().await;
                    return Ok(Ended::Stopped);
                }
                read = poll_fn(|cx| self.link.poll_read(cx, &mut self.buf)) => {
                    if read? == 0 {
                        return Err(PushError::Closed);
                    }
                    self.link.on_replies(&mut self.buf)?;
                }
                more = subscriber.recv_batch(&mut self.batch) => {
                    if !more {
                        self.unpublish().await;
                        return Ok(Ended::StreamEnded);
                    }
                    self.link.encode(self.batch.drain(..));
                }
            }
            self.flush().await?;
            // Caught up: the next batches go out from the publisher's task.
            queue.arm(Arc::clone(&sink));
        }
    }

    /// Sends what the link holds. Most sends finish at once and need no timer; one
    /// that has to wait for the ingest gets the stall timeout.
    async fn flush(&self) -> Result<(), PushError> {
        if let Poll::Ready(sent) = self.link.try_send() {
            return Ok(sent?);
        }
        match timeout(self.stall_timeout, poll_fn(|cx| self.link.poll_send(cx))).await {
            Ok(sent) => Ok(sent?),
            Err(_) => Err(PushError::Stalled(self.stall_timeout)),
        }
    }

    /// FCUnpublish + deleteStream, then close: how platforms tell an end from a drop.
    async fn unpublish(&self) {
        self.link.lock().session.unpublish();
        let _ = timeout(UNPUBLISH_GRACE, async {
            let _ = poll_fn(|cx| self.link.poll_send(cx)).await;
            let _ = poll_fn(|cx| self.link.poll_shutdown(cx)).await;
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

/// One live push connection with its session, shared by the destination's task and,
/// while the destination keeps up, the publisher's task. The lock is only ever held
/// for one poll or one non-waiting write, never across an `.await`.
struct Link<S> {
    state: Mutex<LinkState<S>>,
    status: Arc<DestinationStatus>,
}

struct LinkState<S> {
    io: S,
    session: ClientSession,
    rebaser: Rebaser,
}

impl<S> std::fmt::Debug for Link<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl<S> Link<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn new(io: S, session: ClientSession, status: Arc<DestinationStatus>) -> Self {
        Self {
            state: Mutex::new(LinkState {
                io,
                session,
                rebaser: Rebaser::new(),
            }),
            status,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LinkState<S>> {
        // Nothing under this lock can be left half-done by a panic in a way that
        // matters more than the connection; carry on rather than cascade.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Encodes packets: shared payloads, chunk headers only, rebased timestamps.
    fn encode(&self, packets: impl Iterator<Item = Packet>) {
        let mut state = self.lock();
        for packet in packets {
            state.encode(&packet);
        }
    }

    /// Writes what the session holds, counting what went out.
    fn poll_send(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut written = 0;
        let sent = self.lock().poll_write(&mut written, cx);
        self.count(written);
        sent
    }

    /// [`poll_send`](Self::poll_send) once, without waiting (see [`poll_now`]).
    fn try_send(&self) -> Poll<std::io::Result<()>> {
        poll_now(|cx| self.poll_send(cx))
    }

    fn count(&self, written: u64) {
        if written > 0 {
            self.status.add_bytes_out(written);
        }
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<std::io::Result<usize>> {
        tokio_util::io::poll_read_buf(Pin::new(&mut self.lock().io), cx, buf)
    }

    fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.lock().io).poll_shutdown(cx)
    }

    /// Handles what the ingest sent (acknowledgements, pings, status); replies it
    /// needs are queued in the session for the next send.
    fn on_replies(&self, buf: &mut BytesMut) -> Result<(), ClientError> {
        let mut state = self.lock();
        while let Some(event) = state.session.poll(buf)? {
            log_event(&event);
        }
        Ok(())
    }
}

impl<S: AsyncWrite + Unpin> LinkState<S> {
    fn poll_write(&mut self, written: &mut u64, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        poll_write_out(&mut self.io, self.session.out(), written, cx)
    }
}

impl<S> LinkState<S> {
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

impl<S> DirectSink for Link<S>
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
/// write that must not wait. The publisher's task writes to many links per batch, and
/// a spent budget must not pass for a slow ingest.
fn poll_now<T>(poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
    let mut cx = Context::from_waker(Waker::noop());
    std::pin::pin!(tokio::task::unconstrained(poll_fn(poll))).poll(&mut cx)
}
