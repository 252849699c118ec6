//! The server side of an RTMP session, free of I/O: what an encoder or a player says,
//! and what a server must answer.
//!
//! [`ServerSession::poll`] turns received bytes into [`ServerEvent`]s and queues the
//! protocol's own replies (connect result, createStream result, status messages).
//! Decisions that need the rest of prism (may this name be published? does that
//! stream exist?) come out as events, and the application answers through
//! [`ServerSession::accept_publish`], [`ServerSession::reject_publish`] and friends.

use bytes::{Bytes, BytesMut};

use super::amf0::Amf0Value;
use super::chunk::{DecoderLimits, MessageHeader, OutBuf, PendingBudget};
use super::message::{Command, Message, UserControl, type_id};
use super::message_layer::{
    CSID_COMMAND, CSID_STREAM, Incoming, MessageLayer, MessageLayerError, media_csid,
};
use crate::stream_name::StreamName;

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

/// What the application must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// The peer wants to publish; answer with `accept_publish` or `reject_publish`.
    Publish {
        /// The NetStream it publishes on.
        stream_id: u32,
        /// App, bare name and query string.
        name: StreamName,
    },
    /// The peer wants to play; answer with `accept_play` or `reject_play`.
    Play {
        /// The NetStream it plays on.
        stream_id: u32,
        /// App, bare name and query string.
        name: StreamName,
    },
    /// Stream metadata (`onMetaData` object), already unwrapped from `@setDataFrame`.
    Metadata {
        /// The publishing NetStream.
        stream_id: u32,
        /// The metadata object (an ECMA array or object).
        metadata: Amf0Value,
    },
    /// An audio message from the publisher.
    Audio {
        /// The publishing NetStream.
        stream_id: u32,
        /// Its timestamp in ms.
        timestamp: u32,
        /// The FLV audio tag body.
        payload: Bytes,
    },
    /// A video message from the publisher.
    Video {
        /// The publishing NetStream.
        stream_id: u32,
        /// Its timestamp in ms.
        timestamp: u32,
        /// The FLV video tag body.
        payload: Bytes,
    },
    /// Another data message from the publisher (cue points, text), passed on as is.
    Data {
        /// The publishing NetStream.
        stream_id: u32,
        /// Its timestamp in ms.
        timestamp: u32,
        /// The AMF0 body.
        payload: Bytes,
    },
    /// The publisher ended its stream (FCUnpublish, deleteStream or closeStream).
    Unpublish {
        /// The NetStream that stops publishing.
        stream_id: u32,
    },
    /// The player stopped playing (deleteStream or closeStream).
    StopPlay {
        /// The NetStream that stops playing.
        stream_id: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamRole {
    Created,
    PublishPending,
    Publishing,
    PlayPending,
    Playing,
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

    fn role(&self, stream_id: u32) -> Option<StreamRole> {
        self.streams
            .iter()
            .find(|(id, _)| *id == stream_id)
            .map(|(_, role)| *role)
    }

    fn set_role(&mut self, stream_id: u32, role: StreamRole) {
        if let Some(entry) = self.streams.iter_mut().find(|(id, _)| *id == stream_id) {
            entry.1 = role;
        }
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

    /// The publishing stream a media, data or aggregate message belongs to, if any.
    ///
    /// Normally that is the message stream it came on. Some relays (Node-Media-Server
    /// 4's push) publish on stream 1 and then send `@setDataFrame`, audio and video on
    /// message stream 0, the NetConnection's; nginx-rtmp and Node-Media-Server 2
    /// accept that, so prism does too when the connection has exactly one publishing
    /// stream: there is then only one stream the media can mean. With none or several,
    /// it is ignored, with one warning per connection.
    fn media_owner(&mut self, stream_id: u32, message: &Message) -> Option<u32> {
        if self.role(stream_id) == Some(StreamRole::Publishing) {
            return Some(stream_id);
        }
        if stream_id != 0 {
            tracing::debug!(
                stream_id,
                "media on a stream that is not publishing; ignored"
            );
            return None;
        }
        let mut publishing = self
            .streams
            .iter()
            .filter(|(_, role)| *role == StreamRole::Publishing)
            .map(|(id, _)| *id);
        match (publishing.next(), publishing.next()) {
            (Some(owner), None) => {
                if !self.noted_stream_0_media {
                    self.noted_stream_0_media = true;
                    tracing::debug!(
                        stream_id = owner,
                        "media on message stream 0: taken as the publishing stream's"
                    );
                }
                Some(owner)
            }
            (first, _) => {
                if !self.warned_unowned_media {
                    self.warned_unowned_media = true;
                    let kind = match message {
                        Message::Audio(_) => "audio",
                        Message::Video(_) => "video",
                        Message::Aggregate(_) => "aggregate",
                        _ => "data",
                    };
                    let publishing = if first.is_some() { "several" } else { "no" };
                    tracing::warn!(
                        "{kind} on message stream 0 while {publishing} streams publish: \
                         ignored, and so is any more (warned once per connection)"
                    );
                }
                None
            }
        }
    }

    fn handle_data(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        values: Vec<Amf0Value>,
        payload: Bytes,
    ) -> Option<ServerEvent> {
        let mut values = values.into_iter();
        let mut first = values.next();
        if first.as_ref().and_then(Amf0Value::as_str) == Some("@setDataFrame") {
            first = values.next();
        }
        match first.as_ref().and_then(Amf0Value::as_str) {
            Some("onMetaData") => values.next().map(|metadata| ServerEvent::Metadata {
                stream_id,
                metadata,
            }),
            _ => Some(ServerEvent::Data {
                stream_id,
                timestamp,
                payload,
            }),
        }
    }

    fn expand_aggregate(&mut self, stream_id: u32, timestamp: u32, payload: &Bytes) {
        let mut base = None;
        for tag in super::aggregate::tags(payload) {
            let first = *base.get_or_insert(tag.timestamp);
            let timestamp = timestamp.wrapping_add(tag.timestamp.wrapping_sub(first));
            let event = match tag.type_id {
                type_id::AUDIO => ServerEvent::Audio {
                    stream_id,
                    timestamp,
                    payload: tag.data,
                },
                type_id::VIDEO => ServerEvent::Video {
                    stream_id,
                    timestamp,
                    payload: tag.data,
                },
                _ => continue,
            };
            self.pending.push_back(event);
        }
    }

    fn handle_command(
        &mut self,
        stream_id: u32,
        command: Command,
    ) -> Result<Option<ServerEvent>, SessionError> {
        if self.connection.is_none() && command.name != "connect" {
            return Err(SessionError::Protocol("a command arrived before connect"));
        }
        match command.name.as_str() {
            "connect" => self.on_connect(&command).map(|()| None),
            "createStream" => {
                self.on_create_stream(&command);
                Ok(None)
            }
            "releaseStream" | "FCPublish" | "getStreamLength" => {
                self.on_preparation(&command);
                Ok(None)
            }
            "publish" => Ok(self.on_publish(stream_id, &command)),
            "play" => Ok(self.on_play(stream_id, &command)),
            "FCUnpublish" => Ok(self.on_fc_unpublish()),
            "deleteStream" => {
                let id = command
                    .args
                    .first()
                    .and_then(Amf0Value::as_f64)
                    .unwrap_or(0.0);
                Ok(self.on_close_stream(id as u32))
            }
            "closeStream" => Ok(self.on_close_stream(stream_id)),
            other => {
                tracing::debug!(command = other, "command ignored");
                Ok(None)
            }
        }
    }

    fn on_connect(&mut self, command: &Command) -> Result<(), SessionError> {
        if self.connection.is_some() {
            return Err(SessionError::Protocol("connect sent twice"));
        }
        let field = |key: &str| command.object.get(key).and_then(Amf0Value::as_str);
        let app = field("app").unwrap_or_default();
        let tc_url = field("tcUrl").unwrap_or_default();
        let (app, query) = StreamName::split_app(app, tc_url);
        let object_encoding = command
            .object
            .get("objectEncoding")
            .and_then(Amf0Value::as_f64)
            .unwrap_or(0.0);
        self.connection = Some((app, query));

        self.messages
            .send_window_ack_size(self.config.window_ack_size);
        self.messages
            .send_peer_bandwidth(self.config.window_ack_size);
        self.messages.set_chunk_size(self.config.chunk_size);
        let properties = Amf0Value::Object(vec![
            ("fmsVer".into(), "FMS/3,0,1,123".into()),
            ("capabilities".into(), 31.0.into()),
        ]);
        let info = status_object(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
            Some(object_encoding),
        );
        self.send_command(0, "_result", command.transaction_id, properties, vec![info]);
        Ok(())
    }

    fn on_create_stream(&mut self, command: &Command) {
        if self.streams.len() as u32 >= MAX_STREAMS_PER_CONNECTION {
            let info = status_object(
                "error",
                "NetConnection.Call.Failed",
                "Too many streams on one connection.",
                None,
            );
            self.send_command(
                0,
                "_error",
                command.transaction_id,
                Amf0Value::Null,
                vec![info],
            );
            return;
        }
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        self.streams.push((id, StreamRole::Created));
        self.send_command(
            0,
            "_result",
            command.transaction_id,
            Amf0Value::Null,
            vec![f64::from(id).into()],
        );
    }

    /// releaseStream, FCPublish and getStreamLength are courtesy calls around publish
    /// and play. Clients send them and carry on without waiting, so the answers only
    /// have to be harmless to the strictest client:
    ///
    /// - releaseStream gets no answer, as from nginx-rtmp. A `_result` is worse than
    ///   silence: xiu's relay sends releaseStream and FCPublish with transaction id 1,
    ///   connect's, and takes any `_result` for 1 as connect's answer, starting over;
    ///   and SRS's `_result(txn, null, undefined)` (what prism used to send) carries an
    ///   AMF0 `undefined` that xiu's decoder refuses.
    /// - FCPublish gets `onFCPublish` (a notification, transaction 0), as from
    ///   FFmpeg's own server (SRS sends it at publish).
    /// - getStreamLength gets `_result(txn, null, 0)`: ffmpeg reads the number as the
    ///   duration, 0 meaning live. Never an `_error`: old ffmpeg aborted on those.
    fn on_preparation(&mut self, command: &Command) {
        match command.name.as_str() {
            "FCPublish" => {
                let info = status_object("status", "NetStream.Publish.Start", "FCPublish", None);
                self.send_command(0, "onFCPublish", 0.0, Amf0Value::Null, vec![info]);
            }
            "getStreamLength" => self.send_command(
                0,
                "_result",
                command.transaction_id,
                Amf0Value::Null,
                vec![0.0.into()],
            ),
            _ => {}
        }
    }

    fn stream_name(&self, command: &Command) -> Option<StreamName> {
        let (app, query) = self.connection.as_ref()?;
        StreamName::parse(app, query, command.first_string_arg()?)
    }

    fn on_publish(&mut self, stream_id: u32, command: &Command) -> Option<ServerEvent> {
        if self.role(stream_id) != Some(StreamRole::Created) {
            self.send_status(
                stream_id,
                "error",
                "NetStream.Publish.BadName",
                "publish on a stream that was not created or is in use",
            );
            return None;
        }
        let Some(name) = self.stream_name(command) else {
            self.send_status(
                stream_id,
                "error",
                "NetStream.Publish.BadName",
                "invalid stream name",
            );
            return None;
        };
        self.set_role(stream_id, StreamRole::PublishPending);
        Some(ServerEvent::Publish { stream_id, name })
    }

    fn on_play(&mut self, stream_id: u32, command: &Command) -> Option<ServerEvent> {
        if self.role(stream_id) != Some(StreamRole::Created) {
            self.send_status(
                stream_id,
                "error",
                "NetStream.Play.Failed",
                "play on a stream that was not created or is in use",
            );
            return None;
        }
        let Some(name) = self.stream_name(command) else {
            self.send_status(
                stream_id,
                "error",
                "NetStream.Play.StreamNotFound",
                "invalid stream name",
            );
            return None;
        };
        self.set_role(stream_id, StreamRole::PlayPending);
        Some(ServerEvent::Play { stream_id, name })
    }

    fn on_fc_unpublish(&mut self) -> Option<ServerEvent> {
        let stream_id = self
            .streams
            .iter()
            .find(|(_, role)| *role == StreamRole::Publishing)
            .map(|(id, _)| *id)?;
        self.finish_publishing(stream_id)
    }

    fn on_close_stream(&mut self, stream_id: u32) -> Option<ServerEvent> {
        match self.role(stream_id)? {
            StreamRole::Publishing | StreamRole::PublishPending => {
                let event = self.finish_publishing(stream_id);
                self.streams.retain(|(id, _)| *id != stream_id);
                event
            }
            StreamRole::Playing | StreamRole::PlayPending => {
                self.streams.retain(|(id, _)| *id != stream_id);
                Some(ServerEvent::StopPlay { stream_id })
            }
            StreamRole::Created => {
                self.streams.retain(|(id, _)| *id != stream_id);
                None
            }
        }
    }

    fn finish_publishing(&mut self, stream_id: u32) -> Option<ServerEvent> {
        let was_publishing = self.role(stream_id) == Some(StreamRole::Publishing);
        self.set_role(stream_id, StreamRole::Created);
        if !was_publishing {
            return None;
        }
        self.send_status(
            stream_id,
            "status",
            "NetStream.Unpublish.Success",
            "Stopped publishing.",
        );
        Some(ServerEvent::Unpublish { stream_id })
    }

    /// Tells the encoder it may start sending media.
    pub fn accept_publish(&mut self, stream_id: u32) {
        self.set_role(stream_id, StreamRole::Publishing);
        self.messages
            .send_user_control(UserControl::StreamBegin(stream_id));
        self.send_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            "Publishing started.",
        );
    }

    /// Refuses a publish with a status code such as `NetStream.Publish.BadName`.
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        self.set_role(stream_id, StreamRole::Created);
        self.send_status(stream_id, "error", code, description);
    }

    /// Starts playback: the replies a player waits for before it reads media.
    pub fn accept_play(&mut self, stream_id: u32) {
        self.set_role(stream_id, StreamRole::Playing);
        self.messages
            .send_user_control(UserControl::StreamBegin(stream_id));
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.Reset",
            "Playing and resetting.",
        );
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.Start",
            "Started playing.",
        );
        let access = Message::data(vec!["|RtmpSampleAccess".into(), false.into(), false.into()]);
        self.messages.send(CSID_STREAM, 0, stream_id, &access);
    }

    /// Refuses a play request, e.g. with `NetStream.Play.StreamNotFound`.
    pub fn reject_play(&mut self, stream_id: u32, code: &str, description: &str) {
        self.set_role(stream_id, StreamRole::Created);
        self.send_status(stream_id, "error", code, description);
    }

    /// Tells a player its stream has ended (the publisher left), as nginx-rtmp does:
    /// ffmpeg treats `NetStream.Play.UnpublishNotify` as a clean end of stream.
    pub fn end_play(&mut self, stream_id: u32) {
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.UnpublishNotify",
            "The stream was unpublished.",
        );
        self.messages
            .send_user_control(UserControl::StreamEof(stream_id));
        self.set_role(stream_id, StreamRole::Created);
    }

    /// Queues one media or data message for a player; the payload is shared, not copied.
    pub fn send_media(&mut self, stream_id: u32, type_id: u8, timestamp: u32, payload: &Bytes) {
        let header = MessageHeader {
            csid: media_csid(type_id),
            timestamp,
            type_id,
            stream_id,
        };
        self.messages.send_raw(&header, payload);
    }

    fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let info = status_object(level, code, description, None);
        let command = Command::new("onStatus", 0.0, Amf0Value::Null, vec![info]);
        self.messages
            .send(CSID_STREAM, 0, stream_id, &Message::Command(command));
    }

    fn send_command(
        &mut self,
        stream_id: u32,
        name: &str,
        transaction_id: f64,
        object: Amf0Value,
        args: Vec<Amf0Value>,
    ) {
        let command = Command::new(name, transaction_id, object, args);
        self.messages
            .send(CSID_COMMAND, 0, stream_id, &Message::Command(command));
    }
}

/// The `{level, code, description}` object of `onStatus` and `_result` replies.
pub fn status_object(
    level: &str,
    code: &str,
    description: &str,
    object_encoding: Option<f64>,
) -> Amf0Value {
    let mut fields = vec![
        ("level".to_owned(), Amf0Value::from(level)),
        ("code".to_owned(), Amf0Value::from(code)),
        ("description".to_owned(), Amf0Value::from(description)),
    ];
    if let Some(encoding) = object_encoding {
        fields.push(("objectEncoding".to_owned(), encoding.into()));
    }
    Amf0Value::Object(fields)
}

#[cfg(test)]
mod tests;
