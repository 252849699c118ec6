//! A wiretap: a TCP relay on 127.0.0.1 that forwards every connection to an RTMP
//! server untouched and keeps what went each way, so that a test can read the
//! messages a destination received from prism's push (in front of an ingest) or
//! a player received from prism (in front of prism), data messages included,
//! which nginx-rtmp's recordings and rtmpdump's files leave out.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use prism::rtmp::chunk::{ChunkDecoder, DecoderLimits};
use prism::rtmp::message::{Message, type_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// C0 + C1 + C2 (S0 + S1 + S2): what either side sends before its first chunk.
const HANDSHAKE_LEN: usize = 1 + 1536 + 1536;

/// What each connection's client and server sent, in connection order.
type Records = Arc<Mutex<Vec<Arc<Mutex<Recorded>>>>>;

/// The bytes of one connection, each way.
#[derive(Debug, Default)]
struct Recorded {
    from_client: Vec<u8>,
    from_server: Vec<u8>,
}

/// One message a client sent, as its chunk header and type say.
#[derive(Debug, Clone)]
pub struct Tapped {
    pub type_id: u8,
    pub timestamp: u32,
    pub payload: bytes::Bytes,
}

/// The relay; stops with the test (its task is aborted on drop).
pub struct Tap {
    port: u16,
    captured: Records,
    task: JoinHandle<()>,
}

impl Tap {
    /// Relays 127.0.0.1:<new port> to 127.0.0.1:`upstream`.
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let captured: Records = Arc::default();
        let connections = Arc::clone(&captured);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let record = Arc::new(Mutex::new(Recorded::default()));
                connections.lock().unwrap().push(Arc::clone(&record));
                tokio::spawn(relay(client, server, record));
            }
        });
        Self {
            port,
            captured,
            task,
        }
    }

    /// `rtmp://127.0.0.1:PORT/<path>`: the server's URL through the tap.
    pub fn url(&self, path: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{path}", self.port)
    }

    /// The messages the client of connection `n` (0 the first) sent after the
    /// handshake (see [`decode`]).
    pub fn messages(&self, n: usize) -> Vec<Tapped> {
        self.recorded(n, |r| decode(&r.from_client))
    }

    /// The messages the server sent on connection `n` after the handshake.
    pub fn replies(&self, n: usize) -> Vec<Tapped> {
        self.recorded(n, |r| decode(&r.from_server))
    }

    fn recorded(&self, n: usize, read: impl Fn(&Recorded) -> Vec<Tapped>) -> Vec<Tapped> {
        let connections = self.captured.lock().unwrap();
        connections
            .get(n)
            .map(|record| read(&record.lock().unwrap()))
            .unwrap_or_default()
    }

    /// How many connections came through.
    pub fn connections(&self) -> usize {
        self.captured.lock().unwrap().len()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The messages in `bytes` (one side's, handshake first), decoded with prism's
/// chunk decoder (following that side's Set Chunk Size), up to the first byte
/// that does not decode.
fn decode(bytes: &[u8]) -> Vec<Tapped> {
    let mut inbound = BytesMut::from(bytes.get(HANDSHAKE_LEN..).unwrap_or_default());
    let mut decoder = ChunkDecoder::new(DecoderLimits::default());
    let mut out = Vec::new();
    while let Ok(Some(raw)) = decoder.decode(&mut inbound) {
        if raw.type_id == type_id::SET_CHUNK_SIZE
            && let Ok(Message::SetChunkSize(size)) =
                Message::decode(raw.type_id, raw.payload.clone())
        {
            decoder.set_chunk_size(size).unwrap();
        }
        out.push(Tapped {
            type_id: raw.type_id,
            timestamp: raw.timestamp,
            payload: raw.payload,
        });
    }
    out
}

/// Copies both ways until either side closes, keeping the bytes.
async fn relay(client: TcpStream, server: TcpStream, record: Arc<Mutex<Recorded>>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = Arc::clone(&record);
    tokio::join!(
        copy(client_read, server_write, move |b| up
            .lock()
            .unwrap()
            .from_client
            .extend_from_slice(b)),
        copy(server_read, client_write, move |b| record
            .lock()
            .unwrap()
            .from_server
            .extend_from_slice(b)),
    );
}

/// Copies `from` to `to` until either ends, showing each read to `keep`.
async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    keep: impl Fn(&[u8]),
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                keep(&buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}
