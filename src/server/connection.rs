//! One RTMP connection: the handshake, then the server session, driven over any
//! `AsyncRead + AsyncWrite` transport (TCP now, TLS the same way).
//!
//! All protocol decisions, the protocol's deadlines among them, are made by the sans-I/O
//! [`ServerSession`]; this task only moves bytes, tells the session the time (of the accept,
//! of each read, and when the session's timer fires), and connects the session to the hub.
//! The one deadline it keeps is the hub's: how long a player waits for a stream that is not
//! live.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::CallbackError;
use crate::hub::{Hub, HubError, Packet, Publisher, Subscriber};
use crate::relay::{Relay, RelayHandle};
use crate::rtmp::server::{ServerConfig, ServerEvent, ServerSession, SessionError};
use crate::server::per_ip::{IpSlot, PerIpLimit};
use crate::server::waiting::{WaitingPlayers, WaitingTicket};
use crate::timestamp::Rebaser;
use crate::transport::write_out;

/// Read buffer growth step. Big enough for a 4 KiB-chunked video burst per read.
const READ_CHUNK: usize = 64 * 1024;

/// How long a clean close may take to flush (TLS close_notify) before the socket
/// is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a cleanly ended connection stays half-closed, reading what the peer
/// still sends, before it is closed anyway. A player told the stream ended answers
/// with deleteStream and an acknowledgement: closing before they arrive makes the
/// kernel answer them with a reset, and librtmp players take a reset as a network
/// error and reconnect at once.
const LINGER: Duration = Duration::from_secs(3);

/// What every connection task shares.
#[derive(Debug)]
pub struct ConnectionContext {
    /// The stream registry.
    pub hub: Arc<Hub>,
    /// Authorizes publishers and starts their destinations.
    pub relay: Arc<Relay>,
    /// Session settings, the protocol's deadlines among them. Its `handshake_timeout` also
    /// bounds a TLS handshake, and its `idle_timeout` the authorization callback and a
    /// player that refuses to read.
    pub session: ServerConfig,
    /// How long a dropped publisher's stream waits for it to come back.
    pub publisher_grace: Duration,
    /// Streams published at once per client address.
    pub publishers_per_ip: Arc<PerIpLimit>,
    /// How long a player may wait for a stream that is not live.
    pub play_wait: Duration,
    /// The players waiting for streams that are not live, bounded.
    pub waiting: Arc<WaitingPlayers>,
}

