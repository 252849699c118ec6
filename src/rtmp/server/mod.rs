//! The server side of an RTMP session, free of I/O: what an encoder or a player says,
//! and what a server must answer.
//!
//! A session starts at the TCP accept: it runs the handshake ([`super::handshake`]), then
//! the chunk stream. [`ServerSession::poll`] turns received bytes into [`ServerEvent`]s and
//! queues the protocol's own replies (the handshake's answer, connect result, createStream
//! result, status messages). Decisions that need the rest of prism (may this name be
//! published? does that stream exist?) come out as events, and the application answers
//! through [`ServerSession::accept_publish`], [`ServerSession::reject_publish`] and friends.
//!
//! Time is an input, as in quinn-proto: the driver passes the time it accepted the
//! connection and the time of each read, sleeps until [`ServerSession::poll_timeout`], and
//! then calls [`ServerSession::handle_timeout`]. The session owns the protocol's deadlines
//! (handshake and connect, a publisher's silence, a connection that never streams, the
//! command rate: see `deadlines.rs`), so they are unit tests without tokio.
//!
//! The files: the events the application acts on (`events.rs`), the commands of the
//! NetConnection and its NetStreams (`commands.rs`), media and data from a publisher
//! (`media.rs`), the answers the application gives and the replies they send
//! (`replies.rs`), the NetStreams a connection created (`streams.rs`), and the deadlines
//! (`deadlines.rs`, with the command rate in `command_rate.rs`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::chunk::{DecoderLimits, OutBuf, PendingBudget};
use super::handshake::{HandshakeError, Progress, ServerHandshake};
use super::message::Message;
use super::message_layer::{Incoming, MessageLayer, MessageLayerError};

mod command_rate;
mod commands;
mod deadlines;
mod events;
mod media;
mod replies;
mod streams;
#[cfg(test)]
mod tests;

use deadlines::Deadlines;
pub use events::ServerEvent;
pub use replies::status_object;
use streams::{NetStreams, StreamRole};

/// How many NetStreams one connection may create. Encoders use one, players one or
/// two; the cap keeps a peer from growing per-connection state without end.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 16;

/// Server-side session settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our outgoing chunk size, announced right after connect.
    pub chunk_size: u32,
    /// The acknowledgement window we ask the peer to use.
    pub window_ack_size: u32,
    /// Bounds on what the peer may make us buffer.
    pub limits: DecoderLimits,
    /// The budget for partial messages that every inbound connection shares (the same one
    /// for all of them: clones share it), on top of the per-connection `limits`; `None`
    /// leaves only those.
    pub pending_budget: Option<PendingBudget>,
    /// How long after the accept the handshake and the connect command must be done.
    pub handshake_timeout: Duration,
    /// How long a publisher may stay silent, and how long a connection may go without
    /// publishing or playing, whatever it sends.
    pub idle_timeout: Duration,
    /// Commands (and other messages that are not media) a peer may send per second: far
    /// more than any encoder sends, so that only a flood is closed.
    pub max_commands_per_sec: u32,
}

impl Default for ServerConfig {
    /// prism's defaults (`config/default.toml`).
    fn default() -> Self {
        Self {
            chunk_size: 4096,
            window_ack_size: 5_000_000,
            limits: DecoderLimits::default(),
            pending_budget: None,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_commands_per_sec: 1000,
        }
    }
}

/// Why a session was ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The handshake bytes were not RTMP.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The chunk stream or a message was malformed.
    #[error(transparent)]
    MessageLayer(#[from] MessageLayerError),
    /// The peer broke the command sequence.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// The handshake or connect did not complete in time.
    #[error("no handshake and connect within {0:?}")]
    HandshakeTimeout(Duration),
    /// A publisher went silent.
    #[error("idle for {0:?}")]
    Idle(Duration),
    /// The peer neither published nor played for this long, whatever it sent.
    #[error("neither published nor played for {0:?}")]
    NotStreaming(Duration),
    /// The peer sent commands far faster than any encoder.
    #[error(
        "{count} commands within a second, over the limit of {limit} per second \
         (an encoder sends a handful)"
    )]
    CommandFlood {
        /// Commands counted in the window.
        count: u64,
        /// The configured limit.
        limit: u32,
    },
}

/// State of one server-side RTMP connection, from the accept.
pub struct ServerSession {
    config: ServerConfig,
    /// The handshake until it is done; boxed, since it holds 3 KB that are dropped then.
    handshake: Option<Box<ServerHandshake>>,
    messages: MessageLayer,
    /// The app and the query from connect; `None` until connect arrived.
    connection: Option<(String, String)>,
    streams: NetStreams,
    deadlines: Deadlines,
    /// Aggregate messages expand to several events; they wait here.
    pending: VecDeque<ServerEvent>,
    /// Whether media on message stream 0 has been logged, as taken by the
    /// publishing stream or as ignored: once per connection each, so a peer cannot
    /// flood the log.
    noted_stream_0_media: bool,
    warned_unowned_media: bool,
}

impl ServerSession {
    /// A session for a connection accepted at `accepted`: the handshake and connect must be
    /// done by `accepted + config.handshake_timeout`.
    pub fn new(config: ServerConfig, accepted: Instant) -> Self {
        let messages = match &config.pending_budget {
            Some(budget) => MessageLayer::with_budget(config.limits, budget.account()),
            None => MessageLayer::new(config.limits),
        };
        Self {
            handshake: Some(Box::new(ServerHandshake::new(0))),
            messages,
            deadlines: Deadlines::new(&config, accepted),
            config,
            connection: None,
            streams: NetStreams::new(),
            pending: VecDeque::new(),
            noted_stream_0_media: false,
            warned_unowned_media: false,
        }
    }

