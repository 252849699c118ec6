//! Raw RTMP for hostile and scripted clients written as test code: messages
//! chunk-encoded by prism's own encoder, the connect command, and a plain client
//! handshake from any loopback address.

use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use prism::rtmp::amf0::Amf0Value;
use prism::rtmp::chunk::{ChunkEncoder, MessageHeader, OutBuf};
use prism::rtmp::handshake::ClientHandshake;
use prism::rtmp::message::{Command, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Chunk-encodes `messages` (csid, message stream id, message) at the default
/// chunk size, timestamps 0.
pub fn encode(messages: &[(u32, u32, Message)]) -> Vec<u8> {
    let mut encoder = ChunkEncoder::new();
    let mut out = OutBuf::new();
    for (csid, stream_id, message) in messages {
        let (type_id, payload) = message.encode();
        let header = MessageHeader {
            csid: *csid,
            timestamp: 0,
            type_id,
            stream_id: *stream_id,
        };
        encoder.encode(&header, &payload, &mut out);
    }
    drain(&mut out)
}

/// Everything queued in `out`, as one byte string.
pub fn drain(out: &mut OutBuf) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(out.len());
    while !out.is_empty() {
        let mut slices = [std::io::IoSlice::new(&[]); 64];
        let n = out.io_slices(&mut slices);
        let before = bytes.len();
        for slice in &slices[..n] {
            bytes.extend_from_slice(slice);
        }
        out.advance(bytes.len() - before);
    }
    bytes
}

/// `connect` to the app `live`, as encoders and players send it first.
pub fn connect_command() -> Message {
    Message::Command(Command::new(
        "connect",
        1.0,
        Amf0Value::Object(vec![
            ("app".into(), "live".into()),
            ("tcUrl".into(), "rtmp://127.0.0.1/live".into()),
        ]),
        vec![],
    ))
}

/// Connects to `addr`, from `source` when given (any 127/8 address reaches a
/// loopback listener on Linux), and completes a plain (version 3) client handshake.
/// Returns the socket and what the server sent after its handshake; the error
/// says which step failed.
pub async fn handshake_from(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> Result<(TcpStream, BytesMut), String> {
    let mut io = match source {
        None => TcpStream::connect(addr).await.map_err(|e| e.to_string())?,
        Some(source) => {
            let socket = match source {
                IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
            }
            .map_err(|e| e.to_string())?;
            socket
                .bind((source, 0).into())
                .map_err(|e| format!("bind {source}: {e}"))?;
            socket.connect(addr).await.map_err(|e| e.to_string())?
        }
    };
    let mut inbound = BytesMut::with_capacity(64 * 1024);
    handshake_on(&mut io, &mut inbound).await?;
    Ok((io, inbound))
}

/// Completes a plain client handshake on `io`, reading into `inbound` (which keeps
/// what the server sent after it).
pub async fn handshake_on(io: &mut TcpStream, inbound: &mut BytesMut) -> Result<(), String> {
    let mut handshake = ClientHandshake::new(0);
    loop {
        while let Some(out) = handshake.take_output() {
            io.write_all(&out).await.map_err(|e| e.to_string())?;
        }
        if handshake.is_done() {
            return Ok(());
        }
        if io.read_buf(inbound).await.map_err(|e| e.to_string())? == 0 {
            return Err("closed during the handshake".to_owned());
        }
        handshake.read(inbound).map_err(|e| e.to_string())?;
    }
}
