//! The publishing client side of an RTMP session, free of I/O: what prism says to an
//! ingest (YouTube, Twitch, Facebook, nginx-rtmp, SRS) to push a stream there, and
//! what it makes of the answers.
//!
//! It is the mirror image of [`super::server::ServerSession`] and shares its
//! [`MessageLayer`]: chunking, acknowledgements and ping replies are handled there, never
//! here. The driver does the handshake ([`super::handshake::ClientHandshake`]),
//! writes [`ClientSession::out`] after every call, and feeds received bytes to
//! [`ClientSession::poll`] until it reports [`ClientEvent::Publishing`]; from then
//! on it sends metadata and media.
//!
//! The command sequence is OBS's and ffmpeg's (`rtmp-interop.md` 3.1, 3.2), the
//! best-tested one against every big ingest: Set Chunk Size and `connect` at once;
//! on connect's `_result`, `releaseStream`, `FCPublish` and `createStream` back to
//! back; on createStream's `_result`, `publish(name, "live")`; then wait for
//! `onStatus NetStream.Publish.Start`.
//!
//! There is no clock inside: the driver bounds every wait (for Publishing, for
//! the server's silence) with its own timeouts.
//!
//! The stream name is a secret (a platform stream key). Every text that comes from
//! the server and ends up in a [`ClientEvent`] or a [`ClientError`] has it masked
//! when it is built, so neither `Display` nor `Debug` can leak it (servers echo
//! names in their descriptions: "stream key X is invalid").

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::amf0::Amf0Value;
use super::chunk::{DecoderLimits, MessageHeader, OutBuf};
use super::message::{Command, Message, type_id};
use super::message_layer::{
    CSID_COMMAND, CSID_STREAM, Incoming, MessageLayer, MessageLayerError, media_csid,
};

/// The flashVer we announce: the "FMLE/3.0 (compatible; ...)" form is what OBS and
/// ffmpeg send when publishing, and what ingests expect from an encoder.
pub const DEFAULT_FLASH_VER: &str = "FMLE/3.0 (compatible; prism)";

/// Our default outgoing chunk size: OBS's value, announced before connect like OBS
/// does. Larger chunks cost fewer header bytes per video frame.
pub const DEFAULT_CHUNK_SIZE: u32 = 4096;

/// Smallest chunk size we announce: SRS refuses a Set Chunk Size below the spec's
/// initial 128.
const MIN_CHUNK_SIZE: u32 = 128;

/// What a masked stream name is replaced with.
const MASK: &str = "****";

/// `"@setDataFrame"` as an AMF0 string: what publishers put before `onMetaData` so
/// that the server stores the metadata for its players (ffmpeg, OBS, nginx push).
const SET_DATA_FRAME_AMF0: &[u8] = b"\x02\x00\x0d@setDataFrame";

/// The transaction id of connect. Fixed because it is the first command and servers
/// (and our tests) know it as 1; later ones count up from here.
const CONNECT_TXN: u32 = 1;

/// onStatus codes that end a publish whatever their level, as OBS treats them
/// (some servers send them with level "status").
const FATAL_CODES: &[&str] = &[
    "NetStream.Publish.BadName",
    "NetStream.Publish.Denied",
    "NetStream.Publish.Rejected",
    "NetStream.Publish.Failed",
    "NetStream.Failed",
    "NetConnection.Connect.Rejected",
    "NetConnection.Connect.InvalidApp",
    "NetConnection.Connect.Failed",
];

/// Where and as whom to publish.
///
/// `Debug` masks the stream name: configs end up in logs.
#[derive(Clone)]
pub struct ClientConfig {
    /// The application (`live2` for YouTube, `app` for Twitch, `rtmp` for Facebook).
    pub app: String,
    /// `rtmp[s]://host[:port]/app`: SRS refuses a connect without it, and ingests
    /// route on it.
    pub tc_url: String,
    /// The stream key, with its `?query` if any (`key?backup=1`); sent verbatim.
    pub stream_name: String,
    /// The connect command's flashVer.
    pub flash_ver: String,
    /// Our outgoing chunk size (clamped to 128..=65536).
    pub chunk_size: u32,
    /// Bounds on what the server may make us buffer.
    pub limits: DecoderLimits,
}