    /// Cancelled when this connection is evicted from the shared budget for partial
    /// messages ([`ServerConfig::pending_budget`]) to make room for another: the driver
    /// must close it at once (its memory is counted as free already), and the next
    /// [`Self::poll`] fails, saying so. `None` without a shared budget.
    pub fn budget_eviction(&self) -> Option<tokio_util::sync::CancellationToken> {
        self.messages
            .budget()
            .map(|account| account.evicted().clone())
    }

    /// The error that ends a connection evicted from the shared budget (see
    /// [`Self::budget_eviction`]); `Ok` while it is not evicted.
    pub fn check_budget(&self) -> Result<(), SessionError> {
        self.messages.check_budget().map_err(SessionError::from)
    }

    /// Whether the handshake is still going on: a peer that closes now did not speak RTMP
    /// to its end, which the driver reports as an error rather than a clean close.
    pub fn is_handshaking(&self) -> bool {
        self.handshake.is_some()
    }

    /// Whether connect has been received.
    pub fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    /// Bytes received on the chunk stream so far (after the handshake).
    pub fn bytes_in(&self) -> u64 {
        self.messages.bytes_in()
    }

    /// Bytes waiting to be written to the peer.
    pub fn out(&mut self) -> &mut OutBuf {
        self.messages.out()
    }

    /// Processes received bytes until an event comes out or more bytes are needed.
    ///
    /// `read_at` is when the driver read the newest bytes in `buf` (its latest read, not
    /// merely the time of this call): a publisher's silence and the command rate are
    /// measured on it. A reading older than one given before is ignored.
    pub fn poll(
        &mut self,
        buf: &mut BytesMut,
        read_at: Instant,
    ) -> Result<Option<ServerEvent>, SessionError> {
        self.deadlines.read_at(read_at);
        if let Some(event) = self.pending.pop_front() {
            return Ok(Some(event));
        }
        if !self.continue_handshake(buf)? {
            return Ok(None);
        }
        while let Some(incoming) = self.messages.poll(buf)? {
            if let Some(event) = self.handle(incoming)? {
                return Ok(Some(event));
            }
        }
        // Every message of the read is handled: they all arrived at that read.
        self.deadlines
            .check_commands(self.messages.non_media_messages())?;
        Ok(None)
    }

    /// When the session must hear back: the driver sleeps until then and calls
    /// [`Self::handle_timeout`]. It moves as the connection goes (a publisher's reads push
    /// it on), so a driver may keep a timer set for an earlier value and only re-arm it
    /// when it fires. `None` while the connection only plays.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline().map(|(at, _)| at)
    }

    /// Checks the deadlines at `now`: the error to close the connection with once one has
    /// passed; `Ok` if none has (the timer fired for a deadline that moved on since).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        match self.deadline() {
            Some((at, expiry)) if now >= at => Err(self.deadlines.error(expiry)),
            _ => Ok(()),
        }
    }

    fn deadline(&self) -> Option<(Instant, deadlines::Expiry)> {
        self.deadlines
            .next(self.is_connected(), self.streams.activity())
    }

    /// Sets a stream's role, and notes what the connection does now for its deadlines.
    fn set_role(&mut self, stream_id: u32, role: StreamRole) {
        self.streams.set_role(stream_id, role);
        self.track_activity();
    }

    /// Notes what the connection does now, after its streams or its connect changed.
    fn track_activity(&mut self) {
        self.deadlines
            .track(self.is_connected(), self.streams.activity());
    }

    /// Feeds the handshake, queueing its answer; true once it is done (the rest of `buf` is
    /// the chunk stream's).
    fn continue_handshake(&mut self, buf: &mut BytesMut) -> Result<bool, SessionError> {
        let Some(handshake) = self.handshake.as_mut() else {
            return Ok(true);
        };
        let progress = handshake.read(buf)?;
        while let Some(bytes) = handshake.take_output() {
            self.messages.out().push_shared(bytes);
        }
        if progress == Progress::NeedMore {
            return Ok(false);
        }
        self.handshake = None;
        Ok(true)
    }

    fn handle(&mut self, incoming: Incoming) -> Result<Option<ServerEvent>, SessionError> {
        let Incoming {
            stream_id,
            timestamp,
            message,
        } = incoming;
        let message = match message {
            Message::Command(command) => {
                let event = self.handle_command(stream_id, command);
                self.track_activity();
                return event;
            }
            Message::UserControl(_) | Message::Other { .. } => return Ok(None),
            message => message,
        };
        let Some(stream_id) = self.media_owner(stream_id, &message) else {
            return Ok(None);
        };
        Ok(match message {
            Message::Audio(payload) => Some(ServerEvent::Audio {
                stream_id,
                timestamp,
                payload,
            }),
            Message::Video(payload) => Some(ServerEvent::Video {
                stream_id,
                timestamp,
                payload,
            }),
            Message::Data { values, payload } => {
                self.handle_data(stream_id, timestamp, values, payload)
            }
            Message::Aggregate(payload) => {
                self.expand_aggregate(stream_id, timestamp, &payload);
                self.pending.pop_front()
            }
            // Control messages were consumed by the message layer.
            _ => None,
        })
    }
}
