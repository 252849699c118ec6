//! An in-memory client/server pair for tests: a client and prism's [`ServerSession`] wired
//! back to back, bytes pumped from each one's output to the other's input, handshakes
//! included, on a clock the test moves by hand. Command sequences and deadlines are tested
//! without sockets, tasks or sleeps.
//!
//! The client is prism's own publishing [`ClientSession`], or a [`ScriptedClient`] that says
//! exactly what a test tells it (for sequences a `ClientSession` never takes: playing,
//! errors, floods). Both run prism's own handshake and message layer.

use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::amf0::Amf0Value;
use super::chunk::{DecoderLimits, OutBuf};
use super::client::{ClientConfig, ClientError, ClientEvent, ClientSession};
use super::handshake::{ClientHandshake, HandshakeError, Progress};
use super::message::{Command, Message};
use super::message_layer::{CSID_COMMAND, Incoming, MessageLayer, MessageLayerError};
use super::server::{ServerConfig, ServerEvent, ServerSession, SessionError};

/// The app and tcUrl a [`ScriptedClient`] connects with.
pub(crate) const TC_URL: &str = "rtmp://127.0.0.1/live";

/// What the client end of a pair must offer the pump.
pub(crate) trait ClientEnd {
    /// What it reports for the bytes the server sent.
    type Event;
    /// Why it gives up.
    type Error: std::fmt::Debug;
    /// Bytes it wants to send.
    fn out(&mut self) -> &mut OutBuf;
    /// Takes the next event out of the bytes the server sent.
    fn poll(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Event>, Self::Error>;
}

impl ClientEnd for ClientSession {
    type Event = ClientEvent;
    type Error = ClientError;

    fn out(&mut self) -> &mut OutBuf {
        ClientSession::out(self)
    }

    fn poll(&mut self, buf: &mut BytesMut) -> Result<Option<ClientEvent>, ClientError> {
        ClientSession::poll(self, buf)
    }
}

/// How the server end answers the requests that need the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Accept every publish and play.
    Accept,
    /// Refuse every publish and play with this code and description.
    Reject(&'static str, &'static str),
    /// Answer nothing: the test calls the session itself.
    Leave,
}

/// Which end of a pair failed.
#[derive(Debug)]
pub(crate) enum PairError<E> {
    /// The server session closed the connection.
    Server(SessionError),
    /// The client gave up.
    Client(E),
}

/// A client and a server session, back to back.
pub(crate) struct Pair<C: ClientEnd> {
    pub(crate) client: C,
    pub(crate) server: ServerSession,
    /// The pair's clock: when it is "now" for both ends. Starts at an arbitrary instant; a
    /// test moves it with [`Pair::advance`].
    pub(crate) now: Instant,
    /// How the server end answers publish and play.
    pub(crate) answer: Answer,
    /// What the server session reported, in order.
    pub(crate) server_events: Vec<ServerEvent>,
    to_server: BytesMut,
    to_client: BytesMut,
}

impl Pair<ClientSession> {
    /// prism's publishing client against prism's server, both started now: nothing is sent
    /// yet but the client's C0+C1.
    pub(crate) fn publisher(client: ClientConfig, server: ServerConfig) -> Self {
        let now = Instant::now();
        Self::new(ClientSession::new(client, now), server, now)
    }

    /// What the client says when its timer fires now.
    pub(crate) fn client_timeout(&mut self) -> Result<(), ClientError> {
        self.client.handle_timeout(self.now)
    }
}

impl Pair<ScriptedClient> {
    /// A scripted client against prism's server, the handshake done: the server is waiting
    /// for connect.
    pub(crate) fn scripted(server: ServerConfig) -> Self {
        let mut pair = Self::new(ScriptedClient::new(), server, Instant::now());
        let events = pair.pump().expect("prism's handshake against itself");
        assert!(events.is_empty(), "{events:?}");
        assert!(!pair.client.is_handshaking() && !pair.server.is_handshaking());
        pair
    }
}

impl<C: ClientEnd> Pair<C> {
    fn new(client: C, server: ServerConfig, now: Instant) -> Self {
        Self {
            client,
            server: ServerSession::new(server, now),
            now,
            answer: Answer::Accept,
            server_events: Vec::new(),
            to_server: BytesMut::new(),
            to_client: BytesMut::new(),
        }
    }

