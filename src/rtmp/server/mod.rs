//! The server side of an RTMP session, free of I/O: what an encoder or a player says,
//! and what a server must answer.
//!
//! [`ServerSession::poll`] turns received bytes into [`ServerEvent`]s and queues the
//! protocol's own replies (connect result, createStream result, status messages).
//! Decisions that need the rest of prism (may this name be published? does that
//! stream exist?) come out as events, and the application answers through
//! [`ServerSession::accept_publish`], [`ServerSession::reject_publish`] and friends.
//!
//! The files: the events the application acts on (`events.rs`), the commands of the
//! NetConnection and its NetStreams (`commands.rs`), media and data from a publisher
//! (`media.rs`), the answers the application gives and the replies they send
//! (`replies.rs`), and the NetStreams a connection created (`streams.rs`).

use bytes::BytesMut;

use super::chunk::{DecoderLimits, OutBuf, PendingBudget};
use super::message::Message;
use super::message_layer::{Incoming, MessageLayer, MessageLayerError};

mod commands;
mod events;
mod media;
mod replies;
mod streams;
#[cfg(test)]
mod tests;

pub use events::ServerEvent;
pub use replies::status_object;
use streams::StreamRole;

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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            chunk_size: 4096,
            window_ack_size: 5_000_000,
            limits: DecoderLimits::default(),
            pending_budget: None,
        }
    }
}

/// Why a session was ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The chunk stream or a message was malformed.
    #[error(transparent)]
    MessageLayer(#[from] MessageLayerError),
    /// The peer broke the command sequence.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
}

/// State of one server-side RTMP connection after the handshake.
pub struct ServerSession {
    config: ServerConfig,
    messages: MessageLayer,
    /// The app and the query from connect; `None` until connect arrived.
    connection: Option<(String, String)>,
    /// NetStreams created by the peer: (id, role). Tiny, so a Vec beats a map.
    streams: Vec<(u32, StreamRole)>,
    next_stream_id: u32,
    /// Aggregate messages expand to several events; they wait here.
    pending: std::collections::VecDeque<ServerEvent>,
    /// Whether media on message stream 0 has been logged, as taken by the
    /// publishing stream or as ignored: once per connection each, so a peer cannot
    /// flood the log.
    noted_stream_0_media: bool,
    warned_unowned_media: bool,
}

impl ServerSession {
    /// A session that has completed its handshake.
    pub fn new(config: ServerConfig) -> Self {
        let messages = match &config.pending_budget {
            Some(budget) => MessageLayer::with_budget(config.limits, budget.account()),
            None => MessageLayer::new(config.limits),
        };
        Self {
            messages,
            config,
            connection: None,
            streams: Vec::new(),
            next_stream_id: 1,
            pending: std::collections::VecDeque::new(),
            noted_stream_0_media: false,
            warned_unowned_media: false,
        }
    }

    /// Commands received so far, counting with them every other message that is not
    /// media (protocol control, user control such as pings). The session has no clock:
    /// the driver measures the rate, and closes a connection that sends these far faster
    /// than any encoder does. Media is not counted, even while nothing is published (it is
    /// dropped, and costs what any media costs).
    pub fn commands_received(&self) -> u64 {
        self.messages.non_media_messages()
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

    /// Whether connect has been received.
    pub fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    /// Bytes received on the chunk stream so far.
    pub fn bytes_in(&self) -> u64 {
        self.messages.bytes_in()
    }

    /// Bytes waiting to be written to the peer.
    pub fn out(&mut self) -> &mut OutBuf {
        self.messages.out()
    }

    /// Processes received bytes until an event comes out or more bytes are needed.
    pub fn poll(&mut self, buf: &mut BytesMut) -> Result<Option<ServerEvent>, SessionError> {
        if let Some(event) = self.pending.pop_front() {
            return Ok(Some(event));
        }
        while let Some(incoming) = self.messages.poll(buf)? {
            if let Some(event) = self.handle(incoming)? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    fn handle(&mut self, incoming: Incoming) -> Result<Option<ServerEvent>, SessionError> {
        let Incoming {
            stream_id,
            timestamp,
            message,
        } = incoming;
        let message = match message {
            Message::Command(command) => return self.handle_command(stream_id, command),
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
