//! Publishes an FLV file to an RTMP server with prism's own client session: a probe
//! for "does this ingest take our publish?", and the smallest example of driving the
//! sans-I/O handshake and session over a tokio socket.
//!
//! ```text
//! cargo run --example publish_probe -- clip.flv rtmp://127.0.0.1:1935/live mykey [--fast]
//! ```
//!
//! The server URL and the stream key are separate, as in OBS. Tags are sent in real
//! time (by their timestamps) unless `--fast`. Plain RTMP only: no TLS here.

use std::error::Error;
use std::io::IoSlice;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use prism::flv::{FlvReader, TagType};
use prism::rtmp::chunk::OutBuf;
use prism::rtmp::client::{ClientConfig, ClientError, ClientEvent, ClientSession};
use prism::rtmp::handshake::{ClientHandshake, Progress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// How long the server may take to accept the publish.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

type Result<T> = std::result::Result<T, Box<dyn Error>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let fast = args.iter().any(|arg| arg == "--fast");
    let positional: Vec<&String> = args.iter().filter(|arg| !arg.starts_with("--")).collect();
    let [file, server_url, key] = positional.as_slice() else {
        return Err(
            "usage: publish_probe <file.flv> <rtmp://host[:port]/app> <key> [--fast]".into(),
        );
    };

    let mut flv = BytesMut::from(&tokio::fs::read(file.as_str()).await?[..]);
    let mut reader = FlvReader::new();
    reader.read_header(&mut flv)?.ok_or("not an FLV file")?;

    let mut stream = connect(server_url).await?;
    let mut inbound = BytesMut::with_capacity(64 * 1024);
    handshake(&mut stream, &mut inbound).await?;
    let mut session = ClientSession::after_handshake(
        ClientConfig::new(server_url, key),
        std::time::Instant::now(),
    );
    let stream_id = timeout(
        PUBLISH_TIMEOUT,
        wait_for_publish(&mut stream, &mut session, &mut inbound),
    )
    .await
    .map_err(|_| "the server did not accept the publish in time")??;
    println!("publishing on stream {stream_id}");

    let started = Instant::now();
    let mut first_timestamp = None;
    let (mut tags, mut sent) = (0u64, 0usize);
    while let Some(tag) = reader.read_tag(&mut flv)? {
        if !fast {
            let first = *first_timestamp.get_or_insert(tag.timestamp);
            let due = Duration::from_millis(u64::from(tag.timestamp.wrapping_sub(first)));
            tokio::time::sleep_until(started + due).await;
        }
        send_tag(&mut session, tag.tag_type, tag.timestamp, &tag.data);
        sent += flush(&mut stream, session.out()).await?;
        tags += 1;
        // Answer pings and acknowledge without blocking the send loop.
        while stream.try_read_buf(&mut inbound).is_ok_and(|n| n > 0) {}
        drain_events(&mut session, &mut inbound)?;
        sent += flush(&mut stream, session.out()).await?;
    }
    if !flv.is_empty() {
        eprintln!("the file ends inside a tag ({} bytes left)", flv.len());
    }

    session.unpublish();
    drain_events(&mut session, &mut inbound)?;
    sent += flush(&mut stream, session.out()).await?;
    stream.shutdown().await?;
    println!(
        "unpublished: {tags} tags, {sent} bytes sent, {} bytes received, {:.1} s",
        session.bytes_in(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn connect(server_url: &str) -> Result<TcpStream> {
    let url = url::Url::parse(server_url)?;
    if url.scheme() != "rtmp" {
        return Err("only rtmp:// URLs (this probe has no TLS)".into());
    }
    let host = url.host_str().ok_or("the URL has no host")?;
    let stream = TcpStream::connect((host, url.port().unwrap_or(1935))).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn handshake(stream: &mut TcpStream, inbound: &mut BytesMut) -> Result<()> {
    let mut handshake = ClientHandshake::new(0);
    loop {
        let progress = handshake.read(inbound)?;
        while let Some(out) = handshake.take_output() {
            stream.write_all(&out).await?;
        }
        if let Progress::Done = progress {
            return Ok(());
        }
        if stream.read_buf(inbound).await? == 0 {
            return Err("the server closed the connection during the handshake".into());
        }
    }
}

async fn wait_for_publish(
    stream: &mut TcpStream,
    session: &mut ClientSession,
    inbound: &mut BytesMut,
) -> Result<u32> {
    loop {
        flush(stream, session.out()).await?;
        while let Some(event) = session.poll(inbound).map_err(report)? {
            println!("{event:?}");
            if let ClientEvent::Publishing { stream_id } = event {
                return Ok(stream_id);
            }
        }
        flush(stream, session.out()).await?;
        if stream.read_buf(inbound).await? == 0 {
            return Err("the server closed the connection before publish started".into());
        }
    }
}

fn drain_events(session: &mut ClientSession, inbound: &mut BytesMut) -> Result<()> {
    while let Some(event) = session.poll(inbound).map_err(report)? {
        println!("{event:?}");
    }
    Ok(())
}

fn report(err: ClientError) -> Box<dyn Error> {
    let kind = if err.is_permanent() {
        "permanent: check the URL and key"
    } else {
        "worth a retry"
    };
    format!("{err} ({kind})").into()
}

/// FLV script tags hold `"onMetaData", {...}`, the body `send_metadata` takes;
/// other script tags go out as plain data messages.
fn send_tag(session: &mut ClientSession, tag_type: TagType, timestamp: u32, data: &Bytes) {
    const ON_METADATA: &[u8] = b"\x02\x00\x0aonMetaData";
    match tag_type {
        TagType::Script if data.starts_with(ON_METADATA) => session.send_metadata(timestamp, data),
        _ => session.send_media(tag_type as u8, timestamp, data),
    }
}

/// Writes everything the session queued, with vectored writes (payloads are shared
/// slices, not copies); returns the byte count.
async fn flush(stream: &mut TcpStream, out: &mut OutBuf) -> std::io::Result<usize> {
    let mut total = 0;
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
        total += written;
    }
    Ok(total)
}