impl ClientConfig {
    /// A config from a server URL and a stream key, the way OBS takes them:
    /// `rtmp://a.rtmp.youtube.com/live2` + key gives app `live2`. Everything after
    /// the host is the app (it may hold a `/` or a `?query`, e.g. YouTube's
    /// `live2?backup=1`); a trailing `/` (Facebook's `.../rtmp/`) is dropped.
    pub fn new(server_url: &str, stream_name: &str) -> Self {
        let tc_url = server_url.trim_end_matches('/');
        let after_scheme = tc_url.split_once("://").map_or(tc_url, |(_, rest)| rest);
        let app = after_scheme.split_once('/').map_or("", |(_, app)| app);
        Self {
            app: app.to_owned(),
            tc_url: tc_url.to_owned(),
            stream_name: stream_name.to_owned(),
            flash_ver: DEFAULT_FLASH_VER.to_owned(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            limits: DecoderLimits::default(),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("app", &self.app)
            .field("tc_url", &self.tc_url)
            .field("stream_name", &crate::mask::Masked(&self.stream_name))
            .field("flash_ver", &self.flash_ver)
            .field("chunk_size", &self.chunk_size)
            .field("limits", &self.limits)
            .finish()
    }
}

/// What the driver must know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server accepted connect; the stream is being created.
    Connected,
    /// The server accepted publish: metadata and media may be sent now.
    Publishing {
        /// The NetStream we publish on.
        stream_id: u32,
    },
    /// Any other status the server sent (warnings, notices), stream name masked.
    Status {
        /// "status", "warning"...
        level: String,
        /// E.g. `NetStream.Publish.Idle`.
        code: String,
        /// The server's text.
        description: String,
    },
    /// [`ClientSession::unpublish`] was called and its commands are queued: flush
    /// [`ClientSession::out`] and close. Reported at once rather than on the server's
    /// answer, because nginx answers nothing and the driver should not need a timer.
    Unpublished,
}

/// Why a push ended. Server texts in it have the stream name masked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The chunk stream or a message from the server was malformed.
    #[error(transparent)]
    MessageLayer(#[from] MessageLayerError),
    /// connect was refused (`_error`, or an onStatus `NetConnection.Connect.*` error).
    #[error("connect rejected by the server: {code}: {description}")]
    ConnectRejected {
        /// The status code, e.g. `NetConnection.Connect.InvalidApp`.
        code: String,
        /// The server's text.
        description: String,
    },
    /// createStream or publish was refused (`_error`, or an onStatus error such as
    /// `NetStream.Publish.BadName`), or the server ended the publish.
    #[error("publish rejected by the server: {code}: {description}")]
    PublishRejected {
        /// The status code, e.g. `NetStream.Publish.BadName`.
        code: String,
        /// The server's text.
        description: String,
    },
    /// The server broke the command sequence.
    #[error("protocol violation by the server: {0}")]
    Protocol(&'static str),
}

impl ClientError {
    /// True for rejections a retry will not fix (bad or refused key, wrong app): the
    /// relay should stop and tell the user instead of reconnecting. Transport and
    /// protocol errors, `Connect.Failed` and unknown codes are worth a retry.
    ///
    /// A BadName whose text says the name is "already" in use is not permanent:
    /// that is how nginx-rtmp ("Already publishing"), prism and Wowza refuse a key
    /// still held by our own previous, dropped connection, which the server lets go
    /// after its timeout.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::ConnectRejected { code, .. } => matches!(
                code.as_str(),
                "NetConnection.Connect.Rejected" | "NetConnection.Connect.InvalidApp"
            ),
            Self::PublishRejected { code, description } => {
                matches!(
                    code.as_str(),
                    "NetStream.Publish.BadName"
                        | "NetStream.Publish.Denied"
                        | "NetStream.Publish.Rejected"
                ) && !description.to_ascii_lowercase().contains("already")
            }
            Self::MessageLayer(_) | Self::Protocol(_) => false,
        }
    }
}

/// Where the session is in the publish sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// connect sent; waiting for its answer.
    Connecting,
    /// releaseStream, FCPublish and createStream sent; waiting for createStream's.
    CreatingStream { txn: u32 },
    /// publish sent on `stream_id`; waiting for `NetStream.Publish.Start`.
    PublishSent { stream_id: u32, txn: u32 },
    /// Media may flow.
    Publishing { stream_id: u32 },
    /// unpublish() was called: nothing more is sent and answers are ignored.
    Closed,
}

/// The `{level, code, description}` of an onStatus or `_error`, as sent (unmasked).
struct StatusInfo {
    level: String,
    code: String,
    description: String,
}

impl StatusInfo {
    /// Reads the info object leniently: the first argument that is an object, else
    /// the command object; a bare string argument serves as the description.
    fn of(command: &Command) -> Self {
        let info = command
            .args
            .iter()
            .chain(std::iter::once(&command.object))
            .map(|value| value.clone().flatten_amf3())
            .find(|value| value.properties().is_some());
        let field = |key: &str| {
            info.as_ref()
                .and_then(|info| info.get(key))
                .and_then(Amf0Value::as_str)
                .map(str::to_owned)
        };
        let description = field("description")
            .or_else(|| command.first_string_arg().map(str::to_owned))
            .unwrap_or_default();
        Self {
            level: field("level").unwrap_or_default(),
            code: field("code").unwrap_or_default(),
            description,
        }
    }

