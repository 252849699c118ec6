//! prism's log can neither stop the relay nor be flooded from the network.
//!
//! Each test runs the `prism` binary with its stderr somewhere hostile: a pipe
//! nobody reads, /dev/full, or a pipe the test measures while clients flood
//! prism with publishes whose query strings hold 1300 unknown parameters. Real
//! ffmpeg publishes and plays, a real nginx-rtmp is the ingest, and what arrives
//! is compared with what was sent, packet by packet.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::sinks::{NginxSink, recording_framemd5};
use common::*;
use prism::rtmp::client::{ClientConfig, ClientError, ClientEvent, ClientSession};
use prism::transport::write_out;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a sink or the API may take to show what the test waits for.
const WAIT: Duration = Duration::from_secs(30);

/// The budget: a 10 s flood may grow the log by at most 2 MB.
const FLOOD: Duration = Duration::from_secs(10);
const FLOOD_LOG_BUDGET: u64 = 2_000_000;

/// Rate limits too wide to matter, for the tests whose subject is the writer.
const NO_RATE_LIMIT: &str = "peer_burst = 1000000\npeer_lines_per_minute = 1000000\n\
                             all_peers_burst = 1000000\nall_peers_lines_per_sec = 1000000\n";

/// A value of `/metrics`' `prism_log_lines_dropped_total` series.
async fn dropped(prism: &ChildPrism, reason: &str) -> f64 {
    let text = prism.get("/metrics").await;
    let series = format!("prism_log_lines_dropped_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series)?.parse().ok())
        .unwrap_or_else(|| panic!("{series}in /metrics:\n{text}"))
}

/// The one destination of the one live stream, from the status API.
async fn only_destination(prism: &ChildPrism) -> Option<serde_json::Value> {
    let streams = prism.streams().await;
    let destinations = streams.first()?["destinations"].as_array()?.clone();
    destinations.into_iter().next()
}

/// /healthz, the stream list and /metrics all answer (each within ChildPrism's
/// 10 s request timeout).
async fn http_answers(prism: &ChildPrism) {
    assert_eq!(prism.get("/healthz").await.trim(), "ok");
    prism.streams().await;
    prism.get("/metrics").await;
}

/// Bytes waiting in a pipe (FIONREAD).
fn pipe_pending(reader: &std::io::PipeReader) -> usize {
    use std::os::fd::AsRawFd;
    let mut pending: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, to a valid fd we own.
    let rc = unsafe { libc::ioctl(reader.as_raw_fd(), libc::FIONREAD, &mut pending) };
    assert_eq!(rc, 0, "FIONREAD");
    usize::try_from(pending).unwrap()
}

/// Connects from `source` and sends HTTP instead of RTMP: prism logs the
/// connection and its refusal, and closes it. Returns when prism has closed it.
async fn bad_connection(addr: SocketAddr, source: Ipv4Addr) {
    let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
        return;
    };
    if socket.bind((source, 0).into()).is_err() {
        return;
    }
    let Ok(mut io) = socket.connect(addr).await else {
        return;
    };
    let _ = io.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while io.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    })
    .await;
}

