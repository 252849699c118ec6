//! One RTMP connection: the handshake, then the server session, driven over any
//! `AsyncRead + AsyncWrite` transport (TCP now, TLS the same way).
//!
//! All protocol decisions, the protocol's deadlines among them, are made by the sans-I/O
//! [`ServerSession`]; this task only moves bytes, tells the session the time (of the accept,
//! of each read, and when the session's timer fires), and connects the session to the hub.
//! The one deadline it keeps is the hub's: how long a player waits for a stream that is not
//! live.
//!
//! This file holds the read/deadline loop; a connection becomes a publisher in
//! `publish.rs` or a player in `play.rs`, and ends cleanly through `close.rs`. A publisher
//! whose connection drops is held for its grace period by [`super::grace`].

mod close;
mod play;
mod publish;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hub::{Packet, Publisher, Subscriber};
use crate::relay::RelayHandle;
use crate::rtmp::server::{ServerEvent, ServerSession, SessionError};
use crate::server::per_ip::IpSlot;
use crate::server::standby::StandbyPlan;
use crate::server::waiting::WaitingTicket;
use crate::timestamp::Rebaser;
use crate::transport::{self, ReadPolicy, WriteError, poll_write_out};

pub use super::context::ConnectionContext;

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

/// A write under the stall deadline: a stall is the peer's, named as such.
impl From<WriteError> for ConnectionError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Stalled(limit) => ConnectionError::WriteStalled(limit),
            WriteError::Io(error) => ConnectionError::Io(error),
        }
    }
}

enum Role {
    Idle,
    /// Field order matters: the publisher is dropped first, ending the hub queues
    /// so live destinations drain and unpublish, then the relay handle stops the rest.
    Publishing {
        /// The RTMP message stream it publishes on.
        stream_id: u32,
        publisher: Publisher,
        /// The stream's destinations; `None` for a backup publisher.
        relay: Option<RelayHandle>,
        /// The standby settings of the stream.
        plan: StandbyPlan,
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
        /// The user whose stream the player waits for, until it is live.
        awaiting_user: Option<String>,
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
        buf: ReadPolicy::CONNECTION.buffer(),
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
    // Ends the stream or the play, or holds the publisher's for its grace period,
    // before the close below may wait.
    match std::mem::replace(&mut connection.role, Role::Idle) {
        Role::Publishing {
            publisher,
            relay: Some(relay),
            plan,
            ..
        } => {
            connection
                .ctx
                .grace
                .publisher_left(publisher, relay, plan, &connection.kick, &shutdown)
        }
        role => drop(role),
    }
    if result.is_ok() {
        close::close(&mut connection.io, &mut connection.buf, &shutdown).await;
    }
    result
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
        let mut follow = tokio::time::interval(play::FOLLOW_EVERY);
        follow.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut elsewhere = tokio::time::interval(play::FOLLOW_ELSEWHERE_EVERY);
        elsewhere.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shut_down, kicked, timer);
        let mut armed: Option<Instant> = None;
        let mut last_read = Instant::now();
        loop {
            // A read that completed no message (ffmpeg sends each chunk header
            // alone, so about every other read) pushed nothing: the stream's
            // subscribers are not visited for it.
            let mut pushed = false;
            while let Some(event) = self.session.poll(&mut self.buf, last_read.into_std())? {
                pushed = true;
                if let Next::Close = self.on_event(event, shutdown).await {
                    self.deliver();
                    self.flush().await?;
                    return Ok(());
                }
            }
            if pushed {
                self.deliver();
            }
            self.flush().await?;
            if let Some(at) = self.next_deadline()
                && armed.is_none_or(|armed| at < armed)
            {
                timer.as_mut().reset(at);
                armed = Some(at);
            }
            let playing = matches!(self.role, Role::Playing { .. });
            let waiting = self.play_wait_deadline().is_some();
            let awaiting_user = play::awaits_user(&self.role);
            let look_elsewhere = waiting && self.ctx.cluster.get().is_some();
            // Read first: a wake-up for data returns here without polling the
            // waits behind it (each poll of a cancellation wait takes locks);
            // they are polled whenever the read is pending, which tokio's
            // cooperative budget forces at least every 128 reads, so a flood of
            // data never hides a shutdown or a kick for long.
            tokio::select! {
                biased;
                read = ReadPolicy::CONNECTION.read(&mut self.io, &mut self.buf) => match read? {
                    0 => return self.closed_by_peer(),
                    _ => last_read = Instant::now(),
                },
                () = &mut shut_down => return Ok(()),
                () = &mut kicked => {
                    tracing::info!("publisher kicked by an operator");
                    if let Role::Publishing { stream_id, .. } = self.role {
                        // Told why before the socket closes: an encoder shows it.
                        self.session.reject_publish(
                            stream_id,
                            "NetStream.Publish.BadName",
                            "disconnected by the operator",
                        );
                        self.flush().await?;
                    }
                    return Ok(());
                }
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
                _ = follow.tick(), if awaiting_user => self.follow_user(),
                _ = elsewhere.tick(), if look_elsewhere => self.follow_elsewhere().await,
                () = play::evicted(&self.role), if waiting => {
                    tracing::info!(
                        "closing a player waiting for a stream that is not live: \
                         {} players wait already",
                        self.ctx.waiting.max()
                    );
                    self.give_up_waiting("too many players wait for streams that are not live");
                    self.flush().await?;
                    return Ok(());
                }
                more = play::recv_batch(&self.role, &mut self.batch), if playing => {
                    if more {
                        if play::stream_started(&self.role) {
                            self.stop_waiting();
                        }
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

    /// When the loop must wake up unless something happens first: the session's deadline,
    /// or the end of a player's wait for its stream.
    fn next_deadline(&self) -> Option<Instant> {
        let session = self.session.poll_timeout().map(Instant::from_std);
        session.into_iter().chain(self.play_wait_deadline()).min()
    }

    /// Handles one session event. A publish may wait for the authorization
    /// callback: this connection waits (reading nothing meanwhile), no other does.
    async fn on_event(&mut self, event: ServerEvent, shutdown: &CancellationToken) -> Next {
        match event {
            ServerEvent::Publish { stream_id, name } => {
                self.on_publish(stream_id, name, shutdown).await
            }
            ServerEvent::Play { stream_id, name } => self.on_play(stream_id, &name).await,
            media @ (ServerEvent::Metadata { .. }
            | ServerEvent::Audio { .. }
            | ServerEvent::Video { .. }
            | ServerEvent::Data { .. }) => {
                self.media_to_hub(media);
                Next::Continue
            }
            ServerEvent::Unpublish { .. } => {
                self.unpublish();
                Next::Continue
            }
            ServerEvent::StopPlay { .. } => {
                self.role = Role::Idle;
                Next::Continue
            }
        }
    }

    /// Writes what the session has queued, within the idle timeout: a peer that
    /// stops reading for that long loses its connection.
    // `transport::within` is the shared form of this deadline, but its future is not
    // `Send` yet (its no-op `Context` lives across its await), so a connection task
    // cannot use it; until it is, the same deadline is written out here.
    async fn flush(&mut self) -> Result<(), ConnectionError> {
        if self.session.out().is_empty() {
            return Ok(());
        }
        // A peer that stops reading gets the idle timeout, the same deadline as one
        // that stops sending.
        let limit = self.ctx.session.idle_timeout;
        let (io, out) = (&mut self.io, self.session.out());
        let mut written = 0;
        transport::within(limit, |cx| poll_write_out(io, out, &mut written, cx)).await?;
        Ok(())
    }
}
