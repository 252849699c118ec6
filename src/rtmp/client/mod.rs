//! The client side of an RTMP session, free of I/O: what prism says to an ingest
//! (YouTube, Twitch, Facebook, nginx-rtmp, SRS) to push a stream there, and what it
//! makes of the answers; and, with [`ClientConfig::play`], what a cluster node says
//! to the node that holds a stream to play it from there (connect, createStream,
//! `play`; the server's media then comes out as [`ClientEvent::Media`]).
//!
//! It is the mirror image of [`super::server::ServerSession`] and shares its
//! [`MessageLayer`]: chunking, acknowledgements and ping replies are handled there, never
//! here. The session runs the handshake itself ([`super::handshake::ClientHandshake`]);
//! the driver writes [`ClientSession::out`] after every call, and feeds received bytes to
//! [`ClientSession::poll`] until it reports [`ClientEvent::Publishing`]; from then on it
//! sends metadata and media.
//!
//! The command sequence is OBS's and ffmpeg's, the best-tested one against every big
//! ingest: the plain handshake; Set Chunk Size and `connect` at once; on connect's
//! `_result`, `releaseStream`, `FCPublish` and `createStream` back to back; on
//! createStream's `_result`, `publish(name, "live")`; then wait for
//! `onStatus NetStream.Publish.Start`.
//!
//! Time is an input, as for the server session: there is no clock inside. The session is
//! given the time its attempt started, says when the server's acceptance of the publish
//! is due ([`ClientSession::poll_timeout`], from the config's `publish_timeout`), and
//! [`ClientSession::handle_timeout`] says whether it is overdue. Once publishing, an ingest
//! may stay silent as long as it likes: the driver only bounds its own writes.
//!
//! The stream name is a secret (a platform stream key). Every text that comes from
//! the server and ends up in a [`ClientEvent`] or a [`ClientError`] has it masked
//! when it is built, so neither `Display` nor `Debug` can leak it (servers echo
//! names in their descriptions: "stream key X is invalid").
//!
//! The files: where and as whom to publish (`config.rs`), what the driver hears
//! (`events.rs`, `error.rs`), the server's answers and the commands each one triggers
//! (`sequence.rs`), and reading and masking the server's status texts (`status.rs`).

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use super::amf0::Amf0Value;
use super::chunk::{MessageHeader, OutBuf};
use super::handshake::{ClientHandshake, Progress};
use super::message::{Command, Message, type_id};
use super::message_layer::{CSID_COMMAND, CSID_STREAM, Incoming, MessageLayer, media_csid};

mod config;
mod error;
mod events;
mod sequence;
mod status;
#[cfg(test)]
mod tests;

pub use config::{ClientConfig, DEFAULT_CHUNK_SIZE, DEFAULT_FLASH_VER};
pub use error::ClientError;
pub use events::ClientEvent;
pub use status::mask_stream_name;

/// Smallest chunk size we announce: SRS refuses a Set Chunk Size below the spec's
/// initial 128.
const MIN_CHUNK_SIZE: u32 = 128;

/// `"@setDataFrame"` as an AMF0 string: what publishers put before `onMetaData` so
/// that the server stores the metadata for its players (ffmpeg, OBS, nginx push).
const SET_DATA_FRAME_AMF0: &[u8] = b"\x02\x00\x0d@setDataFrame";

/// The transaction id of connect. Fixed because it is the first command and servers
/// (and our tests) know it as 1; later ones count up from here.
pub(super) const CONNECT_TXN: u32 = 1;

/// Where the session is in the publish sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// connect sent; waiting for its answer.
    Connecting,
    /// releaseStream, FCPublish and createStream sent; waiting for createStream's.
    CreatingStream { txn: u32 },
    /// publish sent on `stream_id`; waiting for `NetStream.Publish.Start`.
    PublishSent { stream_id: u32, txn: u32 },
    /// Media may flow.
    Publishing { stream_id: u32 },
    /// play sent on `stream_id`; waiting for `NetStream.Play.Start`.
    PlaySent { stream_id: u32, txn: u32 },
    /// The server's media flows to us.
    Playing { stream_id: u32 },
    /// unpublish() was called: nothing more is sent and answers are ignored.
    Closed,
}

/// State of one client RTMP connection (publishing, or playing), from its first byte.
pub struct ClientSession {
    config: ClientConfig,
    /// The handshake until it is done; boxed, since it holds 3 KB that are dropped then.
    handshake: Option<Box<ClientHandshake>>,
    messages: MessageLayer,
    state: State,
    next_txn: u32,
    /// Whether `_checkbw` was sent: once is what librtmp does, and keeps a server that
    /// repeats onBWDone from making us answer forever.
    bw_checked: bool,
    /// The Unpublished event, between unpublish() and the next poll().
    pending: Option<ClientEvent>,
    /// When the server must have accepted the publish (from `publish_timeout`).
    publish_deadline: Option<Instant>,
}

