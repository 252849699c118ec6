//! Server session tests: prism's [`ServerSession`] against a scripted client that says
//! exactly what each test needs ([`Pair`]), all in memory, on a clock the test moves.
//!
//! The files: media and data from publishers (`media.rs`), the command sequences
//! (`commands.rs`), and limits and deadlines (`limits.rs`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::rtmp::amf0::Amf0Value;
use crate::rtmp::message::{Message, UserControl};
use crate::rtmp::message_layer::Incoming;
use crate::rtmp::pair::{Answer, Pair, ScriptedClient};

mod commands;
mod limits;
mod media;

/// A server session and a scripted client wired to it, the handshake done.
struct Client {
    pair: Pair<ScriptedClient>,
    /// What the server sent that the tests have not looked at yet.
    replies: Vec<Incoming>,
}

impl Client {
    fn new() -> Self {
        Self::with_config(ServerConfig::default())
    }

    fn with_config(config: ServerConfig) -> Self {
        Self {
            pair: Pair::scripted(config),
            replies: Vec::new(),
        }
    }

    /// Sends one message on `csid` / message stream `stream_id` and returns the
    /// events it caused; publishes and plays are accepted (see [`Pair::answer`]).
    fn send(
        &mut self,
        csid: u32,
        stream_id: u32,
        timestamp: u32,
        message: &Message,
    ) -> Vec<ServerEvent> {
        self.try_send(csid, stream_id, timestamp, message)
            .expect("valid input")
    }

    /// [`Self::send`], for input the server may refuse: its error.
    fn try_send(
        &mut self,
        csid: u32,
        stream_id: u32,
        timestamp: u32,
        message: &Message,
    ) -> Result<Vec<ServerEvent>, SessionError> {
        self.pair.client.send(csid, stream_id, timestamp, message);
        self.pump()
    }

    /// Delivers what is queued both ways; the events the server reported.
    fn pump(&mut self) -> Result<Vec<ServerEvent>, SessionError> {
        match self.pair.pump() {
            Ok(replies) => self.replies.extend(replies),
            Err(crate::rtmp::pair::PairError::Server(error)) => return Err(error),
            Err(crate::rtmp::pair::PairError::Client(error)) => {
                panic!("the scripted client gave up: {error:?}")
            }
        }
        Ok(self.pair.take_server_events())
    }

    fn command(
        &mut self,
        stream_id: u32,
        name: &str,
        txn: f64,
        args: Vec<Amf0Value>,
    ) -> Vec<ServerEvent> {
        self.try_command(stream_id, name, txn, args)
            .expect("valid input")
    }

    fn try_command(
        &mut self,
        stream_id: u32,
        name: &str,
        txn: f64,
        args: Vec<Amf0Value>,
    ) -> Result<Vec<ServerEvent>, SessionError> {
        self.pair.client.command(stream_id, name, txn, args);
        self.pump()
    }

    /// Every message the server sent since the last look, as (stream id, message); the
    /// control messages the client's message layer applies itself are not among them.
    fn replies(&mut self) -> Vec<(u32, Message)> {
        std::mem::take(&mut self.replies)
            .into_iter()
            .map(|incoming| (incoming.stream_id, incoming.message))
            .collect()
    }

    /// Commands among the replies, as (stream id, name, transaction id, args).
    fn commands(&mut self) -> Vec<(u32, String, f64, Vec<Amf0Value>)> {
        self.replies()
            .into_iter()
            .filter_map(|(stream_id, message)| match message {
                Message::Command(c) => Some((stream_id, c.name, c.transaction_id, c.args)),
                _ => None,
            })
            .collect()
    }

    /// The `code` of every onStatus among the replies, with its stream id.
    fn statuses(&mut self) -> Vec<(u32, String)> {
        self.commands()
            .into_iter()
            .filter(|(_, name, _, _)| name == "onStatus")
            .map(|(stream_id, _, _, args)| {
                let code = args
                    .last()
                    .and_then(|info| info.get("code"))
                    .and_then(Amf0Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                (stream_id, code)
            })
            .collect()
    }

    /// Connected, its replies read.
    fn connected() -> Self {
        let mut client = Self::new();
        client.command(0, "connect", 1.0, vec![]);
        client.replies();
        client
    }

    /// Connected, with stream 1 created and publishing.
    fn publishing() -> Self {
        let mut client = Self::connected();
        client.command(0, "createStream", 2.0, vec![]);
        let events = client.command(1, "publish", 3.0, vec!["key".into(), "live".into()]);
        assert!(matches!(
            events[..],
            [ServerEvent::Publish { stream_id: 1, .. }]
        ));
        client.replies();
        client
    }

    /// Connected, with stream 1 created and playing `key`.
    fn playing() -> Self {
        let mut client = Self::connected();
        client.command(0, "createStream", 2.0, vec![]);
        let events = client.command(1, "play", 3.0, vec!["key".into()]);
        assert!(matches!(
            events[..],
            [ServerEvent::Play { stream_id: 1, .. }]
        ));
        client.replies();
        client
    }
}

fn set_data_frame() -> Message {
    Message::data(vec![
        "@setDataFrame".into(),
        "onMetaData".into(),
        Amf0Value::ecma_array([("width", 320.0.into())]),
    ])
}

/// One FLV tag as it sits inside an aggregate message.
fn aggregate_tag(type_id: u8, timestamp: u32, data: &[u8]) -> Vec<u8> {
    let size = data.len() as u32;
    let mut tag = vec![type_id];
    tag.extend_from_slice(&size.to_be_bytes()[1..]);
    tag.extend_from_slice(&timestamp.to_be_bytes()[1..]);
    tag.push((timestamp >> 24) as u8);
    tag.extend_from_slice(&[0, 0, 0]);
    tag.extend_from_slice(data);
    tag.extend_from_slice(&(size + 11).to_be_bytes());
    tag
}

/// Runs `f` with this thread's tracing output captured, and returns it.
fn logs_of(f: impl FnOnce()) -> String {
    let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = Arc::clone(&buffer);
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || WriteTo(Arc::clone(&writer)))
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

struct WriteTo(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for WriteTo {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
