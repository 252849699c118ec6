//! Play anywhere: a player that lands on a node that does not hold its stream gets
//! it from the node that does (the origin), by an RTMP play from the origin's
//! advertised listener, published into this node's hub under a name no encoder can
//! take. One pull per stream and node, however many players: they are subscribers
//! of that hub stream, starting on a keyframe from its GOP cache as players of any
//! live stream do. The pull ends when the origin's stream ends (its players here
//! are told so) or soon after the last player here left.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::NodeInfo;
use crate::hub::{Hub, Publisher, Stream};
use crate::rtmp::client::{ClientConfig, ClientError, ClientEvent, ClientSession};
use crate::rtmp::message::type_id;
use crate::stream_name::StreamName;
use crate::transport::{self, ReadPolicy};

/// How long connecting to the origin and starting the play may take.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a pull looks whether it still has players; it ends at the second look
/// in a row that finds none (a player that switches streams leaves and comes back).
const PLAYERS_CHECK: Duration = Duration::from_secs(1);

/// The origin's statuses that end the stream for its players.
const ENDED: [&str; 3] = [
    "NetStream.Play.UnpublishNotify",
    "NetStream.Play.Stop",
    "NetStream.Play.Complete",
];

/// Why a pull ended.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Connecting, or the connection, failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The origin refused or broke the play.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The origin closed the connection.
    #[error("the origin closed the connection")]
    Closed,
}

/// The pulls this node runs, by hub name.
#[derive(Debug)]
pub struct OriginPulls {
    hub: Arc<Hub>,
    /// The pulls running, by `app/hub name`.
    running: Mutex<HashSet<String>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// The hub name a pulled stream is published under: a control character cannot be
/// in a name an encoder publishes, so no publish can take it.
pub fn hub_name(name: &str) -> String {
    format!("\u{0}origin:{name}")
}

impl OriginPulls {
    /// No pulls yet; each one runs in `tracker` until `shutdown`.
    pub fn new(hub: Arc<Hub>, tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            hub,
            running: Mutex::new(HashSet::new()),
            tracker,
            shutdown,
        }
    }

    /// How many pulls run now.
    pub fn running(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// The hub name under which `app/name` from `origin` is (or will shortly be)
    /// live on this node: a player subscribes to it. Starts the pull unless one runs.
    pub fn ensure(self: &Arc<Self>, app: &str, name: &str, origin: NodeInfo) -> String {
        let local = hub_name(name);
        let key = format!("{app}/{local}");
        let fresh = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key.clone());
        if fresh {
            let pulls = Arc::clone(self);
            let remote = StreamName {
                app: app.to_owned(),
                name: name.to_owned(),
                query: String::new(),
            };
            self.tracker.spawn(async move {
                pulls.pull(remote, origin).await;
                pulls
                    .running
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .remove(&key);
            });
        }
        local
    }

    /// One pull, from start to end.
    async fn pull(&self, remote: StreamName, origin: NodeInfo) {
        let local = StreamName {
            app: remote.app.clone(),
            name: hub_name(&remote.name),
            query: String::new(),
        };
        let publisher = match self.hub.publish(&local) {
            Ok(publisher) => publisher,
            Err(err) => {
                return tracing::warn!(stream = %remote.masked(), node = origin.node_id, "cannot pull from the origin: {err}");
            }
        };
        tracing::info!(stream = %remote.masked(), node = origin.node_id, "pulling for players here");
        let stream = Arc::clone(publisher.stream());
        tokio::select! {
            result = relay_from(&origin, &remote, &publisher) => match result {
                Ok(()) => tracing::info!(stream = %remote.masked(), "the origin's stream ended; its players here are told"),
                Err(err) => tracing::warn!(stream = %remote.masked(), node = origin.node_id, "pull from the origin ended: {err}"),
            },
            () = no_players_left(&stream) => {
                tracing::info!(stream = %remote.masked(), "no players left; pull ended");
            }
            () = self.shutdown.cancelled() => {}
        }
    }
}

/// Resolves once `stream` has had no subscribers at two looks in a row.
async fn no_players_left(stream: &Stream) {
    let mut empty = 0;
    loop {
        tokio::time::sleep(PLAYERS_CHECK).await;
        empty = if stream.subscriber_count() == 0 {
            empty + 1
        } else {
            0
        };
        if empty >= 2 {
            return;
        }
    }
}

/// Plays `remote` from `origin` and publishes what arrives through `publisher`,
/// until the origin's stream ends (`Ok`) or the connection fails.
async fn relay_from(
    origin: &NodeInfo,
    remote: &StreamName,
    publisher: &Publisher,
) -> Result<(), PullError> {
    let started = Instant::now();
    let mut io = tokio::time::timeout(START_TIMEOUT, TcpStream::connect(origin.rtmp.as_str()))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    if let Err(err) = transport::socket::send_at_once(&io) {
        tracing::debug!("TCP_NODELAY: {err}");
    }
    if origin.proxy_protocol {
        // This node is the client the origin should see.
        let header = proxy_header(io.local_addr()?, io.peer_addr()?)?;
        io.write_all(&header).await?;
    }
    let mut config = ClientConfig::new(
        &format!("rtmp://{}/{}", origin.rtmp, remote.app),
        &remote.name,
    );
    config.play = true;
    config.publish_timeout = Some(START_TIMEOUT);
    let mut session = ClientSession::new(config, started);
    let mut buf: BytesMut = ReadPolicy::PUSH.buffer();
    loop {
        transport::write_out(&mut io, session.out()).await?;
        let read = match session.poll_timeout() {
            Some(at) => {
                let at = tokio::time::Instant::from_std(at);
                match tokio::time::timeout_at(at, ReadPolicy::PUSH.read(&mut io, &mut buf)).await {
                    Ok(read) => read?,
                    Err(_) => {
                        session.handle_timeout(Instant::now())?;
                        continue;
                    }
                }
            }
            None => ReadPolicy::PUSH.read(&mut io, &mut buf).await?,
        };
        if read == 0 {
            return Err(PullError::Closed);
        }
        while let Some(event) = session.poll(&mut buf)? {
            match event {
                ClientEvent::Media {
                    type_id: type_id::AUDIO,
                    timestamp,
                    payload,
                } => publisher.push_audio(timestamp, payload),
                ClientEvent::Media {
                    timestamp, payload, ..
                } => publisher.push_video(timestamp, payload),
                ClientEvent::Metadata { metadata } => publisher.set_metadata(&metadata, 0),
                ClientEvent::Data { timestamp, payload } => publisher.push_data(timestamp, payload),
                ClientEvent::Status { code, .. } if ENDED.contains(&code.as_str()) => {
                    publisher.flush();
                    return Ok(());
                }
                other => tracing::debug!(?other, "origin event"),
            }
        }
        publisher.flush();
    }
}

/// A PROXY protocol v2 header saying `client` connected to `server`.
fn proxy_header(
    client: std::net::SocketAddr,
    server: std::net::SocketAddr,
) -> Result<Vec<u8>, std::io::Error> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (client, server),
    )
    .build()
    .map_err(std::io::Error::other)
}
