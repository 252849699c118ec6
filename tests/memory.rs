//! Memory and CPU that unauthenticated peers can make prism spend, against the `prism`
//! binary (so that its memory is measured apart from the test's clients): messages started
//! and never finished on many connections, connections that trickle keepalives and never
//! stream, a chunk size of 1, commands in a tight loop. Each attack is test code; a real
//! ffmpeg publisher and player run through all of it and must lose nothing.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use common::wire::{self, connect_command, encode};
use common::*;
use prism::rtmp::amf0::Amf0Value;
use prism::rtmp::message::{Command, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The attack of issue 16: this many connections...
const ATTACKERS: usize = 100;
/// ...from this many addresses (127.0.N.1..), within the per-address limits...
const ATTACK_HOSTS: usize = 10;
/// ...each starting this many messages of 16 MiB - 1 on as many chunk streams...
const ATTACK_STREAMS: usize = 30;
/// ...and sending this much of each (1 MiB, in chunks of 64 KiB) before stopping short...
const ATTACK_CHUNKS_PER_STREAM: usize = 16;
const ATTACK_CHUNK: usize = 64 * 1024;
/// ...then a 12-byte keepalive this often.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// prism's default budget for partial messages of all connections (256 MiB).
const BUDGET: u64 = 256 << 20;
/// What each attacker holds once it has sent everything: 30 streams of 1 MiB.
const HELD_PER_ATTACKER: u64 = (ATTACK_STREAMS * ATTACK_CHUNKS_PER_STREAM * ATTACK_CHUNK) as u64;

/// The issue's bounds: peak RSS under the attack, and RSS within 15 s of its end.
const PEAK_RSS_LIMIT: u64 = 512 << 20;
const RSS_AFTER_LIMIT: u64 = 160 << 20;
const RSS_RECOVERY: Duration = Duration::from_secs(15);

/// Log limits lifted (this test counts every line a closed connection causes) and a
/// deep log queue, as in the flood test of tests/hostile.rs.
const LOG_LIFTED: &str = "[log]\nbuffer_lines = 65536\npeer_burst = 1000000\n\
    peer_lines_per_minute = 1000000\nall_peers_burst = 1000000\n\
    all_peers_lines_per_sec = 1000000\n";

/// Connects from `source` (any 127/8 address reaches a loopback listener on Linux) and
/// completes a plain handshake.
async fn connect_from(addr: SocketAddr, source: Ipv4Addr) -> Result<TcpStream, String> {
    wire::handshake_from(addr, Some(source.into()))
        .await
        .map(|(io, _)| io)
}

/// Publishes `key` on `io` with prism's own RTMP client session, as an anonymous
/// encoder may; returns once publishing is accepted.
async fn publish_on(io: &mut TcpStream, addr: SocketAddr, key: &str) -> Result<(), String> {
    use prism::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
    use prism::transport::write_out;
    let mut session = ClientSession::after_handshake(
        ClientConfig::new(&format!("rtmp://{addr}/live"), key),
        std::time::Instant::now(),
    );
    let mut inbound = BytesMut::with_capacity(8192);
    loop {
        write_out(io, session.out())
            .await
            .map_err(|e| e.to_string())?;
        if io.read_buf(&mut inbound).await.map_err(|e| e.to_string())? == 0 {
            return Err("closed before answering publish".to_owned());
        }
        while let Some(event) = session.poll(&mut inbound).map_err(|e| e.to_string())? {
            if let ClientEvent::Publishing { .. } = event {
                return Ok(());
            }
        }
    }
}

/// How an attacking connection ended.
#[derive(Debug)]
enum Outcome {
    /// prism closed it, this long after it connected, having been sent `sent` bytes.
    Closed { after: Duration, sent: usize },
    /// It sent everything and was still open when the test ended the attack.
    Held,
    /// Anything else (a bug in prism or in the test).
    Failed(String),
}

/// The shape of an attack: how many messages each connection starts and how many pieces
/// of 64 KiB of each it sends.
#[derive(Debug, Clone, Copy)]
struct Shape {
    streams: usize,
    pieces_per_stream: usize,
    /// Each message is one chunk (chunk size 2^31 - 1), its pieces without headers
    /// between them; else each piece is a chunk (chunk size 64 KiB).
    one_chunk: bool,
}

/// The attack of issue 16: 30 messages of 16 MiB, 1 MiB of each sent.
const ISSUE_16: Shape = Shape {
    streams: ATTACK_STREAMS,
    pieces_per_stream: ATTACK_CHUNKS_PER_STREAM,
    one_chunk: false,
};

/// Counts of attackers, shared with the test while the attack runs.
#[derive(Debug, Default)]
struct Progress {
    /// Attackers that sent everything they meant to.
    sent_all: AtomicUsize,
    /// Attackers that stopped sending, for whatever reason.
    settled: AtomicUsize,
}

/// What an attacker does once connected (and, with `publish`, publishing): a chunk size
/// of 64 KiB, then `shape.streams` messages of 16 MiB - 1 started on chunk streams 10..
/// and fed round-robin, `shape.pieces_per_stream` chunks of 64 KiB each, never finished;
/// then a 12-byte keepalive (an Acknowledgement with a type-1 header on chunk stream 2)
/// every [`KEEPALIVE`] until `stop`. With `shape.one_chunk`, a chunk size of 2^31 - 1
/// and no keepalives (they would be taken as payload of the unfinished chunk).
async fn attacker(
    addr: SocketAddr,
    source: Ipv4Addr,
    publish: Option<String>,
    shape: Shape,
    progress: Arc<Progress>,
    stop: CancellationToken,
) -> Outcome {
    let connected = Instant::now();
    let settle = || progress.settled.fetch_add(1, Ordering::Relaxed);
    let mut io = match connect_from(addr, source).await {
        Ok(io) => io,
        Err(reason) => {
            settle();
            return Outcome::Failed(reason);
        }
    };
    let result = match &publish {
        Some(key) => publish_on(&mut io, addr, key).await,
        None => io
            .write_all(&encode(&[(3, 0, connect_command())]))
            .await
            .map_err(|e| e.to_string()),
    };
    if let Err(reason) = result {
        settle();
        return Outcome::Failed(format!("before the attack: {reason}"));
    }
    let (mut reader, mut writer) = io.into_split();
    // prism's replies (acknowledgements) are read and dropped; the end of the stream is
    // prism closing the connection.
    let closed = CancellationToken::new();
    let reading = tokio::spawn({
        let closed = closed.clone();
        async move {
            let mut sink = vec![0u8; 64 * 1024];
            while reader.read(&mut sink).await.is_ok_and(|n| n > 0) {}
            closed.cancel();
            connected.elapsed()
        }
    });
    let mut sent = 0usize;
    let mut bytes = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
    let chunk_size: u32 = if shape.one_chunk {
        0x7FFF_FFFF
    } else {
        ATTACK_CHUNK as u32
    };
    bytes.extend_from_slice(&chunk_size.to_be_bytes());
    let payload = vec![0x5Au8; ATTACK_CHUNK];
    let mut failed_write = false;
    for round in 0..shape.pieces_per_stream {
        for stream in 0..shape.streams {
            let csid = 10 + stream as u8;
            if round == 0 {
                // Type 0: 16 MiB - 1 bytes of video on message stream 1.
                bytes.extend_from_slice(&[csid, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0]);
            } else if !shape.one_chunk {
                bytes.push(0xC0 | csid);
            }
            bytes.extend_from_slice(&payload);
        }
        if closed.is_cancelled() || writer.write_all(&bytes).await.is_err() {
            failed_write = true;
            break;
        }
        sent += bytes.len();
        bytes.clear();
    }
    settle();
    if !failed_write {
        progress.sent_all.fetch_add(1, Ordering::Relaxed);
        // A type-1 header on chunk stream 2 (4-byte message of type 3) and its 4 bytes.
        let keepalive = [0x42, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0, 0];
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    reading.abort();
                    return Outcome::Held;
                }
                () = closed.cancelled() => break,
                () = tokio::time::sleep(KEEPALIVE), if !shape.one_chunk => {
                    if writer.write_all(&keepalive).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    match tokio::time::timeout(Duration::from_secs(30), reading).await {
        Ok(Ok(after)) => Outcome::Closed { after, sent },
        Ok(Err(err)) => Outcome::Failed(format!("reader: {err}")),
        Err(_) => Outcome::Failed(format!(
            "a write failed after {sent} bytes but the connection did not close"
        )),
    }
}

/// Starts `count` attackers against `prism` from [`ATTACK_HOSTS`] addresses, publishing
/// (each its own name) or not; they run until closed or `stop`.
fn launch_attack(
    prism: &ChildPrism,
    count: usize,
    publish: bool,
    shape: Shape,
    progress: &Arc<Progress>,
    stop: &CancellationToken,
) -> tokio::task::JoinSet<Outcome> {
    let mut attackers = tokio::task::JoinSet::new();
    for n in 0..count {
        let source = Ipv4Addr::new(127, 0, 1 + (n % ATTACK_HOSTS) as u8, 1);
        let key = publish.then(|| format!("unfinished-{n}"));
        attackers.spawn(attacker(
            prism.rtmp,
            source,
            key,
            shape,
            Arc::clone(progress),
            stop.clone(),
        ));
    }
    attackers
}

/// Samples prism's RSS every 50 ms until `until` is cancelled; returns the peak.
async fn peak_rss(prism: &ChildPrism, until: CancellationToken) -> u64 {
    let mut peak = 0;
    while !until.is_cancelled() {
        peak = peak.max(prism.rss_bytes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peak.max(prism.rss_bytes())
}

/// Waits (up to [`RSS_RECOVERY`]) for prism's RSS to fall under [`RSS_AFTER_LIMIT`];
/// returns how long it took, or fails with the RSS it stayed at.
async fn wait_memory_back(prism: &ChildPrism) -> Duration {
    let since = Instant::now();
    loop {
        let rss = prism.rss_bytes();
        if rss < RSS_AFTER_LIMIT {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < RSS_RECOVERY,
            "prism kept {} MiB for {RSS_RECOVERY:?} after the attack ended",
            rss >> 20
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many lines prism logged that contain `part`.
fn logged(prism: &ChildPrism, part: &str) -> usize {
    prism
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains(part))
        .count()
}

/// An honest stream through prism: a player waiting for it, then ffmpeg publishing `clip`.
async fn honest_stream(
    prism: &ChildPrism,
    clip: &std::path::Path,
) -> (tokio::process::Child, tokio::process::Child) {
    let player = play_framemd5(&prism.url("live/honest"));
    prism.wait_log(&["playing"]).await;
    let publisher = publish(clip, &prism.url("live/honest"));
    prism.wait_log(&["publishing"]).await;
    (publisher, player)
}

/// The honest stream ended cleanly and its player got every packet.
async fn assert_honest_stream_intact(
    clip: &std::path::Path,
    publisher: tokio::process::Child,
    player: tokio::process::Child,
) {
    let (status, _) = finish(publisher).await;
    assert!(status.success(), "the honest publisher went on: {status}");
    let (status, out) = finish(player).await;
    assert!(
        status.success(),
        "the honest player ended cleanly: {status}"
    );
    assert_eq!(
        assert_source_from_keyframe(clip, &parse_framemd5(&out)),
        0,
        "the honest player lost nothing"
    );
}

/// The attack against a prism with an honest stream, by `count` publishing attackers of
/// `shape`, each of which holds `held_each` bytes of the budget once it has sent
/// everything. Checks that the budget held the attack: the survivors fit in it, every
/// other attacker was closed with a line that says why, prism's RSS grew (the attack did
/// take memory) but stayed under [`PEAK_RSS_LIMIT`], and once the survivors were gone it
/// fell under [`RSS_AFTER_LIMIT`] within [`RSS_RECOVERY`]; the honest stream, live for
/// the whole attack, lost nothing.
async fn publishing_attack_is_held_to_the_budget(
    tag: &str,
    count: usize,
    shape: Shape,
    held_each: u64,
) {
    let prism = ChildPrism::start(tag, LOG_LIFTED).await;
    let clip = clip(30);
    let (publisher, player) = honest_stream(&prism, &clip).await;
    let baseline = prism.rss_bytes();

    let progress = Arc::new(Progress::default());
    let stop = CancellationToken::new();
    let sampling = CancellationToken::new();
    let started = Instant::now();
    let attackers = launch_attack(&prism, count, true, shape, &progress, &stop);
    let sampler = peak_rss(&prism, sampling.clone());
    let attack = async {
        // Until every attacker is closed or holds what it sent, then a few keepalives.
        let deadline = Instant::now() + Duration::from_secs(120);
        while progress.settled.load(Ordering::Relaxed) < count {
            assert!(Instant::now() < deadline, "the attack never settled");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let settled = started.elapsed();
        tokio::time::sleep(KEEPALIVE * 4).await;
        stop.cancel();
        let outcomes = attackers.join_all().await;
        sampling.cancel();
        (outcomes, settled)
    };
    let ((outcomes, settled), peak) = tokio::join!(attack, sampler);
    let mut publisher = publisher;
    assert!(
        publisher.try_wait().unwrap().is_none(),
        "the honest stream was live for the whole attack"
    );

    let mut closed = 0;
    let mut held = 0;
    let mut sent_by_closed = 0;
    let mut failures = Vec::new();
    for outcome in &outcomes {
        match outcome {
            Outcome::Closed { sent, .. } => {
                closed += 1;
                sent_by_closed += sent;
            }
            Outcome::Held => held += 1,
            Outcome::Failed(reason) => failures.push(reason),
        }
    }
    eprintln!(
        "{tag}: attack settled after {settled:?}: {held} connections hold their messages, \
         {closed} closed after sending {} MiB; RSS baseline {} MiB, peak {} MiB",
        sent_by_closed >> 20,
        baseline >> 20,
        peak >> 20
    );
    assert!(failures.is_empty(), "attackers failed: {failures:?}");
    assert_eq!(held + closed, count);
    // What the survivors hold fits in the budget; all the others were closed, each with
    // a line that says why.
    assert!(
        held as u64 * held_each <= BUDGET,
        "{held} connections of {} MiB each fit in {} MiB",
        held_each >> 20,
        BUDGET >> 20
    );
    assert!(held > 0, "connections within the budget are not closed");
    prism.wait_log_count("shared budget", closed).await;
    // The attack did take memory (so the bound below is not vacuous), within the bound.
    assert!(
        peak > baseline + (BUDGET / 2),
        "the attack held memory: peak {} MiB, baseline {} MiB",
        peak >> 20,
        baseline >> 20
    );
    assert!(
        peak < PEAK_RSS_LIMIT,
        "peak RSS {} MiB under the attack",
        peak >> 20
    );

    // The survivors are gone now: their memory goes back to the system.
    let took = wait_memory_back(&prism).await;
    eprintln!(
        "{tag}: RSS under {} MiB {took:?} after the attack ended",
        RSS_AFTER_LIMIT >> 20
    );
    assert_honest_stream_intact(&clip, publisher, player).await;
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_messages_of_publishing_connections_are_held_to_the_shared_budget_and_memory_goes_back()
 {
    // Issue 16's attack: 100 connections, 30 messages of 16 MiB started on each, 1 MiB of
    // each sent (30 MiB a connection, 3 GB in all, within the per-connection limit).
    publishing_attack_is_held_to_the_budget(
        "unfinished-publishing",
        ATTACKERS,
        ISSUE_16,
        HELD_PER_ATTACKER,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_chunk_size_holds_no_memory_outside_the_shared_budget() {
    // 60 connections with a chunk size of 2^31 - 1, each sending 14 MiB of a single
    // chunk of 16 MiB - 1 and then nothing. The chunk never ends: prism used to wait for
    // it whole in the connection's read buffer, outside every limit (840 MiB in all);
    // now it is taken into the reassembly buffer as it arrives, within the budget.
    let shape = Shape {
        streams: 1,
        pieces_per_stream: 14 * 16,
        one_chunk: true,
    };
    // 14 MiB received: the buffer has doubled up to the message's length.
    publishing_attack_is_held_to_the_budget("huge-chunks", 60, shape, 0xFF_FFFF).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_stream_are_closed_by_the_idle_timeout_whatever_they_send() {
    const IDLE_SECS: u64 = 3;
    let prism = ChildPrism::start(
        "unfinished-idle",
        &format!("[rtmp]\nidle_timeout_secs = {IDLE_SECS}\n{LOG_LIFTED}"),
    )
    .await;
    let clip = clip(15);
    let (publisher, player) = honest_stream(&prism, &clip).await;

    // The attack without publishing, small enough to stay within the budget (4 messages
    // started, 256 KiB reserved for each): keepalives every second, a third of the idle
    // timeout, do not keep these connections open.
    let shape = Shape {
        streams: 4,
        pieces_per_stream: 1,
        one_chunk: false,
    };
    let progress = Arc::new(Progress::default());
    let stop = CancellationToken::new();
    let sampling = CancellationToken::new();
    let attackers = launch_attack(&prism, ATTACKERS, false, shape, &progress, &stop);
    let sampler = peak_rss(&prism, sampling.clone());
    let attack = async {
        let outcomes = tokio::time::timeout(Duration::from_secs(120), attackers.join_all())
            .await
            .expect("every attacker was closed");
        sampling.cancel();
        outcomes
    };
    let (outcomes, peak) = tokio::join!(attack, sampler);
    let mut publisher = publisher;
    assert!(
        publisher.try_wait().unwrap().is_none(),
        "the honest stream was live for the whole attack"
    );
    let idle = Duration::from_secs(IDLE_SECS);
    let mut failures = Vec::new();
    for outcome in &outcomes {
        match outcome {
            // Closed by the idle timeout counted from connect, not from the last
            // keepalive (the connect is after `after` began counting).
            Outcome::Closed { after, .. }
                if *after >= idle && *after <= idle + Duration::from_secs(10) => {}
            other => failures.push(format!("{other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} attackers: {failures:?}",
        failures.len()
    );
    assert_eq!(
        progress.sent_all.load(Ordering::Relaxed),
        ATTACKERS,
        "every attacker sent everything and went on with keepalives"
    );
    prism
        .wait_log_count("neither published nor played for 3s", ATTACKERS)
        .await;
    assert_eq!(
        logged(&prism, "shared budget"),
        0,
        "the budget was not needed"
    );
    eprintln!("peak RSS {} MiB", peak >> 20);
    assert!(
        peak < PEAK_RSS_LIMIT,
        "peak RSS {} MiB under the attack",
        peak >> 20
    );
    wait_memory_back(&prism).await;
    assert_honest_stream_intact(&clip, publisher, player).await;
    prism.stop().await;
}

/// Reads and drops what prism sends on `reader` until it closes the connection; returns
/// when that was.
fn until_closed(mut reader: tokio::net::tcp::OwnedReadHalf) -> tokio::task::JoinHandle<Instant> {
    tokio::spawn(async move {
        let mut sink = vec![0u8; 64 * 1024];
        while reader.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        Instant::now()
    })
}

/// How long a connection whose traffic is far beyond any encoder's may take to be closed.
const CLOSED_WITHIN: Duration = Duration::from_secs(10);

/// Publishes, then sets a chunk size of 1 and sends a 16 MB video message at one byte per
/// chunk (each byte behind a 1-byte chunk header), for as long as prism lets it.
async fn chunk_size_one(addr: SocketAddr) -> (Duration, usize) {
    let mut io = connect_from(addr, Ipv4Addr::new(127, 0, 2, 1))
        .await
        .unwrap();
    publish_on(&mut io, addr, "tiny-chunks").await.unwrap();
    let (reader, mut writer) = io.into_split();
    let closed = until_closed(reader);
    let started = Instant::now();
    // Set Chunk Size 1, then the type-0 header of a 16 MiB - 1 video message on stream 1.
    let mut bytes = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    bytes.extend_from_slice(&[0x08, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0, 0x17]);
    let mut sent = 0;
    let block: Vec<u8> = std::iter::repeat_n([0xC8, 0x5A], 32 * 1024)
        .flatten()
        .collect();
    while sent < 2 * 0xFF_FFFF && started.elapsed() < 3 * CLOSED_WITHIN {
        if writer.write_all(&bytes).await.is_err() {
            break;
        }
        sent += bytes.len();
        bytes.clone_from(&block);
    }
    let closed_at = tokio::time::timeout(CLOSED_WITHIN, closed)
        .await
        .expect("prism closed the connection")
        .unwrap();
    (closed_at - started, sent)
}

/// Connects, then sends createStream in a tight loop, 500 commands per write, for as long
/// as prism lets it.
async fn create_stream_flood(addr: SocketAddr) -> (Duration, usize) {
    let mut io = connect_from(addr, Ipv4Addr::new(127, 0, 2, 2))
        .await
        .unwrap();
    io.write_all(&encode(&[(3, 0, connect_command())]))
        .await
        .unwrap();
    let (reader, mut writer) = io.into_split();
    let closed = until_closed(reader);
    let create = Message::Command(Command::new("createStream", 2.0, Amf0Value::Null, vec![]));
    let batch = encode(&vec![(3, 0, create); 500]);
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < 3 * CLOSED_WITHIN {
        if writer.write_all(&batch).await.is_err() {
            break;
        }
        sent += 500;
    }
    let closed_at = tokio::time::timeout(CLOSED_WITHIN, closed)
        .await
        .expect("prism closed the connection")
        .unwrap();
    (closed_at - started, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_size_of_one_and_a_command_flood_are_closed_at_once_and_a_live_stream_goes_on() {
    let prism = ChildPrism::start("cpu-per-byte", LOG_LIFTED).await;
    let clip = clip(12);
    let (publisher, player) = honest_stream(&prism, &clip).await;

    let (tiny, flood) = tokio::join!(chunk_size_one(prism.rtmp), create_stream_flood(prism.rtmp));
    eprintln!(
        "chunk size 1: closed after {:?} ({} bytes written); createStream flood: closed \
         after {:?} ({} commands written)",
        tiny.0, tiny.1, flood.0, flood.1
    );
    for (what, took) in [("chunk size 1", tiny.0), ("createStream flood", flood.0)] {
        assert!(took < CLOSED_WITHIN, "{what}: closed after {took:?}");
    }
    prism
        .wait_log(&[
            "closing connection",
            "chunk size 1 is below the minimum of 64",
        ])
        .await;
    prism
        .wait_log(&[
            "closing connection",
            "commands within a second, over the limit of 1000 per second",
        ])
        .await;
    assert_honest_stream_intact(&clip, publisher, player).await;
    prism.stop().await;
}