impl ClientSession {
    /// A session from the first byte: C0+C1 (a plain handshake, as OBS sends) are queued
    /// at once, and Set Chunk Size and connect once the server's handshake is in. Write
    /// [`out`](Self::out) to the server. `started` is when the attempt began (the relay
    /// takes the start of its TCP connect): the publish deadline counts from it.
    pub fn new(config: ClientConfig, started: Instant) -> Self {
        let mut handshake = ClientHandshake::new(0);
        let mut session = Self::fresh(config, started);
        while let Some(bytes) = handshake.take_output() {
            session.messages.out().push_shared(bytes);
        }
        session.handshake = Some(Box::new(handshake));
        session
    }

    /// A session for a caller that did the handshake itself (a tool or test peer that
    /// speaks the raw handshake first): Set Chunk Size and connect are queued at once.
    pub fn after_handshake(config: ClientConfig, started: Instant) -> Self {
        let mut session = Self::fresh(config, started);
        session.start();
        session
    }

    fn fresh(config: ClientConfig, started: Instant) -> Self {
        Self {
            messages: MessageLayer::new(config.limits),
            publish_deadline: config.publish_timeout.map(|timeout| started + timeout),
            config,
            handshake: None,
            state: State::Connecting,
            next_txn: CONNECT_TXN,
            bw_checked: false,
            pending: None,
        }
    }

    /// Announces our chunk size before connect (OBS does; it only has to precede
    /// our first large message) and sends connect with OBS's fields.
    fn start(&mut self) {
        let chunk_size = self
            .config
            .chunk_size
            .clamp(MIN_CHUNK_SIZE, super::message_layer::MAX_OUT_CHUNK_SIZE);
        self.messages.set_chunk_size(chunk_size);
        let tc_url = Amf0Value::from(self.config.tc_url.as_str());
        // OBS's connect: the set every ingest has seen most. swfUrl = tcUrl is OBS's
        // doing; ffmpeg omits it; servers only log it. No objectEncoding: absent
        // means AMF0, which is all we speak.
        let object = Amf0Value::object([
            ("app", self.config.app.as_str().into()),
            ("type", "nonprivate".into()),
            ("flashVer", self.config.flash_ver.as_str().into()),
            ("swfUrl", tc_url.clone()),
            ("tcUrl", tc_url),
        ]);
        let txn = self.take_txn();
        self.send_command(0, "connect", txn, object, Vec::new());
    }

    /// Whether the server accepted publish and media may be sent.
    pub fn is_publishing(&self) -> bool {
        matches!(self.state, State::Publishing { .. })
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.handshake.is_some()
    }

    /// Bytes received on the chunk stream so far (after the handshake).
    pub fn bytes_in(&self) -> u64 {
        self.messages.bytes_in()
    }

    /// Bytes waiting to be written to the server.
    pub fn out(&mut self) -> &mut OutBuf {
        self.messages.out()
    }

