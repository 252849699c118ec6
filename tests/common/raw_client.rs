//! A scripted RTMP client built from prism's own codec (handshake, chunk encoder and
//! decoder, message types), for tests that need to say exactly what a real client
//! would not: commands in a chosen order, media on a chosen message stream, and a
//! record of every message the server sends back, control messages included.
//!
//! A ping is the barrier between steps: [`RawClient::barrier`] sends a User Control
//! PingRequest and reads until the server's PingResponse. A server handles one
//! connection's messages in order, so everything it says in reply to the earlier
//! messages has arrived by then (prism and nginx-rtmp both answer pings at once).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prism::rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits, MessageHeader, OutBuf};
use prism::rtmp::message::{Message, UserControl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a server may take to answer a barrier ping or a step.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// One message from the server, with its chunk-level header.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The chunk stream it came on.
    pub csid: u32,
    /// The message stream id.
    pub stream_id: u32,
    /// Its timestamp.
    pub timestamp: u32,
    /// The decoded message.
    pub message: Message,
}

/// A client connection: TCP, plain handshake done, then chunked messages both ways.
pub struct RawClient {
    socket: TcpStream,
    encoder: ChunkEncoder,
    decoder: ChunkDecoder,
    inbound: BytesMut,
    next_ping: u32,
}

impl RawClient {
    /// Connects to `addr` and completes a plain (version 3) handshake.
    pub async fn connect(addr: SocketAddr) -> Self {
        let handshake = super::wire::handshake_from(addr, None);
        let (socket, inbound) = tokio::time::timeout(ANSWER_TIMEOUT, handshake)
            .await
            .expect("the server answers the handshake")
            .unwrap_or_else(|e| panic!("handshake: {e}"));
        Self::after_handshake(socket, inbound)
    }

    /// Like [`connect`](Self::connect), from the local address `source` (any
    /// 127/8 address reaches a loopback listener on Linux), or `None` when the
    /// server does not complete the handshake (closed, or not served in time).
    pub async fn try_connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Option<Self> {
        let handshake = super::wire::handshake_from(addr, Some(source));
        let (socket, inbound) = tokio::time::timeout(ANSWER_TIMEOUT, handshake)
            .await
            .ok()?
            .ok()?;
        Some(Self::after_handshake(socket, inbound))
    }

    fn after_handshake(socket: TcpStream, inbound: BytesMut) -> Self {
        Self {
            socket,
            encoder: ChunkEncoder::new(),
            decoder: ChunkDecoder::new(DecoderLimits::default()),
            inbound,
            next_ping: 1,
        }
    }

    /// This end's address: what the server logs as the peer.
    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// Announces and adopts an outgoing chunk size, as encoders do first.
    pub async fn set_chunk_size(&mut self, size: u32) {
        self.send(2, 0, 0, &Message::SetChunkSize(size)).await;
        self.encoder.set_chunk_size(size);
    }

    /// Sends one message.
    pub async fn send(&mut self, csid: u32, stream_id: u32, timestamp: u32, message: &Message) {
        let (type_id, payload) = message.encode();
        self.send_raw(csid, stream_id, timestamp, type_id, &payload)
            .await;
    }

    /// Sends one message body of the given type, unchanged.
    pub async fn send_raw(
        &mut self,
        csid: u32,
        stream_id: u32,
        timestamp: u32,
        type_id: u8,
        payload: &Bytes,
    ) {
        let header = MessageHeader {
            csid,
            timestamp,
            type_id,
            stream_id,
        };
        let mut out = OutBuf::new();
        self.encoder.encode(&header, payload, &mut out);
        let bytes = super::wire::drain(&mut out);
        self.socket.write_all(&bytes).await.unwrap();
    }

    /// The next message from the server, or `None` when it closed the connection.
    /// Applies the server's Set Chunk Size to the decoder; panics after
    /// [`ANSWER_TIMEOUT`] of silence.
    pub async fn recv(&mut self) -> Option<Received> {
        loop {
            if let Some(raw) = self
                .decoder
                .decode(&mut self.inbound)
                .expect("valid chunks")
            {
                let message = Message::decode(raw.type_id, raw.payload).expect("valid message");
                if let Message::SetChunkSize(size) = message {
                    self.decoder.set_chunk_size(size).unwrap();
                }
                return Some(Received {
                    csid: raw.csid,
                    stream_id: raw.stream_id,
                    timestamp: raw.timestamp,
                    message,
                });
            }
            let read =
                tokio::time::timeout(ANSWER_TIMEOUT, self.socket.read_buf(&mut self.inbound))
                    .await
                    .expect("the server said something in time");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Sends a PingRequest and returns everything the server sent before its
    /// PingResponse (which is not included).
    pub async fn barrier(&mut self) -> Vec<Received> {
        let ping = self.next_ping;
        self.next_ping += 1;
        let request = Message::UserControl(UserControl::PingRequest(ping));
        self.send(2, 0, 0, &request).await;
        let mut got = Vec::new();
        loop {
            let received = self
                .recv()
                .await
                .expect("the server answers the ping before it closes");
            if received.message == Message::UserControl(UserControl::PingResponse(ping)) {
                return got;
            }
            got.push(received);
        }
    }

    /// Everything the server sends until the message `until` accepts (included),
    /// bounded by [`ANSWER_TIMEOUT`] per read.
    pub async fn recv_until(&mut self, until: impl Fn(&Received) -> bool) -> Vec<Received> {
        let mut got = Vec::new();
        loop {
            let received = self.recv().await.expect("the server is still connected");
            let done = until(&received);
            got.push(received);
            if done {
                return got;
            }
        }
    }

    /// Sends one message, or says why the socket refused it.
    pub async fn try_send(
        &mut self,
        csid: u32,
        stream_id: u32,
        message: &Message,
    ) -> std::io::Result<()> {
        let (type_id, payload) = message.encode();
        let header = MessageHeader {
            csid,
            timestamp: 0,
            type_id,
            stream_id,
        };
        let mut out = OutBuf::new();
        self.encoder.encode(&header, &payload, &mut out);
        while !out.is_empty() {
            let mut slices = [std::io::IoSlice::new(&[]); 64];
            let n = out.io_slices(&mut slices);
            let written = self.socket.write_vectored(&slices[..n]).await?;
            out.advance(written);
        }
        Ok(())
    }

    /// Reads (and discards) until the server closes: `Ok` for an orderly close
    /// (EOF), the error for a reset; panics after [`ANSWER_TIMEOUT`] of neither.
    pub async fn read_to_close(&mut self) -> std::io::Result<()> {
        let mut sink = vec![0u8; 16 * 1024];
        loop {
            let read = tokio::time::timeout(ANSWER_TIMEOUT, self.socket.read(&mut sink))
                .await
                .expect("the server closed in time")?;
            if read == 0 {
                return Ok(());
            }
        }
    }

    /// Reads (and discards) until the server closes the connection (true) or `stop`
    /// completes first (false), however long that takes.
    pub async fn wait_closed(&mut self, stop: impl std::future::Future<Output = ()>) -> bool {
        let mut sink = vec![0u8; 4096];
        let closed = async {
            loop {
                match self.socket.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::select! {
            () = closed => true,
            () = stop => false,
        }
    }

    /// Closes the write side and waits (bounded) for the server to close.
    pub async fn close(mut self) {
        let _ = self.socket.shutdown().await;
        let mut sink = vec![0u8; 16 * 1024];
        let drain = async {
            loop {
                match self.socket.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(ANSWER_TIMEOUT, drain).await;
    }
}