    fn is_failure(&self) -> bool {
        self.level.eq_ignore_ascii_case("error") || FATAL_CODES.contains(&self.code.as_str())
    }
}

/// State of one publishing RTMP connection after the handshake.
pub struct ClientSession {
    config: ClientConfig,
    messages: MessageLayer,
    state: State,
    next_txn: u32,
    /// Whether `_checkbw` was sent: once is what librtmp does, and keeps a server that
    /// repeats onBWDone from making us answer forever.
    bw_checked: bool,
    /// The Unpublished event, between unpublish() and the next poll().
    pending: Option<ClientEvent>,
}

impl ClientSession {
    /// A session whose handshake is done. Set Chunk Size and connect are queued at
    /// once: write [`out`](Self::out) to the server.
    pub fn new(config: ClientConfig) -> Self {
        let mut session = Self {
            messages: MessageLayer::new(config.limits),
            config,
            state: State::Connecting,
            next_txn: CONNECT_TXN,
            bw_checked: false,
            pending: None,
        };
        session.start();
        session
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

    /// Bytes received on the chunk stream so far.
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
        while let Some(incoming) = self.messages.poll(buf)? {
            if let Some(event) = self.handle(incoming)? {
                return Ok(Some(event));
            }
        }
        Ok(None)
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
        match incoming.message {
            Message::Command(command) => self.handle_command(&command),
            // Servers may send StreamBegin, |RtmpSampleAccess, even media: nothing a
            // publisher acts on.
            other => {
                tracing::trace!(?other, "message from the server ignored");
                Ok(None)
            }
        }
    }

    fn handle_command(&mut self, command: &Command) -> Result<Option<ClientEvent>, ClientError> {
        if self.state == State::Closed {
            return Ok(None);
        }
        match command.name.as_str() {
            "_result" => self.on_result(command),
            "_error" => self.on_error(command),
            "onStatus" => self.on_status(command),
            "onBWDone" => {
                self.on_bw_done();
                Ok(None)
            }
            // onFCPublish (SRS puts NetStream.Publish.Start in it *before* publish, so
            // it must not count as the answer), close, and anything new.
            other => {
                tracing::debug!(command = other, "command from the server ignored");
                Ok(None)
            }
        }
    }

    /// Answers are matched to requests by transaction id, as ffmpeg does; `_result`s
    /// to releaseStream, FCPublish and `_checkbw` need nothing.
    fn on_result(&mut self, command: &Command) -> Result<Option<ClientEvent>, ClientError> {
        match self.state {
            State::Connecting if is_answer_to(command, CONNECT_TXN) => {
                self.on_connected();
                Ok(Some(ClientEvent::Connected))
            }
            State::CreatingStream { txn } if is_answer_to(command, txn) => {
                let stream_id = stream_id_of(command).ok_or(ClientError::Protocol(
                    "createStream result without a stream id",
                ))?;
                self.publish(stream_id);
                Ok(None)
            }
            // OBS also takes a `_result` to publish as success.
            State::PublishSent { stream_id, txn } if is_answer_to(command, txn) => {
                Ok(Some(self.start_publishing(stream_id)))
            }
            _ => Ok(None),
        }
    }

    /// `_error`s to connect, createStream and publish end the push; those to
    /// releaseStream, FCPublish and `_checkbw` are ignored like ffmpeg does (nginx
    /// does not know those commands at all).
    fn on_error(&mut self, command: &Command) -> Result<Option<ClientEvent>, ClientError> {
        let awaited = match self.state {
            State::Connecting => CONNECT_TXN,
            State::CreatingStream { txn } | State::PublishSent { txn, .. } => txn,
            State::Publishing { .. } | State::Closed => return Ok(None),
        };
        if !is_answer_to(command, awaited) {
            tracing::debug!(
                txn = command.transaction_id,
                "_error to a courtesy command ignored"
            );
            return Ok(None);
        }
        Err(self.rejection(&StatusInfo::of(command)))
    }

    fn on_status(&mut self, command: &Command) -> Result<Option<ClientEvent>, ClientError> {
        let info = StatusInfo::of(command);
        if info.is_failure() {
            return Err(self.rejection(&info));
        }
        if info.code == "NetStream.Publish.Start" {
            return Ok(match self.state {
                State::PublishSent { stream_id, .. } => Some(self.start_publishing(stream_id)),
                // A repeat, or out of order: nothing new.
                _ => None,
            });
        }
        Ok(Some(ClientEvent::Status {
            level: self.mask(&info.level),
            code: self.mask_code(&info.code),
            description: self.mask(&info.description),
        }))
    }

