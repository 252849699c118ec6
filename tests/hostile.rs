//! Bad input from the network: each bad connection gets closed, with a log line,
//! and nothing else is disturbed. A live stream runs through all of it and its
//! player must still get every packet.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::wire::{self, connect_command, encode};
use common::*;
use prism::rtmp::amf0::Amf0Value;
use prism::rtmp::message::{Command, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a bad connection may take to be closed in these tests.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

async fn connect(prism: &Prism) -> TcpStream {
    TcpStream::connect(prism.addr).await.expect("connects")
}

/// Completes a plain client handshake on `socket`.
async fn handshake(socket: &mut TcpStream) {
    let mut inbound = BytesMut::with_capacity(4096);
    wire::handshake_on(socket, &mut inbound)
        .await
        .expect("server handshake is valid");
}

/// Asserts the server closes `socket` (EOF or reset) within `CLOSE_WITHIN`.
async fn assert_closed(socket: TcpStream) {
    assert_closed_within(socket, CLOSE_WITHIN).await;
}

/// Asserts the server closes `socket` (EOF or reset) within `limit`.
async fn assert_closed_within(mut socket: TcpStream, limit: Duration) {
    let drain = async {
        let mut sink = vec![0u8; 64 * 1024];
        loop {
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(limit, drain)
        .await
        .expect("the server closed the bad connection in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connections_are_closed_and_a_live_stream_is_untouched() {
    // Protocol errors must close a connection at once, well before these timeouts.
    let prism = Prism::start_with(|c| {
        c.rtmp.handshake_timeout_secs = 4;
        c.rtmp.max_connections_per_ip = 1000;
        c.limits.max_message_len = 1 << 20;
        c.limits.max_pending_bytes = 4 << 20;
    })
    .await;
    let clip = test_flv();
    let player = play_framemd5(&prism.url("live/victim"));
    prism.wait_subscribers("live", "victim", 1).await;
    let publisher = publish(&clip, &prism.url("live/victim"));
    prism.wait_live("live", "victim").await;

    // Not RTMP at all.
    let mut http = connect(&prism).await;
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Encrypted RTMPE (version 6), which prism does not speak.
    let mut rtmpe = connect(&prism).await;
    rtmpe.write_all(&[6u8; 1537]).await.unwrap();
    // Connections that never finish the handshake: closed by the handshake timeout.
    let mut silent = Vec::new();
    for _ in 0..100 {
        let mut socket = connect(&prism).await;
        socket.write_all(&[3u8; 100]).await.unwrap();
        silent.push(socket);
    }
    // A chunk size of 2^31-1, then a message longer than the configured 1 MiB limit:
    // the length is refused before anything is allocated.
    let mut giant = connect(&prism).await;
    handshake(&mut giant).await;
    let mut bytes = encode(&[(2, 0, Message::SetChunkSize(0x7FFF_FFFF))]);
    // Type-0 header on csid 3: timestamp 0, length 0xFFFFFF, type 9, stream 1.
    bytes.extend_from_slice(&[0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0]);
    bytes.extend_from_slice(&[0u8; 1024]);
    giant.write_all(&bytes).await.unwrap();
    // More chunk streams than the limit (64), each with a partial message; the
    // two-byte basic header form reaches csids 64..319.
    let mut streams = connect(&prism).await;
    handshake(&mut streams).await;
    let mut bytes = Vec::new();
    for csid in 0u8..100 {
        bytes.extend_from_slice(&[0x00, csid, 0, 0, 0, 0, 0x10, 0, 9, 1, 0, 0, 0]);
        bytes.extend_from_slice(&[0u8; 128]);
    }
    streams.write_all(&bytes).await.unwrap();
    // AMF nested far deeper than any real command.
    let mut deep = connect(&prism).await;
    handshake(&mut deep).await;
    let mut body = vec![0x02, 0x00, 0x07];
    body.extend_from_slice(b"connect");
    body.extend_from_slice(&[0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]);
    for _ in 0..10_000 {
        body.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
    }
    let payload = Bytes::from(body);
    let bytes = encode(&[(
        3,
        0,
        Message::Other {
            type_id: 20,
            payload,
        },
    )]);
    deep.write_all(&bytes).await.unwrap();
    // A command before connect.
    let mut early = connect(&prism).await;
    handshake(&mut early).await;
    let publish = Message::Command(Command::new(
        "publish",
        2.0,
        Amf0Value::Null,
        vec!["victim".into()],
    ));
    early.write_all(&encode(&[(3, 1, publish)])).await.unwrap();
    // A second connect.
    let mut twice = connect(&prism).await;
    handshake(&mut twice).await;
    twice
        .write_all(&encode(&[
            (3, 0, connect_command()),
            (3, 0, connect_command()),
        ]))
        .await
        .unwrap();

    for socket in [http, rtmpe, giant, streams, deep, early, twice] {
        assert_closed_within(socket, Duration::from_secs(2)).await;
    }
    assert!(
        prism.hub().is_live("live", "victim"),
        "the live stream is still live"
    );
    for socket in silent {
        assert_closed(socket).await;
    }

    let (status, _) = finish(publisher).await;
    assert!(status.success(), "the publisher never noticed: {status}");
    let (status, out) = finish(player).await;
    assert!(status.success());
    assert_eq!(
        assert_source_from_keyframe(&clip, &parse_framemd5(&out)),
        0,
        "the player lost nothing"
    );
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_publishes_is_closed_when_idle() {
    let prism = Prism::start_with(|c| c.rtmp.idle_timeout_secs = 1).await;
    let mut socket = connect(&prism).await;
    handshake(&mut socket).await;
    socket
        .write_all(&encode(&[(3, 0, connect_command())]))
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    assert_closed(socket).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed by the idle timeout, not at once"
    );
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_holds_extra_connections_back() {
    let prism = Prism::start_with(|c| {
        c.rtmp.max_connections = 2;
        c.rtmp.handshake_timeout_secs = 30;
    })
    .await;
    let mut first = connect(&prism).await;
    let mut second = connect(&prism).await;
    handshake(&mut first).await;
    handshake(&mut second).await;
    // The third is accepted by the kernel but not served while two are open.
    let mut third = connect(&prism).await;
    third.write_all(&[3u8; 1537]).await.unwrap();
    let mut byte = [0u8; 1];
    let served = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(served.is_err(), "no S0 while at the limit");
    drop(first);
    let served = tokio::time::timeout(CLOSE_WITHIN, third.read(&mut byte)).await;
    assert!(matches!(served, Ok(Ok(1))), "served once a slot is free");
    assert_eq!(byte[0], 3, "S0");
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_that_stops_reading_drops_frames_and_holds_back_no_one() {
    // A small queue, so the stalled player overflows within the clip.
    let prism = Prism::start_with(|c| {
        c.hub.queue_max_bytes = 256 * 1024;
        c.rtmp.idle_timeout_secs = 60;
    })
    .await;
    let clip = heavy_flv();
    let url = prism.url("live/stall");

    // The stalled player: plays, then never reads again. A small receive buffer
    // makes the kernel stop absorbing bytes early.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(prism.addr).await.unwrap();
    handshake(&mut stalled).await;
    let play = Message::Command(Command::new(
        "play",
        3.0,
        Amf0Value::Null,
        vec!["stall".into()],
    ));
    let create = Message::Command(Command::new("createStream", 2.0, Amf0Value::Null, vec![]));
    stalled
        .write_all(&encode(&[
            (3, 0, connect_command()),
            (3, 0, create),
            (8, 1, play),
        ]))
        .await
        .unwrap();

    let healthy = play_framemd5(&url);
    prism.wait_subscribers("live", "stall", 2).await;
    let publisher = publish(&clip, &url);
    prism.wait_live("live", "stall").await;
    let stream = prism.hub().stream("live", "stall").expect("live");
    let (status, _) = finish(publisher).await;
    assert!(
        status.success(),
        "the publisher was never held back: {status}"
    );
    let (status, out) = finish(healthy).await;
    assert!(status.success());
    assert_eq!(
        assert_source_from_keyframe(&clip, &parse_framemd5(&out)),
        0,
        "the healthy player got every packet"
    );
    assert!(
        stream.drop_episodes() >= 1,
        "the stalled player dropped frames"
    );
    drop(stalled);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let prism = Prism::start_with(|c| c.rtmp.max_connections_per_ip = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut socket = connect(&prism).await;
        handshake(&mut socket).await;
        held.push(socket);
    }
    // The fourth from the same address is closed at once, without a handshake.
    let mut fourth = connect(&prism).await;
    let _ = fourth.write_all(&[3u8; 1537]).await;
    assert_closed_within(fourth, Duration::from_secs(2)).await;
    // A slot frees when one of the three closes.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect(&prism).await;
    handshake(&mut again).await;
    prism.stop().await;
}

/// Tries to publish `key` with prism's own client; the open connection on success.
async fn try_publish(prism: &Prism, key: &str) -> Option<TcpStream> {
    use prism::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
    use prism::transport::write_out;
    let mut socket = connect(prism).await;
    handshake(&mut socket).await;
    let mut session = ClientSession::after_handshake(
        ClientConfig::new(&format!("rtmp://{}/live", prism.addr), key),
        std::time::Instant::now(),
    );
    let mut inbound = BytesMut::with_capacity(4096);
    let outcome = tokio::time::timeout(CLOSE_WITHIN, async {
        loop {
            write_out(&mut socket, session.out()).await.ok()?;
            match socket.read_buf(&mut inbound).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            loop {
                match session.poll(&mut inbound) {
                    Ok(Some(ClientEvent::Publishing { .. })) => return Some(()),
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(_) => return None,
                }
            }
        }
    })
    .await
    .expect("an answer in time");
    outcome.map(|()| socket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_publishing_hundreds_of_names_is_held_to_its_limit_and_a_live_stream_goes_on() {
    let prism = Prism::start_with(|c| {
        c.rtmp.max_connections_per_ip = 1000;
        c.rtmp.max_publishers_per_ip = 20;
    })
    .await;
    let clip = clip(20);
    let player = play_framemd5(&prism.url("live/steady"));
    prism.wait_subscribers("live", "steady", 1).await;
    let publisher = publish(&clip, &prism.url("live/steady"));
    prism.wait_live("live", "steady").await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..300 {
        match try_publish(&prism, &format!("flood-{i}")).await {
            Some(socket) => accepted.push(socket),
            None => refused += 1,
        }
    }
    assert_eq!(
        accepted.len(),
        19,
        "20 per address, one taken by the real publisher"
    );
    assert_eq!(refused, 281);
    assert!(
        prism.hub().is_live("live", "steady"),
        "still publishing during the flood"
    );
    assert!(
        prism.hub().len() <= 21,
        "the hub holds only the accepted streams"
    );
    drop(accepted);
    let (status, _) = finish(publisher).await;
    assert!(status.success(), "the real publisher went on: {status}");
    let (status, out) = finish(player).await;
    assert!(status.success());
    assert_eq!(
        assert_source_from_keyframe(&clip, &parse_framemd5(&out)),
        0,
        "its player lost nothing"
    );
    prism.stop().await;
}

/// What one flood connection got.
#[derive(Debug)]
enum FloodOutcome {
    /// Publishing was accepted; then prism closed the silent publisher after `held`.
    Closed { held: Duration },
    /// Publishing was refused with this status code.
    Refused(String),
    /// Anything else (a bug in prism or in the test).
    Failed(String),
}

/// Connects from `source` (any 127/8 address reaches the loopback listener on
/// Linux), completes the handshake and sends a raw connect; then, with `key`,
/// publishes that name with prism's own RTMP client and sends nothing more;
/// without, stays silent. Either way, waits for prism to close the connection.
async fn flood_connection(
    addr: std::net::SocketAddr,
    source: std::net::Ipv4Addr,
    key: Option<String>,
) -> FloodOutcome {
    use prism::rtmp::client::{ClientConfig, ClientError, ClientEvent, ClientSession};
    use prism::transport::write_out;
    let run = async {
        let (mut io, mut inbound) = wire::handshake_from(addr, Some(source.into())).await?;
        let Some(key) = key else {
            io.write_all(&encode(&[(3, 0, connect_command())]))
                .await
                .map_err(|e| e.to_string())?;
            let since = tokio::time::Instant::now();
            while io.read_buf(&mut inbound).await.is_ok_and(|n| n > 0) {
                inbound.clear();
            }
            return Ok(FloodOutcome::Closed {
                held: since.elapsed(),
            });
        };
        let mut session = ClientSession::after_handshake(
            ClientConfig::new(&format!("rtmp://{addr}/live"), &key),
            std::time::Instant::now(),
        );
        'answer: loop {
            write_out(&mut io, session.out())
                .await
                .map_err(|e| e.to_string())?;
            if io.read_buf(&mut inbound).await.map_err(|e| e.to_string())? == 0 {
                return Err("closed before answering publish".to_owned());
            }
            loop {
                match session.poll(&mut inbound) {
                    Ok(Some(ClientEvent::Publishing { .. })) => break 'answer,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(ClientError::PublishRejected { code, .. }) => {
                        return Ok(FloodOutcome::Refused(code));
                    }
                    Err(err) => return Err(err.to_string()),
                }
            }
        }
        // A silent publisher: no media, only waiting for prism to close it.
        let since = tokio::time::Instant::now();
        while io.read_buf(&mut inbound).await.is_ok_and(|n| n > 0) {
            inbound.clear();
        }
        Ok(FloodOutcome::Closed {
            held: since.elapsed(),
        })
    };
    match tokio::time::timeout(Duration::from_secs(45), run).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(reason)) => FloodOutcome::Failed(reason),
        Err(_) => FloodOutcome::Failed("no answer within 45 s".to_owned()),
    }
}

/// Flood limits, low enough that the flood reaches each of them within seconds.
const FLOOD_MAX_CONNECTIONS: usize = 400;
const FLOOD_MAX_STREAMS: usize = 300;
const FLOOD_IDLE_SECS: u64 = 2;
/// Stream names published, from `FLOOD_HOSTS` addresses (well within the per-address
/// limits, which cannot help here), and connections that never publish.
const FLOOD_NAMES: usize = 2500;
const FLOOD_HOSTS: usize = 500;
const FLOOD_SQUATTERS: usize = 200;
/// Client connections in flight at once: above the connection limit, so that some
/// wait in the listen backlog, but within it (1024), so that the kernel does not
/// drop SYNs and make clients wait seconds to retry.
const FLOOD_IN_FLIGHT: usize = 900;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_names_from_many_addresses_hit_the_overall_limits_and_a_live_stream_goes_on() {
    // This test counts every refusal in the log, so the log's rate limits for
    // client addresses (which would rightly hold most of them back) are lifted,
    // and its queue is deep enough that the test's reader never falls behind it.
    let prism = ChildPrism::start(
        "flood",
        &format!(
            "[rtmp]\nmax_connections = {FLOOD_MAX_CONNECTIONS}\nidle_timeout_secs = {FLOOD_IDLE_SECS}\n\
             [hub]\nmax_streams = {FLOOD_MAX_STREAMS}\n[relay]\npublisher_grace_secs = 1\n\
             [log]\nbuffer_lines = 65536\npeer_burst = 1000000\npeer_lines_per_minute = 1000000\n\
             all_peers_burst = 1000000\nall_peers_lines_per_sec = 1000000\n"
        ),
    )
    .await;
    let clip = clip(30);
    let player = play_framemd5(&prism.url("live/steady"));
    prism.wait_log(&["playing"]).await;
    let publisher = publish(&clip, &prism.url("live/steady"));
    prism.wait_log(&["publishing"]).await;
    let baseline = prism.rss_bytes();

    // Sample the gauges and prism's memory while the flood runs.
    let flooding = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let flooding = flooding.clone();
        let prism = &prism;
        async move {
            let (mut connections, mut streams, mut rss) = (0f64, 0f64, 0u64);
            while !flooding.is_cancelled() {
                connections = connections.max(prism.gauge("prism_connections").await);
                streams = streams.max(prism.gauge("prism_streams").await);
                rss = rss.max(prism.rss_bytes());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (connections, streams, rss)
        }
    };
    let flood = async {
        let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(FLOOD_IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        let addr = prism.rtmp;
        let total = FLOOD_NAMES + FLOOD_SQUATTERS;
        let (mut names, mut squatters) = (0, 0);
        for i in 0..total {
            // Squatters spread evenly among the publishers.
            let squatter = (i + 1) * FLOOD_SQUATTERS / total > squatters;
            let (source, key) = if squatter {
                let n = squatters;
                squatters += 1;
                let source = std::net::Ipv4Addr::new(127, 2, (n / 200) as u8, (n % 200 + 1) as u8);
                (source, None)
            } else {
                let host = names % FLOOD_HOSTS;
                let key = format!("flood-{names}");
                names += 1;
                let source =
                    std::net::Ipv4Addr::new(127, 1, (host / 200) as u8, (host % 200 + 1) as u8);
                (source, Some(key))
            };
            let permit = std::sync::Arc::clone(&in_flight)
                .acquire_owned()
                .await
                .unwrap();
            tasks.spawn(async move {
                let outcome = flood_connection(addr, source, key.clone()).await;
                drop(permit);
                (key.is_some(), outcome)
            });
        }
        let outcomes = tasks.join_all().await;
        flooding.cancel();
        outcomes
    };
    let started = tokio::time::Instant::now();
    let (outcomes, (max_connections, max_streams, peak_rss)) = tokio::join!(flood, sampler);
    eprintln!(
        "flood: {:?}; peak connections {max_connections}, streams {max_streams}, \
         rss {} MiB (baseline {} MiB)",
        started.elapsed(),
        peak_rss >> 20,
        baseline >> 20
    );

    let idle = Duration::from_secs(FLOOD_IDLE_SECS);
    let (mut published, mut refused, mut squatted) = (0, 0, 0);
    let mut failures = Vec::new();
    for (publishing, outcome) in &outcomes {
        match outcome {
            FloodOutcome::Closed { held } => {
                // Closed by the idle timeout, not earlier, not much later.
                assert!(
                    *held >= idle / 2 && *held <= idle + Duration::from_secs(10),
                    "a silent connection was closed after {held:?}"
                );
                if *publishing {
                    published += 1;
                } else {
                    squatted += 1;
                }
            }
            FloodOutcome::Refused(code) => {
                assert!(*publishing);
                assert_eq!(
                    code, "NetStream.Publish.Rejected",
                    "refused by the stream limit"
                );
                refused += 1;
            }
            FloodOutcome::Failed(reason) => failures.push(reason.clone()),
        }
    }
    eprintln!("flood: {published} published, {refused} refused, {squatted} squatters");
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(
        published + refused,
        FLOOD_NAMES,
        "every publish was answered"
    );
    assert_eq!(
        squatted, FLOOD_SQUATTERS,
        "every silent connection was closed when idle"
    );
    assert!(
        published >= FLOOD_MAX_STREAMS - 1,
        "the hub filled up: {published} accepted"
    );
    assert!(refused > 0, "the stream limit refused some: {refused}");
    prism.wait_log_count("too many streams", refused).await;
    assert!(
        max_connections <= FLOOD_MAX_CONNECTIONS as f64,
        "at most max_connections served at once: {max_connections}"
    );
    assert!(
        max_streams <= FLOOD_MAX_STREAMS as f64,
        "at most max_streams streams: {max_streams}"
    );
    // Memory: what the limits allow (a read buffer and session per connection, a
    // small entry per stream; measured: 18 MiB over the baseline), with a wide
    // margin. A leak of a read buffer per connection over the 2700 of the flood
    // would break it.
    let budget = 64 << 20;
    assert!(
        peak_rss <= baseline + budget,
        "prism's memory stayed bounded: peak {} MiB, baseline {} MiB",
        peak_rss >> 20,
        baseline >> 20
    );

    // When the flood is over, only the live stream and its two connections remain.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let streams = prism.streams().await;
        let connections = prism.gauge("prism_connections").await;
        assert!(
            !streams.is_empty(),
            "the live clip ended before the flood did (the flood took {:?})",
            started.elapsed()
        );
        if streams.len() == 1 && connections == 2.0 {
            assert_eq!(
                streams[0]["publisher"]["remote_addr"]
                    .as_str()
                    .map(|a| a.starts_with("127.0.0.1:")),
                Some(true),
                "the stream left is the live one: {streams:?}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cleaned up after the flood: {} streams, {connections} connections",
            streams.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, _) = finish(publisher).await;
    assert!(status.success(), "the real publisher went on: {status}");
    let (status, out) = finish(player).await;
    assert!(status.success());
    assert_eq!(
        assert_source_from_keyframe(&clip, &parse_framemd5(&out)),
        0,
        "its player lost nothing"
    );
    prism.stop().await;
}
