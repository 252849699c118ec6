//! Light load generators for the many-streams mode, written for the benchmark
//! so that the relay's share of the CPU stands out: a replaying publisher (the
//! clip's FLV tags read once, shared by every connection, sent in real time by
//! prism's sans-I/O client session) and a discarding sink (an RTMP server that
//! accepts any publish, counts the media bytes and drops them). Both run on a
//! runtime inside the benchmark process, never inside the relay's.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prism::flv::{FlvReader, TagType};
use prism::rtmp::chunk::OutBuf;
use prism::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use prism::rtmp::handshake::{ClientHandshake, Progress};
use prism::rtmp::server::{ServerConfig, ServerEvent, ServerSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One FLV tag of the clip.
#[derive(Clone)]
pub struct Tag {
    tag_type: TagType,
    timestamp: u32,
    data: Bytes,
}

/// Reads every tag of an FLV file.
pub fn read_clip(path: &std::path::Path) -> Result<Arc<Vec<Tag>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut flv = BytesMut::from(&bytes[..]);
    let mut reader = FlvReader::new();
    reader
        .read_header(&mut flv)
        .map_err(|e| e.to_string())?
        .ok_or("not an FLV file")?;
    let mut tags = Vec::new();
    while let Some(tag) = reader.read_tag(&mut flv).map_err(|e| e.to_string())? {
        tags.push(Tag {
            tag_type: tag.tag_type,
            timestamp: tag.timestamp,
            data: tag.data,
        });
    }
    Ok(Arc::new(tags))
}

/// What the sinks received.
#[derive(Default)]
pub struct SinkCounters {
    /// Media payload bytes (audio and video messages) received by all sinks.
    pub media_bytes: AtomicU64,
    /// Publishes accepted and still connected.
    pub publishing: AtomicUsize,
}

/// Accepts RTMP publishes on `listener` until `stop`, discarding the media.
pub async fn run_sinks(
    listener: TcpListener,
    counters: Arc<SinkCounters>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let counters = Arc::clone(&counters);
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = sink(stream, &counters, &stop).await;
        });
    }
}

async fn sink(
    mut stream: TcpStream,
    counters: &SinkCounters,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    let mut session = ServerSession::new(ServerConfig::default(), std::time::Instant::now());
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut publishing = false;
    let result = loop {
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(256 * 1024);
        }
        let read = tokio::select! {
            read = stream.read_buf(&mut buf) => read,
            () = stop.cancelled() => break Ok(()),
        };
        match read {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
        let now = std::time::Instant::now();
        loop {
            match session.poll(&mut buf, now) {
                Ok(Some(ServerEvent::Publish { stream_id, .. })) => {
                    session.accept_publish(stream_id);
                    if !publishing {
                        publishing = true;
                        counters.publishing.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Some(
                    ServerEvent::Audio { payload, .. } | ServerEvent::Video { payload, .. },
                )) => {
                    counters
                        .media_bytes
                        .fetch_add(payload.len() as u64, Ordering::Relaxed);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
        }
        flush(&mut stream, session.out()).await?;
    };
    if publishing {
        counters.publishing.fetch_sub(1, Ordering::Relaxed);
    }
    result
}

/// Publishes `tags` to `rtmp://addr/app` as stream `name`, in real time, from
/// the start again at the end, until `stop`; `started` counts it once it
/// publishes.
pub async fn publish(
    addr: SocketAddr,
    app: String,
    name: String,
    tags: Arc<Vec<Tag>>,
    started: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut inbound = BytesMut::with_capacity(64 * 1024);
    let mut handshake = ClientHandshake::new(0);
    loop {
        let progress = handshake.read(&mut inbound).map_err(|e| e.to_string())?;
        while let Some(out) = handshake.take_output() {
            stream.write_all(&out).await.map_err(|e| e.to_string())?;
        }
        if let Progress::Done = progress {
            break;
        }
        if stream
            .read_buf(&mut inbound)
            .await
            .map_err(|e| e.to_string())?
            == 0
        {
            return Err("closed during the handshake".into());
        }
    }
    let url = format!("rtmp://{addr}/{app}");
    let mut session =
        ClientSession::after_handshake(ClientConfig::new(&url, &name), std::time::Instant::now());
    'publish: loop {
        flush(&mut stream, session.out())
            .await
            .map_err(|e| e.to_string())?;
        while let Some(event) = session.poll(&mut inbound).map_err(|e| e.to_string())? {
            if let ClientEvent::Publishing { .. } = event {
                break 'publish;
            }
        }
        flush(&mut stream, session.out())
            .await
            .map_err(|e| e.to_string())?;
        if stream
            .read_buf(&mut inbound)
            .await
            .map_err(|e| e.to_string())?
            == 0
        {
            return Err("closed before the publish started".into());
        }
    }
    started.fetch_add(1, Ordering::Relaxed);
    let span = tags.last().map_or(0, |t| t.timestamp) + 40;
    let begin = Instant::now();
    for round in 0u32.. {
        for tag in tags.iter() {
            let timestamp = tag.timestamp + round * span;
            let due = begin + Duration::from_millis(u64::from(timestamp));
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = stop.cancelled() => return Ok(()),
            }
            // The clip's metadata once; audio and video every round.
            match tag.tag_type {
                TagType::Script if round == 0 => session.send_metadata(timestamp, &tag.data),
                TagType::Script => continue,
                kind => session.send_media(kind as u8, timestamp, &tag.data),
            }
            flush(&mut stream, session.out())
                .await
                .map_err(|e| e.to_string())?;
            // Acknowledgements and pings, without waiting for them.
            while stream.try_read_buf(&mut inbound).is_ok_and(|n| n > 0) {}
            while session
                .poll(&mut inbound)
                .map_err(|e| e.to_string())?
                .is_some()
            {}
        }
    }
    Ok(())
}

/// Writes what a session queued, in vectored writes.
async fn flush(stream: &mut TcpStream, out: &mut OutBuf) -> std::io::Result<()> {
    while !out.is_empty() {
        let written = {
            let mut slices = [IoSlice::new(&[]); 64];
            let count = out.io_slices(&mut slices);
            stream.write_vectored(&slices[..count]).await?
        };
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        out.advance(written);
    }
    Ok(())
}