    /// ffmpeg and OBS answer onBWDone (sent by FMS/Wowza-style servers) with
    /// `_checkbw`; some servers wait for it before they go on.
    fn on_bw_done(&mut self) {
        if self.bw_checked {
            return;
        }
        self.bw_checked = true;
        let txn = self.take_txn();
        self.send_command(0, "_checkbw", txn, Amf0Value::Null, Vec::new());
    }

    /// Sends the three calls that follow connect, without waiting in between.
    /// releaseStream and FCPublish are courtesy calls (Adobe FMLE's) that ffmpeg and
    /// OBS send; nginx ignores them, some CDNs want them.
    fn on_connected(&mut self) {
        for name in ["releaseStream", "FCPublish"] {
            let txn = self.take_txn();
            let arg = self.name_arg();
            self.send_command(0, name, txn, Amf0Value::Null, vec![arg]);
        }
        let txn = self.take_txn();
        self.send_command(0, "createStream", txn, Amf0Value::Null, Vec::new());
        self.state = State::CreatingStream { txn };
    }

    /// Sends publish on the new stream. It goes on the chunk stream our server uses
    /// for per-stream messages (5), not the NetConnection's (3): any csid is valid
    /// (ffmpeg uses 8, OBS 4) and keeping message stream ids apart per csid keeps
    /// the headers short.
    fn publish(&mut self, stream_id: u32) {
        let txn = self.take_txn();
        let command = Command::new(
            "publish",
            f64::from(txn),
            Amf0Value::Null,
            vec![self.name_arg(), "live".into()],
        );
        self.messages
            .send(CSID_STREAM, 0, stream_id, &Message::Command(command));
        self.state = State::PublishSent { stream_id, txn };
    }

    fn start_publishing(&mut self, stream_id: u32) -> ClientEvent {
        self.state = State::Publishing { stream_id };
        ClientEvent::Publishing { stream_id }
    }

    /// The error for a failure status: a NetConnection.Connect code, or any failure
    /// before connect succeeded, is a connect rejection; the rest concern the stream.
    fn rejection(&self, info: &StatusInfo) -> ClientError {
        let code = self.mask_code(&info.code);
        let description = self.mask(&info.description);
        if self.state == State::Connecting || info.code.starts_with("NetConnection.Connect.") {
            ClientError::ConnectRejected { code, description }
        } else {
            ClientError::PublishRejected { code, description }
        }
    }

    /// `text` with the stream name, its bare key and its query replaced by `****`.
    fn mask(&self, text: &str) -> String {
        mask_stream_name(text, &self.config.stream_name)
    }

    /// Status codes we know are constants that cannot carry the key, and
    /// [`ClientError::is_permanent`] matches on them: a short key that happens to
    /// occur inside one ("Publish") must not turn `NetStream.Publish.BadName` into
    /// something unrecognisable. Unknown codes are masked like any server text.
    fn mask_code(&self, code: &str) -> String {
        if FATAL_CODES.contains(&code) {
            code.to_owned()
        } else {
            self.mask(code)
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

/// Replaces the stream name, the key before its `?` and the query after it, wherever
/// they occur in `text` (servers echo them in descriptions). The whole name goes
/// first so that it is masked as one. Public so that the relay can mask any other
/// text that may hold the key (a URL it logs, an ffmpeg command line).
pub fn mask_stream_name(text: &str, stream_name: &str) -> String {
    let (key, query) = stream_name.split_once('?').unwrap_or((stream_name, ""));
    let mut masked = text.to_owned();
    for secret in [stream_name, key, query] {
        if !secret.is_empty() && masked.contains(secret) {
            masked = masked.replace(secret, MASK);
        }
    }
    masked
}

fn is_answer_to(command: &Command, txn: u32) -> bool {
    command.transaction_id == f64::from(txn)
}

/// The stream id in a createStream `_result`: the first number after the
/// transaction id. ffmpeg insists on `_result, txn, null, id`; servers that put the
/// id where the null belongs, or add values before it, exist, so any position will
/// do.
fn stream_id_of(command: &Command) -> Option<u32> {
    std::iter::once(&command.object)
        .chain(&command.args)
        .find_map(Amf0Value::as_f64)
        .filter(|id| id.is_finite() && *id >= 0.0 && *id <= f64::from(u32::MAX))
        .map(|id| id as u32)
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

#[cfg(test)]
mod tests;