    /// Moves bytes both ways until neither end has anything more to say; returns the
    /// client's events. The server reads whatever arrives at [`Pair::now`]; it is polled only
    /// when bytes arrived, as a driver polls after a read.
    pub(crate) fn pump(&mut self) -> Result<Vec<C::Event>, PairError<C::Error>> {
        let mut events = Vec::new();
        loop {
            let before = events.len();
            while let Some(event) = self
                .client
                .poll(&mut self.to_client)
                .map_err(PairError::Client)?
            {
                events.push(event);
            }
            let requests = drain(self.client.out());
            if !requests.is_empty() {
                self.to_server.extend_from_slice(&requests);
                self.serve().map_err(PairError::Server)?;
            }
            let replies = drain(self.server.out());
            self.to_client.extend_from_slice(&replies);
            if requests.is_empty() && replies.is_empty() && events.len() == before {
                return Ok(events);
            }
        }
    }

    /// Bytes for the server that bypass the client (a hand-made chunk stream); the next
    /// [`Pair::pump`] delivers them.
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.to_server.extend_from_slice(bytes);
        self.serve()
    }

    /// Moves the clock on.
    pub(crate) fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// What the server session says when its timer fires now.
    pub(crate) fn server_timeout(&mut self) -> Result<(), SessionError> {
        self.server.handle_timeout(self.now)
    }

    /// The server events since the last call.
    pub(crate) fn take_server_events(&mut self) -> Vec<ServerEvent> {
        std::mem::take(&mut self.server_events)
    }

    fn serve(&mut self) -> Result<(), SessionError> {
        while let Some(event) = self.server.poll(&mut self.to_server, self.now)? {
            match (&event, self.answer) {
                (ServerEvent::Publish { stream_id, .. }, Answer::Accept) => {
                    self.server.accept_publish(*stream_id);
                }
                (ServerEvent::Publish { stream_id, .. }, Answer::Reject(code, description)) => {
                    self.server.reject_publish(*stream_id, code, description);
                }
                (ServerEvent::Play { stream_id, .. }, Answer::Accept) => {
                    self.server.accept_play(*stream_id);
                }
                (ServerEvent::Play { stream_id, .. }, Answer::Reject(code, description)) => {
                    self.server.reject_play(*stream_id, code, description);
                }
                _ => {}
            }
            self.server_events.push(event);
        }
        Ok(())
    }
}

/// A client that sends exactly what a test tells it, over prism's own client handshake and
/// message layer (which answer pings and apply the server's chunk size by themselves).
pub(crate) struct ScriptedClient {
    handshake: Option<ClientHandshake>,
    messages: MessageLayer,
}

/// Why a scripted client gave up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScriptedError {
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    MessageLayer(#[from] MessageLayerError),
}

impl ScriptedClient {
    /// A client whose C0+C1 are queued.
    pub(crate) fn new() -> Self {
        let mut handshake = ClientHandshake::new(0);
        let mut messages = MessageLayer::new(DecoderLimits::default());
        while let Some(bytes) = handshake.take_output() {
            messages.out().push_shared(bytes);
        }
        Self {
            handshake: Some(handshake),
            messages,
        }
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.handshake.is_some()
    }

    /// Queues a message on chunk stream `csid` and message stream `stream_id`.
    pub(crate) fn send(&mut self, csid: u32, stream_id: u32, timestamp: u32, message: &Message) {
        assert!(!self.is_handshaking(), "the handshake comes first");
        self.messages.send(csid, timestamp, stream_id, message);
    }

    /// Queues a command on the command chunk stream; `connect` carries app `live` and the
    /// tcUrl [`TC_URL`], every other command a null object.
    pub(crate) fn command(&mut self, stream_id: u32, name: &str, txn: f64, args: Vec<Amf0Value>) {
        let object = if name == "connect" {
            Amf0Value::object([("app", "live".into()), ("tcUrl", TC_URL.into())])
        } else {
            Amf0Value::Null
        };
        let command = Message::Command(Command::new(name, txn, object, args));
        self.send(CSID_COMMAND, stream_id, 0, &command);
    }
}

impl ClientEnd for ScriptedClient {
    type Event = Incoming;
    type Error = ScriptedError;

    fn out(&mut self) -> &mut OutBuf {
        self.messages.out()
    }

    fn poll(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, ScriptedError> {
        if let Some(handshake) = &mut self.handshake {
            let progress = handshake.read(buf)?;
            while let Some(bytes) = handshake.take_output() {
                self.messages.out().push_shared(bytes);
            }
            if progress == Progress::NeedMore {
                return Ok(None);
            }
            self.handshake = None;
        }
        Ok(self.messages.poll(buf)?)
    }
}

/// Takes every pending byte out of an `OutBuf`, as a complete vectored write would.
pub(crate) fn drain(out: &mut OutBuf) -> BytesMut {
    let mut bytes = BytesMut::with_capacity(out.len());
    while !out.is_empty() {
        let written = {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = out.io_slices(&mut slices);
            slices[..n].iter().fold(0, |total, slice| {
                bytes.extend_from_slice(slice);
                total + slice.len()
            })
        };
        out.advance(written);
    }
    bytes
}
