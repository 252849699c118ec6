//! Players: how prism lets them wait for a stream, and how it says goodbye.
//!
//! A player may connect before its publisher, but players waiting for names nobody
//! publishes must never keep a publisher out (they are bounded apart, the oldest
//! gives way, and each waits at most `rtmp.play_wait_secs`); and a player told the
//! stream ended may still say goodbye without being answered with a reset.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::raw_client::{RawClient, Received};
use common::*;
use prism::rtmp::amf0::Amf0Value;
use prism::rtmp::message::{Command, Message};
use tokio_util::sync::CancellationToken;

/// The `code` of an onStatus message, if `received` is one.
fn status_code(received: &Received) -> Option<String> {
    match &received.message {
        Message::Command(command) if command.name == "onStatus" => command
            .args
            .first()
            .and_then(|info| info.get("code"))
            .and_then(Amf0Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

/// connect, createStream and play `name` on stream 1, in one go, as players do.
async fn play(player: &mut RawClient, addr: std::net::SocketAddr, name: &str) {
    let connect = Command::new(
        "connect",
        1.0,
        Amf0Value::Object(vec![
            ("app".into(), "live".into()),
            (
                "tcUrl".into(),
                format!("rtmp://{addr}/live").as_str().into(),
            ),
        ]),
        vec![],
    );
    player.send(3, 0, 0, &Message::Command(connect)).await;
    let create = Command::new("createStream", 2.0, Amf0Value::Null, vec![]);
    player.send(3, 0, 0, &Message::Command(create)).await;
    let play = Command::new("play", 3.0, Amf0Value::Null, vec![name.into()]);
    player.send(8, 1, 0, &Message::Command(play)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_told_the_stream_ended_says_goodbye_without_a_reset() {
    let prism = Prism::start().await;
    let clip = clip(3);
    let mut player = RawClient::connect(prism.addr).await;
    play(&mut player, prism.addr, "goodbye").await;
    prism.wait_subscribers("live", "goodbye", 1).await;
    let publisher = publish(&clip, &prism.url("live/goodbye"));
    let got = player
        .recv_until(|r| status_code(r).as_deref() == Some("NetStream.Play.UnpublishNotify"))
        .await;
    assert!(
        got.iter().any(|r| matches!(r.message, Message::Video(_))),
        "the stream was played"
    );
    // A librtmp player answers a moment later: deleteStream as it ends the play,
    // then its acknowledgement of the bytes received. Were prism's socket closed,
    // the first would be answered with a reset and the second would fail.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delete = Command::new("deleteStream", 4.0, Amf0Value::Null, vec![1.0.into()]);
    player
        .try_send(3, 0, &Message::Command(delete))
        .await
        .expect("prism still takes the player's deleteStream");
    tokio::time::sleep(Duration::from_millis(300)).await;
    player
        .try_send(2, 0, &Message::Acknowledgement(1000))
        .await
        .expect("prism still takes the player's acknowledgement");
    assert!(
        player.read_to_close().await.is_ok(),
        "prism closes in order (FIN), not with a reset"
    );
    let (status, _) = finish(publisher).await;
    assert!(status.success());
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmpdump_ends_once_when_the_stream_ends() {
    let prism = Prism::start().await;
    let clip = clip(3);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("players-rtmpdump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let recording = dir.join("once.flv");
    let url = prism.url("live/once");
    let dump = spawn(
        "rtmpdump",
        &[
            "-q",
            "--live",
            "-r",
            &url,
            "-o",
            recording.to_str().unwrap(),
        ],
    );
    prism.wait_subscribers("live", "once", 1).await;
    let publisher = publish(&clip, &url);
    let (status, _) = finish(publisher).await;
    assert!(status.success());
    let (status, _) = finish(dump).await;
    assert!(
        matches!(status.code(), Some(0) | Some(2)),
        "rtmpdump: {status}"
    );
    let frames = parse_framemd5(&String::from_utf8_lossy(
        &std::process::Command::new(require("ffmpeg"))
            .args(["-hide_banner", "-loglevel", "error", "-i"])
            .arg(&recording)
            .args([
                "-map", "0:v", "-map", "0:a", "-c", "copy", "-f", "framemd5", "-",
            ])
            .output()
            .unwrap()
            .stdout,
    ));
    assert_eq!(assert_source_from_keyframe(&clip, &frames), 0);
    // It did not come back: one play of that name in the log, no more.
    let shown = prism::mask::Masked("once").to_string();
    let plays = captured_logs()
        .lines()
        .filter(|l| l.contains(&shown) && l.contains("playing"))
        .count();
    assert_eq!(plays, 1, "rtmpdump played once and did not reconnect");
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_of_a_stream_that_never_starts_is_told_so_after_the_play_wait() {
    let prism = Prism::start_with(|c| c.rtmp.play_wait_secs = 1).await;
    let mut player = RawClient::connect(prism.addr).await;
    let started = tokio::time::Instant::now();
    play(&mut player, prism.addr, "never").await;
    player
        .recv_until(|r| status_code(r).as_deref() == Some("NetStream.Play.StreamNotFound"))
        .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed by the play wait, not at once: {waited:?}"
    );
    assert!(player.read_to_close().await.is_ok(), "an orderly close");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !prism.hub().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the name is forgotten"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(captured_logs().contains("did not go live within"));
    prism.stop().await;
}

/// A gauge or counter without labels from prism's /metrics.
async fn metric(prism: &Prism, name: &str) -> f64 {
    let http = prism.app.as_ref().unwrap().http_addr();
    let text = http_client()
        .get(format!("http://{http}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

/// Squats from `source` until `stop`: connects, plays `name` (which nobody
/// publishes) and waits; whenever prism closes it, comes back a second later.
/// Returns how many times prism closed it.
async fn squat(
    addr: std::net::SocketAddr,
    source: IpAddr,
    name: String,
    connected: Arc<AtomicU64>,
    stop: CancellationToken,
) -> u64 {
    let mut closed = 0;
    while !stop.is_cancelled() {
        if let Some(mut client) = RawClient::try_connect_from(addr, source).await {
            play(&mut client, addr, &name).await;
            connected.fetch_add(1, Ordering::Relaxed);
            if client.wait_closed(stop.cancelled()).await {
                closed += 1;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => {}
        }
    }
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_players_squatting_on_names_nobody_publishes_cannot_keep_a_publisher_out() {
    // The shipped limits: 1000 connections, 100 per address, 500 waiting players.
    let prism = Prism::start().await;
    let max_waiting = 500.0;
    let stop = CancellationToken::new();
    let connected = Arc::new(AtomicU64::new(0));
    let mut squatters = tokio::task::JoinSet::new();
    for i in 0..1000u32 {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 2, (i / 100 + 1) as u8));
        squatters.spawn(squat(
            prism.addr,
            source,
            format!("nobody-{i}"),
            Arc::clone(&connected),
            stop.clone(),
        ));
    }
    // Every squatter got in once; the waiting list is full.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while connected.load(Ordering::Relaxed) < 1000
        || metric(&prism, "prism_waiting_players").await < max_waiting
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "squatters connected: {}",
            connected.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A publisher from another address goes live at once, and can be played.
    let clip = clip(8);
    let url = prism.url("live/honest");
    let started = tokio::time::Instant::now();
    let publisher = publish(&clip, &url);
    prism.wait_live("live", "honest").await;
    let live_after = started.elapsed();
    let mut player = RawClient::connect(prism.addr).await;
    play(&mut player, prism.addr, "honest").await;
    player
        .recv_until(|r| matches!(r.message, Message::Video(_)))
        .await;
    let played_after = started.elapsed();
    eprintln!("with 1000 squatters: live after {live_after:?}, played after {played_after:?}");
    assert!(
        played_after <= Duration::from_secs(2),
        "live and played within 2 s: {live_after:?}, {played_after:?}"
    );
    let watcher = play_framemd5(&url);
    prism.wait_subscribers("live", "honest", 2).await;

    // The squatters kept at it while the stream ran: never more than the waiting
    // limit, and the connection slots never all taken.
    let mut peak_waiting = 0f64;
    let mut peak_connections = 0f64;
    while !publisher_done(&prism) {
        peak_waiting = peak_waiting.max(metric(&prism, "prism_waiting_players").await);
        peak_connections = peak_connections.max(metric(&prism, "prism_connections").await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = finish(publisher).await;
    assert!(
        status.success(),
        "the publisher was never held back: {status}"
    );
    let (status, out) = finish(watcher).await;
    assert!(status.success());
    assert_source_from_keyframe(&clip, &parse_framemd5(&out));
    drop(player);

    stop.cancel();
    let evictions: u64 = squatters.join_all().await.into_iter().sum();
    let evicted = metric(&prism, "prism_waiting_players_evicted_total").await;
    eprintln!(
        "peak waiting {peak_waiting}, peak connections {peak_connections}, \
         squatters closed {evictions} times, evicted {evicted}"
    );
    assert!(
        peak_waiting <= max_waiting,
        "waiting players bounded: {peak_waiting}"
    );
    assert!(
        peak_connections < 1000.0,
        "slots left free: {peak_connections}"
    );
    assert!(
        evicted >= 500.0,
        "the oldest squatters made room: {evicted}"
    );
    assert!(evictions > 0);
    prism.stop().await;
}

/// Whether the honest stream has ended (its publisher finished the clip).
fn publisher_done(prism: &Prism) -> bool {
    !prism.hub().is_live("live", "honest")
}