/// Keeps making log lines (bad connections from many addresses) until `stop`.
fn keep_logging(addr: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut made = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let batch: Vec<_> = (0..20u64)
                .map(|i| {
                    let n = made + i;
                    let source = Ipv4Addr::new(127, 3, (n / 250 % 250) as u8, (n % 250 + 1) as u8);
                    tokio::spawn(bad_connection(addr, source))
                })
                .collect();
            for task in batch {
                let _ = task.await;
            }
            made += 20;
        }
        made
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_nobody_reads_stops_neither_the_relay_nor_http() {
    let sink = NginxSink::start("app").await;
    // A pipe whose read end the test holds and never reads: once its 64 KiB are
    // full, every write(2) to it blocks.
    let (reader, writer) = std::io::pipe().unwrap();
    let prism = ChildPrism::start_with_stderr(
        "stalled-pipe",
        &format!(
            "[presets.twitch]\nurl = \"{}\"\n[relay]\nbackoff_initial_ms = 200\n\
             [log]\nbuffer_lines = 512\n{NO_RATE_LIMIT}",
            sink.url()
        ),
        "debug",
        writer.into(),
    )
    .await;
    http_answers(&prism).await;

    // Bad connections log lines (at debug, several each) until the pipe and the
    // writer's queue are full and prism drops lines.
    let stop = Arc::new(AtomicBool::new(false));
    let noise = keep_logging(prism.rtmp, Arc::clone(&stop));
    let deadline = tokio::time::Instant::now() + WAIT;
    while dropped(&prism, "backpressure").await == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "prism never dropped a line (pipe holds {} bytes)",
            pipe_pending(&reader)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stalled_at = dropped(&prism, "backpressure").await;
    assert!(
        pipe_pending(&reader) >= 32 * 1024,
        "the pipe is full: {} bytes wait in it",
        pipe_pending(&reader)
    );

    // Now a whole stream is relayed while the log stays stalled and the noise
    // goes on.
    let clip = clip(8);
    let publisher = publish(&clip, &prism.url("live/pipe?twitch=tw-pipe"));
    sink.wait_recording("tw-pipe", 20_000, WAIT).await;
    http_answers(&prism).await;
    let destination = only_destination(&prism).await.expect("the relayed stream");
    assert_eq!(destination["state"], "live", "{destination}");
    let (status, _) = finish(publisher).await;
    assert!(status.success(), "the publisher went on: {status}");
    assert!(sink.saw_clean_unpublish("tw-pipe").await);
    let frames = recording_framemd5(&sink.recording("tw-pipe"));
    assert_eq!(
        assert_source_from_keyframe(&clip, &frames),
        0,
        "the ingest got every packet"
    );
    http_answers(&prism).await;
    stop.store(true, Ordering::Relaxed);
    let made = noise.await.unwrap();
    let dropped_lines = dropped(&prism, "backpressure").await;
    eprintln!(
        "{made} bad connections; {dropped_lines} lines dropped ({stalled_at} when the log stalled)"
    );
    assert!(
        dropped_lines > stalled_at,
        "lines kept being dropped while the stream was relayed"
    );
    assert!(pipe_pending(&reader) >= 32 * 1024, "still stalled");
    // SIGTERM: a clean exit, without waiting for the pipe.
    prism.stop().await;
    drop(reader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stderr_stops_neither_prism_nor_its_relay_nor_a_reconnect() {
    let mut sink = NginxSink::start("app").await;
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    // Every write to /dev/full fails with ENOSPC, as on a full disk: prism used
    // to exit 101 at its first log line.
    let prism = ChildPrism::start_with_stderr(
        "dev-full",
        &format!(
            "[presets.twitch]\nurl = \"{}\"\n\
             [relay]\nbackoff_initial_ms = 200\nbackoff_max_secs = 2\n",
            sink.url()
        ),
        "info",
        full.into(),
    )
    .await;
    http_answers(&prism).await;
    assert!(
        dropped(&prism, "write_error").await > 0.0,
        "the start-up lines were lost, and counted"
    );

    let clip = clip(20);
    let publisher = publish(&clip, &prism.url("live/full?twitch=tw-full"));
    sink.wait_recording("tw-full", 20_000, WAIT).await;
    http_answers(&prism).await;

    // The ingest restarts mid-stream: the destination must reconnect (it used to
    // die in a failed log write while the API went on saying `live`).
    sink.kill();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    sink.restart().await;
    sink.wait_publishing("tw-full", WAIT).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let destination = only_destination(&prism).await;
        let reconnected = destination.as_ref().is_some_and(|d| {
            d["state"] == "live" && d["reconnects"].as_u64().is_some_and(|n| n >= 1)
        });
        if reconnected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the destination is live again after a reconnect: {destination:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, _) = finish(publisher).await;
    assert!(status.success(), "the publisher never noticed: {status}");
    assert!(sink.saw_clean_unpublish("tw-full").await);
    let frames = recording_framemd5(&sink.recording("tw-full"));
    assert!(
        assert_source_from_keyframe(&clip, &frames) > 0,
        "after the restart the ingest got every packet from a later keyframe on"
    );
    let errors = dropped(&prism, "write_error").await;
    eprintln!("{errors} log lines lost to write errors");
    prism.stop().await;
}

/// Connects from `source`, publishes `key` (name and query) with prism's own
/// client, and hangs up as soon as prism answers. Whether prism accepted it.
async fn publish_and_leave(addr: SocketAddr, source: Ipv4Addr, key: &str) -> Result<bool, String> {
    let (mut io, mut inbound) = common::wire::handshake_from(addr, Some(source.into())).await?;
    let mut session = ClientSession::after_handshake(
        ClientConfig::new(&format!("rtmp://{addr}/live"), key),
        std::time::Instant::now(),
    );
    loop {
        write_out(&mut io, session.out())
            .await
            .map_err(|e| e.to_string())?;
        if io.read_buf(&mut inbound).await.map_err(|e| e.to_string())? == 0 {
            return Err("closed before answering publish".to_owned());
        }
        loop {
            match session.poll(&mut inbound) {
                Ok(Some(ClientEvent::Publishing { .. })) => return Ok(true),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(ClientError::PublishRejected { .. }) => return Ok(false),
                Err(err) => return Err(err.to_string()),
            }
        }
    }
}

/// 1300 unknown parameters in a query of at most 4096 bytes (prism's bound):
/// two-letter names, the first with a value that must never be logged.
fn thirteen_hundred_unknown_parameters() -> String {
    let mut query = String::from("aa=flood-secret-value");
    for i in 1..1300u32 {
        let name = [b'a' + (i / 26 % 26) as u8, b'a' + (i % 26) as u8];
        query.push('&');
        query.push_str(std::str::from_utf8(&name).unwrap());
    }
    assert!(query.len() <= 4096);
    query
}

/// Everything prism writes to stderr, read as fast as it comes, with a count.
struct Drained {
    bytes: Arc<AtomicU64>,
    text: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Drained {
    fn start(mut reader: std::io::PipeReader) -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        let text = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (count, keep) = (Arc::clone(&bytes), Arc::clone(&text));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    return;
                }
                keep.lock().unwrap().extend_from_slice(&buf[..n]);
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        Self { bytes, text }
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_publishes_with_1300_unknown_parameters_stays_within_the_log_budget() {
    let (reader, writer) = std::io::pipe().unwrap();
    // The embedded defaults: the budget must hold as shipped.
    let prism = ChildPrism::start_with_stderr("flood", "", "info", writer.into()).await;
    let log = Drained::start(reader);

    let clip = clip(25);
    let player = play_framemd5(&prism.url("live/steady"));
    let publisher = publish(&clip, &prism.url("live/steady"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !prism
        .streams()
        .await
        .first()
        .is_some_and(|s| s["players"].as_u64() == Some(1) && !s["publisher"].is_null())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the honest stream never went live with its player"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let query = Arc::new(thirteen_hundred_unknown_parameters());
    let before = log.bytes();
    let started = tokio::time::Instant::now();
    let end = started + FLOOD;
    // From one address, and from a thousand.
    let flooders = (0..16u32).map(|task| {
        let (addr, query) = (prism.rtmp, Arc::clone(&query));
        tokio::spawn(async move {
            let (mut accepted, mut refused, mut failed) = (0u32, 0u32, Vec::new());
            let mut n = 0u32;
            while tokio::time::Instant::now() < end {
                let source = if task < 4 {
                    Ipv4Addr::new(127, 1, 0, 1)
                } else {
                    let host = n * 12 + task;
                    Ipv4Addr::new(127, 1, 1 + (host / 250 % 4) as u8, (host % 250 + 1) as u8)
                };
                let key = format!("flood-{task}-{n}?{query}");
                n += 1;
                match tokio::time::timeout(
                    Duration::from_secs(10),
                    publish_and_leave(addr, source, &key),
                )
                .await
                {
                    Ok(Ok(true)) => accepted += 1,
                    Ok(Ok(false)) => refused += 1,
                    Ok(Err(reason)) => failed.push(reason),
                    Err(_) => failed.push("no answer within 10 s".to_owned()),
                }
            }
            (accepted, refused, failed)
        })
    });
    let outcomes = futures_join(flooders.collect()).await;
    // Lines caused by the flood but written a little later count too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown = log.bytes() - before;
    let (accepted, refused): (u32, u32) =
        outcomes.iter().fold((0, 0), |(a, r), o| (a + o.0, r + o.1));
    let failures: Vec<&String> = outcomes.iter().flat_map(|o| &o.2).collect();
    eprintln!(
        "flood: {accepted} publishes accepted, {refused} refused, {} failed in {:?}; \
         the log grew by {grown} bytes",
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{:?}",
        &failures[..failures.len().min(5)]
    );
    assert!(accepted > 100, "the flood got going: {accepted} publishes");
    assert!(
        grown <= FLOOD_LOG_BUDGET,
        "a {FLOOD:?} flood grew the log by {grown} bytes"
    );
    http_answers(&prism).await;
    assert!(dropped(&prism, "rate_limit").await > 0.0, "the limit held");

    // What the log says: one summarised line per publish (until the limit),
    // never a value, and a summary of what the limit held back.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !log.text().contains("log lines not written in the last") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no summary of the suppressed lines"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = log.text();
    // The limits as shipped: an address gets 20 lines, then one a second; all
    // addresses together 500, then 100 a second (a second of margin each).
    let secs = started.elapsed().as_secs() as usize + 2;
    let lines_from = |prefix: &str| text.lines().filter(|l| l.contains(prefix)).count();
    let (one, all) = (lines_from("{peer=127.1.0.1:"), lines_from("{peer=127.1."));
    eprintln!("in {secs} s: {one} lines from the one address, {all} from all of the flood's");
    assert!(one >= 1, "the single address's first lines got through");
    assert!(one <= 20 + secs, "one address: {one} lines in {secs} s");
    assert!(
        all <= 500 + 100 * secs,
        "all addresses: {all} lines in {secs} s"
    );
    assert!(
        text.contains(
            "destinations: ignored 1300 unknown query parameters (first: `aa`, `ab`, `ac`)"
        ),
        "the publishes' problems were logged, summarised"
    );
    assert!(!text.contains("flood-secret-value"), "no value is logged");
    assert!(
        !text.contains("unknown parameter `"),
        "no line per parameter"
    );

    let (status, _) = finish(publisher).await;
    assert!(status.success(), "the honest publisher went on: {status}");
    let (status, out) = finish(player).await;
    assert!(status.success());
    assert_eq!(
        assert_source_from_keyframe(&clip, &parse_framemd5(&out)),
        0,
        "its player lost nothing"
    );
    prism.stop().await;
}

/// Awaits every task, in order.
async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("a flood task"));
    }
    out
}