/// Why a connection ended abnormally. Logged once, for that connection only.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The TLS handshake of an RTMPS connection failed (plain RTMP or garbage on
    /// the TLS port, an unsupported protocol version, a reset).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// The first bytes on the RTMPS port were not TLS at all: most likely an
    /// encoder set to `rtmp://` pointed at the `rtmps://` port.
    #[error("TLS handshake failed: not TLS (plain rtmp:// on the RTMPS port?): {0}")]
    NotTls(std::io::Error),
    /// The TLS handshake did not complete in time (the RTMP handshake's deadline is the
    /// session's).
    #[error("no handshake and connect within {0:?}")]
    HandshakeTimeout(Duration),
    /// The peer broke the protocol, or missed one of its deadlines.
    #[error("{0}")]
    Session(#[from] SessionError),
    /// A player stopped reading.
    #[error("peer did not read for {0:?}")]
    WriteStalled(Duration),
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

enum Role {
    Idle,
    /// Field order matters: the publisher is dropped first, ending the hub queues
    /// so live destinations drain and unpublish, then the relay handle stops the rest.
    Publishing {
        publisher: Publisher,
        _relay: RelayHandle,
        /// Counts this publish against the address's publish limit.
        _slot: IpSlot,
    },
    Playing {
        stream_id: u32,
        subscriber: Subscriber,
        rebaser: Rebaser,
        /// While the stream is not live: the player's place among the waiting
        /// players, and when it started waiting.
        waiting: Option<(WaitingTicket, Instant)>,
    },
}

/// What the event handler wants the loop to do next.
enum Next {
    Continue,
    Close,
}

/// Serves one connection to its end. `Ok` means the peer or prism ended it cleanly.
/// `accepted` is when the socket was accepted: the session's handshake deadline counts
/// from there, so time spent in a TLS handshake before this counts against it too.
pub async fn serve<S>(
    io: S,
    peer: SocketAddr,
    accepted: Instant,
    ctx: Arc<ConnectionContext>,
    shutdown: CancellationToken,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut connection = Connection {
        io,
        buf: BytesMut::with_capacity(READ_CHUNK),
        session: ServerSession::new(ctx.session.clone(), accepted.into_std()),
        role: Role::Idle,
        batch: Vec::with_capacity(256),
        peer,
        kick: CancellationToken::new(),
        ctx,
    };
    // Another connection may need this one's room for partial messages (see
    // rtmp::chunk::PendingBudget): then it ends at once, whatever it is waiting for,
    // so that the memory it holds is freed within moments.
    let eviction = connection.session.budget_eviction().unwrap_or_default();
    let result = tokio::select! {
        result = connection.run(&shutdown) => result,
        () = eviction.cancelled() => connection.session.check_budget().map_err(Into::into),
    };
    let deliberate = shutdown.is_cancelled() || connection.kick.is_cancelled();
    let grace = connection.ctx.publisher_grace;
    let role = std::mem::replace(&mut connection.role, Role::Idle);
    if !deliberate && !grace.is_zero() {
        hold_for_grace(role, grace, shutdown.clone());
    } else {
        // Ends the stream (or the play) before the close below may wait.
        drop(role);
    }
    if result.is_ok() {
        // A clean end: over TLS this sends close_notify, so the peer sees an
        // orderly close rather than a truncation. Bounded: the peer may not read.
        let _ = timeout(CLOSE_TIMEOUT, connection.io.shutdown()).await;
        if !shutdown.is_cancelled() {
            linger(&mut connection.io, &mut connection.buf, &shutdown).await;
        }
    }
    result
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
            if buf.capacity() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            match io.read_buf(buf).await {
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

/// A publisher whose connection dropped without unpublishing keeps its stream
/// and destinations for `grace`: if the encoder publishes the same name again in
/// time, everything carries on; otherwise the destinations get a clean unpublish.
fn hold_for_grace(role: Role, grace: Duration, shutdown: CancellationToken) {
    let Role::Publishing {
        publisher,
        _relay: relay,
        ..
    } = role
    else {
        return;
    };
    // The relay first: a publisher that comes back must find its destinations.
    relay.orphan();
    let orphan = publisher.detach();
    tracing::warn!(
        ?grace,
        "publisher dropped; destinations wait for it to come back"
    );
    // In the connection's span: its line names the peer and counts against that
    // address's log rate limit, like the connection's own lines.
    tokio::spawn(
        async move {
            tokio::select! {
                () = tokio::time::sleep(grace) => {}
                () = shutdown.cancelled() => {}
            }
            if !orphan.taken_over() {
                tracing::info!("publisher did not come back; ending the stream");
            }
            // The hub's queues end first, so destinations drain and unpublish.
            drop(orphan);
            drop(relay);
        }
        .in_current_span(),
    );
}

struct Connection<S> {
    io: S,
    buf: BytesMut,
    session: ServerSession,
    role: Role,
    batch: Vec<Packet>,
    peer: SocketAddr,
    /// Cancelled by an operator's kick (status API).
    kick: CancellationToken,
    ctx: Arc<ConnectionContext>,
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), ConnectionError> {
        // One wait each for the whole connection, and one timer that is moved only when it
        // fires or when an earlier deadline applies: a publisher's deadline moves on with
        // every read, and resetting a timer per read would register it anew under a lock.
        let kick = self.kick.clone();
        let shut_down = shutdown.cancelled();
        let kicked = kick.cancelled();
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(shut_down, kicked, timer);
        let mut armed: Option<Instant> = None;
        let mut last_read = Instant::now();
        loop {
            while let Some(event) = self.session.poll(&mut self.buf, last_read.into_std())? {
                if let Next::Close = self.on_event(event, shutdown).await {
                    self.deliver();
                    self.flush().await?;
                    return Ok(());
                }
            }
            self.deliver();
            self.flush().await?;
            if let Some(at) = self.next_deadline()
                && armed.is_none_or(|armed| at < armed)
            {
                timer.as_mut().reset(at);
                armed = Some(at);
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            let playing = matches!(self.role, Role::Playing { .. });
            let waiting = self.play_wait_deadline().is_some();
            tokio::select! {
                biased;
                () = &mut shut_down => return Ok(()),
                () = &mut kicked => {
                    tracing::info!("publisher kicked by an operator");
                    return Ok(());
                }
                read = self.io.read_buf(&mut self.buf) => match read? {
                    0 => return self.closed_by_peer(),
                    _ => last_read = Instant::now(),
                },
                () = &mut timer, if armed.is_some() => {
                    // Re-armed at the top of the loop, for the deadline in force by then.
                    armed = None;
                    let now = Instant::now();
                    if self.play_wait_deadline().is_some_and(|at| now >= at) {
                        tracing::info!(
                            "the stream did not go live within {:?}; closing the player",
                            self.ctx.play_wait
                        );
                        self.give_up_waiting("the stream did not start in time");
                        self.flush().await?;
                        return Ok(());
                    }
                    self.session.handle_timeout(now.into_std())?;
                }
                () = evicted(&self.role), if waiting => {
                    tracing::info!(
                        "closing a player waiting for a stream that is not live: \
                         {} players wait already",
                        self.ctx.waiting.max()
                    );
                    self.give_up_waiting("too many players wait for streams that are not live");
                    self.flush().await?;
                    return Ok(());
                }
                more = recv_batch(&self.role, &mut self.batch), if playing => {
                    if more {
                        self.stop_waiting();
                        self.send_batch();
                    } else {
                        self.end_play();
                        self.flush().await?;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The peer closed its end: cleanly, unless it had not even finished the handshake.
    fn closed_by_peer(&self) -> Result<(), ConnectionError> {
        if self.session.is_handshaking() {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        Ok(())
    }

    /// Hands what this read brought to the stream's subscribers: once per read,
    /// not once per message (see [`crate::hub::Publisher::flush`]).
    fn deliver(&self) {
        if let Role::Publishing { publisher, .. } = &self.role {
            publisher.flush();
        }
    }

    /// When the loop must wake up unless something happens first: the session's deadline,
    /// or the end of a player's wait for its stream.
    fn next_deadline(&self) -> Option<Instant> {
        let session = self.session.poll_timeout().map(Instant::from_std);
        session.into_iter().chain(self.play_wait_deadline()).min()
    }

    /// When a player waiting for a stream that is not live gives up; `None` unless one
    /// waits. The hub, not the protocol, knows whether a stream is live, so this deadline
    /// is the driver's own.
    fn play_wait_deadline(&self) -> Option<Instant> {
        match &self.role {
            Role::Playing {
                waiting: Some((_, since)),
                ..
            } => Some(*since + self.ctx.play_wait),
            _ => None,
        }
    }

    /// The stream went live: the player no longer counts as waiting.
    fn stop_waiting(&mut self) {
        if let Role::Playing { waiting, .. } = &mut self.role {
            *waiting = None;
        }
    }

    /// Tells a waiting player its stream is not there and lets go of it.
    fn give_up_waiting(&mut self, reason: &str) {
        if let Role::Playing { stream_id, .. } = self.role {
            self.session
                .reject_play(stream_id, "NetStream.Play.StreamNotFound", reason);
            self.role = Role::Idle;
        }
    }

    /// Handles one session event. A publish may wait for the authorization
    /// callback: this connection waits (reading nothing meanwhile), no other does.
    async fn on_event(&mut self, event: ServerEvent, shutdown: &CancellationToken) -> Next {
        match event {
            ServerEvent::Publish { stream_id, name } => {
                if !matches!(self.role, Role::Idle) {
                    self.session.reject_publish(
                        stream_id,
                        "NetStream.Publish.BadName",
                        "this connection already publishes or plays",
                    );
                    return Next::Close;
                }
                let Some(slot) = self.ctx.publishers_per_ip.acquire(self.peer.ip()) else {
                    tracing::warn!(stream = %name.masked(), "publish refused: too many publishers from this address");
                    self.session.reject_publish(
                        stream_id,
                        "NetStream.Publish.Rejected",
                        "too many streams published from this address",
                    );
                    return Next::Close;
                };
                // The callback has its own timeout; the idle timeout still bounds
                // the wait, and shutdown ends it at once.
                let authorize = self.ctx.relay.authorize(&name, self.peer.ip());
                let limit = self.ctx.session.idle_timeout;
                let authorized = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return Next::Close,
                    result = timeout(limit, authorize) => result.unwrap_or_else(|_| {
                        Err(CallbackError::Timeout(limit).into())
                    }),
                };
                let grant = match authorized {
                    Ok(grant) => grant,
                    Err(err) => {
                        tracing::warn!(stream = %name.masked(), "publish refused: {err}");
                        self.session.reject_publish(
                            stream_id,
                            err.status_code(),
                            err.peer_description(),
                        );
                        return Next::Close;
                    }
                };
                match self.ctx.hub.publish(&name) {
                    Ok(publisher) => {
                        self.session.accept_publish(stream_id);
                        publisher.set_peer(self.peer);
                        let relay = self.ctx.relay.start(&name, &grant, self.kick.clone());
                        // The stream id, unlike the mask, tells two streams apart.
                        let id = relay.stream_id();
                        match &grant.user {
                            Some(user) => {
                                tracing::info!(stream = %name.masked(), stream_id = %id, user = %user.name, "publishing")
                            }
                            None => {
                                tracing::info!(stream = %name.masked(), stream_id = %id, "publishing")
                            }
                        }
                        self.role = Role::Publishing {
                            publisher,
                            _relay: relay,
                            _slot: slot,
                        };
                        Next::Continue
                    }
                    Err(err) => {
                        tracing::warn!(stream = %name.masked(), "publish refused: {err}");
                        let code = match err {
                            HubError::AlreadyPublishing => "NetStream.Publish.BadName",
                            HubError::TooManyStreams(_) | HubError::TooManyAwaited(_) => {
                                "NetStream.Publish.Rejected"
                            }
                        };
                        self.session
                            .reject_publish(stream_id, code, &err.to_string());
                        Next::Close
                    }
                }
            }
            ServerEvent::Play { stream_id, name } => {
                if !matches!(self.role, Role::Idle) {
                    self.session.reject_play(
                        stream_id,
                        "NetStream.Play.Failed",
                        "this connection already publishes or plays",
                    );
                    return Next::Close;
                }
                match self.ctx.hub.subscribe(&name.app, &name.name) {
                    Ok(subscriber) => {
                        let waiting = if self.ctx.hub.is_live(&name.app, &name.name) {
                            tracing::info!(stream = %name.masked(), "playing");
                            None
                        } else {
                            tracing::info!(stream = %name.masked(), "playing; waiting for the stream to start");
                            Some((self.ctx.waiting.enter(), Instant::now()))
                        };
                        self.session.accept_play(stream_id);
                        self.role = Role::Playing {
                            stream_id,
                            subscriber,
                            rebaser: Rebaser::new(),
                            waiting,
                        };
                        Next::Continue
                    }
                    Err(err) => {
                        tracing::warn!(stream = %name.masked(), "play refused: {err}");
                        self.session.reject_play(
                            stream_id,
                            "NetStream.Play.Failed",
                            &err.to_string(),
                        );
                        Next::Close
                    }
                }
            }
            ServerEvent::Metadata { metadata, .. } => {
                if let Role::Publishing { publisher, .. } = &self.role {
                    publisher.set_metadata(&metadata, 0);
                }
                Next::Continue
            }
            ServerEvent::Audio {
                timestamp, payload, ..
            } => {
                if let Role::Publishing { publisher, .. } = &self.role {
                    publisher.push_audio(timestamp, payload);
                }
                Next::Continue
            }
            ServerEvent::Video {
                timestamp, payload, ..
            } => {
                if let Role::Publishing { publisher, .. } = &self.role {
                    publisher.push_video(timestamp, payload);
                }
                Next::Continue
            }
            ServerEvent::Data {
                timestamp, payload, ..
            } => {
                if let Role::Publishing { publisher, .. } = &self.role {
                    publisher.push_data(timestamp, payload);
                }
                Next::Continue
            }
            ServerEvent::Unpublish { .. } => {
                if matches!(self.role, Role::Publishing { .. }) {
                    tracing::info!("unpublished");
                    self.role = Role::Idle;
                }
                Next::Continue
            }
            ServerEvent::StopPlay { .. } => {
                self.role = Role::Idle;
                Next::Continue
            }
        }
    }

    /// Encodes a batch of packets for the player: payloads are shared, only chunk
    /// headers are written, and timestamps are rebased to start at 0.
    fn send_batch(&mut self) {
        let Role::Playing {
            stream_id, rebaser, ..
        } = &mut self.role
        else {
            self.batch.clear();
            return;
        };
        for packet in self.batch.drain(..) {
            let timestamp = packet.stamp(rebaser);
            self.session
                .send_media(*stream_id, packet.type_id(), timestamp, &packet.payload);
        }
    }

    fn end_play(&mut self) {
        if let Role::Playing { stream_id, .. } = self.role {
            tracing::info!("stream ended; closing player");
            self.session.end_play(stream_id);
            self.role = Role::Idle;
        }
    }

    async fn flush(&mut self) -> Result<(), ConnectionError> {
        if self.session.out().is_empty() {
            return Ok(());
        }
        let limit = self.ctx.session.idle_timeout;
        match timeout(limit, write_out(&mut self.io, self.session.out())).await {
            Ok(result) => result.map(|_| ()).map_err(ConnectionError::from),
            Err(_) => Err(ConnectionError::WriteStalled(limit)),
        }
    }
}

/// Fires when a waiting player's place was taken by a newer one.
async fn evicted(role: &Role) {
    match role {
        Role::Playing {
            waiting: Some((ticket, _)),
            ..
        } => ticket.evicted().cancelled().await,
        _ => std::future::pending().await,
    }
}

async fn recv_batch(role: &Role, batch: &mut Vec<Packet>) -> bool {
    match role {
        Role::Playing { subscriber, .. } => subscriber.recv_batch(batch).await,
        _ => std::future::pending().await,
    }
}