    /// Processes received bytes until an event comes out or more bytes are needed.
    /// After an error the session is finished: close the connection.
    pub fn poll(&mut self, buf: &mut BytesMut) -> Result<Option<ClientEvent>, ClientError> {
        if let Some(event) = self.pending.take() {
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
        Ok(None)
    }

    /// When the server's acceptance of the publish is due: the driver sleeps until then
    /// and calls [`Self::handle_timeout`]. `None` without a `publish_timeout`, once
    /// publishing, and after [`Self::unpublish`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Publishing { .. } | State::Playing { .. } | State::Closed => None,
            _ => self.publish_deadline,
        }
    }

    /// [`ClientError::Timeout`] if the publish is overdue at `now`; `Ok` otherwise.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        match (self.poll_timeout(), self.config.publish_timeout) {
            (Some(at), Some(timeout)) if now >= at => Err(ClientError::Timeout(timeout)),
            _ => Ok(()),
        }
    }

    /// Feeds the handshake, queueing C2; once the server's handshake is in, queues Set
    /// Chunk Size and connect (unless unpublished meanwhile) and returns true: the rest of
    /// `buf` is the chunk stream's.
    fn continue_handshake(&mut self, buf: &mut BytesMut) -> Result<bool, ClientError> {
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
        if self.state != State::Closed {
            self.start();
        }
        Ok(true)
    }

    /// Sends the stream's metadata. `on_metadata_body` is the AMF0 `"onMetaData",
    /// {...}` the hub stores; it goes out as `"@setDataFrame", "onMetaData", {...}`,
    /// the form that makes a server keep it for its players. Dropped unless
    /// publishing.
    pub fn send_metadata(&mut self, timestamp: u32, on_metadata_body: &Bytes) {
        let Some(stream_id) = self.publishing_stream() else {
            tracing::debug!("metadata before publish started or after unpublish; dropped");
            return;
        };
        let header = MessageHeader {
            csid: CSID_STREAM,
            timestamp,
            type_id: type_id::DATA_AMF0,
            stream_id,
        };
        self.messages
            .send_raw(&header, &with_set_data_frame(on_metadata_body));
    }

    /// Queues one audio, video or data message; the payload is shared, not copied.
    /// Audio and video go on chunk streams of their own (as the server side sends
    /// them), so each keeps small header deltas. Dropped unless publishing: call it
    /// after [`ClientEvent::Publishing`].
    pub fn send_media(&mut self, type_id: u8, timestamp: u32, payload: &Bytes) {
        let Some(stream_id) = self.publishing_stream() else {
            tracing::debug!(
                type_id,
                "media before publish started or after unpublish; dropped"
            );
            return;
        };
        let header = MessageHeader {
            csid: media_csid(type_id),
            timestamp,
            type_id,
            stream_id,
        };
        self.messages.send_raw(&header, payload);
    }

    /// Ends the push the way ffmpeg does and platforms take as a clean end:
    /// FCUnpublish(name) and deleteStream(id), when there is something to undo.
    /// The next [`poll`](Self::poll) reports [`ClientEvent::Unpublished`]; then
    /// flush [`out`](Self::out) and close. Idempotent.
    pub fn unpublish(&mut self) {
        match self.state {
            State::Closed => return,
            State::PlaySent { stream_id, .. } | State::Playing { stream_id } => {
                let txn = self.take_txn();
                let id = Amf0Value::Number(f64::from(stream_id));
                self.send_command(0, "deleteStream", txn, Amf0Value::Null, vec![id]);
            }
            State::PublishSent { stream_id, .. } | State::Publishing { stream_id } => {
                let name = self.name_arg();
                let txn = self.take_txn();
                self.send_command(0, "FCUnpublish", txn, Amf0Value::Null, vec![name]);
                let txn = self.take_txn();
                let id = Amf0Value::Number(f64::from(stream_id));
                self.send_command(0, "deleteStream", txn, Amf0Value::Null, vec![id]);
            }
            // Nothing was published yet; closing the connection undoes the rest.
            State::Connecting | State::CreatingStream { .. } => {}
        }
        self.state = State::Closed;
        self.pending = Some(ClientEvent::Unpublished);
    }

    fn publishing_stream(&self) -> Option<u32> {
        match self.state {
            State::Publishing { stream_id } => Some(stream_id),
            _ => None,
        }
    }

    fn handle(&mut self, incoming: Incoming) -> Result<Option<ClientEvent>, ClientError> {
        let playing =
            matches!(self.state, State::Playing { stream_id } if stream_id == incoming.stream_id);
        match incoming.message {
            Message::Command(command) => self.handle_command(&command),
            Message::Audio(payload) if playing => Ok(Some(ClientEvent::Media {
                type_id: type_id::AUDIO,
                timestamp: incoming.timestamp,
                payload,
            })),
            Message::Video(payload) if playing => Ok(Some(ClientEvent::Media {
                type_id: type_id::VIDEO,
                timestamp: incoming.timestamp,
                payload,
            })),
            Message::Data { values, payload } if playing => {
                Ok(played_data(incoming.timestamp, values, payload))
            }
            // Servers may send StreamBegin, |RtmpSampleAccess, even media: nothing a
            // publisher acts on.
            other => {
                tracing::trace!(?other, "message from the server ignored");
                Ok(None)
            }
        }
    }

    fn name_arg(&self) -> Amf0Value {
        Amf0Value::from(self.config.stream_name.as_str())
    }

    fn take_txn(&mut self) -> u32 {
        let txn = self.next_txn;
        self.next_txn = self.next_txn.wrapping_add(1);
        txn
    }

    fn send_command(
        &mut self,
        stream_id: u32,
        name: &str,
        txn: u32,
        object: Amf0Value,
        args: Vec<Amf0Value>,
    ) {
        let command = Command::new(name, f64::from(txn), object, args);
        self.messages
            .send(CSID_COMMAND, 0, stream_id, &Message::Command(command));
    }
}

/// A data message of the stream played: its metadata (`onMetaData`, with or
/// without `@setDataFrame` before it), or any other data as received; `None` for
/// the server's `|RtmpSampleAccess`, which is about the connection, not the stream.
fn played_data(timestamp: u32, values: Vec<Amf0Value>, payload: Bytes) -> Option<ClientEvent> {
    let mut values = values.into_iter();
    let mut first = values.next();
    if first.as_ref().and_then(Amf0Value::as_str) == Some("@setDataFrame") {
        first = values.next();
    }
    match (first.as_ref().and_then(Amf0Value::as_str), values.next()) {
        (Some("|RtmpSampleAccess"), _) => None,
        (Some("onMetaData"), Some(metadata)) => Some(ClientEvent::Metadata { metadata }),
        _ => Some(ClientEvent::Data { timestamp, payload }),
    }
}

/// Prepends `"@setDataFrame"` to an `onMetaData` body, unless it is already there.
fn with_set_data_frame(body: &Bytes) -> Bytes {
    if body.starts_with(SET_DATA_FRAME_AMF0) {
        return body.clone();
    }
    let mut wrapped = BytesMut::with_capacity(SET_DATA_FRAME_AMF0.len() + body.len());
    wrapped.put_slice(SET_DATA_FRAME_AMF0);
    wrapped.put_slice(body);
    wrapped.freeze()
}
