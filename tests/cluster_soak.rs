//! A bounded soak of the cluster: three nodes behind HAProxy with a Redis
//! registry, 30 encoders that reconnect like OBS (a second after their connection
//! ends), each stream pushed to an nginx-rtmp ingest that records it; for five
//! minutes the nodes are drained and restarted one at a time (a rolling restart:
//! a drain that outlasts `drain_timeout_secs` cuts its streams, whose encoders
//! reconnect through HAProxy to another node). Every stream's recordings must
//! cover the soak but for the reconnect gaps, each gap short; the gaps are
//! reported (run with `--no-capture` to see the table).

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::haproxy::{Backend, Haproxy};
use common::redis::RedisServer;
use common::sinks::{NginxSink, pick_port};
use common::*;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "soak-admin-token";
const STREAMS: usize = 30;
const SOAK: Duration = Duration::from_secs(300);
const DRAIN_TIMEOUT_SECS: u64 = 15;
/// The longest a stream may be off its destination when it moves.
const MAX_GAP_SECS: f64 = 10.0;

fn node_config(redis: &RedisServer, sink: &NginxSink, i: usize) -> String {
    format!(
        "[rtmp]\nproxy_protocol = true\n[http]\ntoken = \"{TOKEN}\"\n\
         [cluster]\nredis_url = \"{}\"\nnode_id = \"node{i}\"\nlease_secs = 3\n\
         drain_timeout_secs = {DRAIN_TIMEOUT_SECS}\n\
         [presets.youtube]\nurl = \"{}\"\n",
        redis.url(),
        sink.url()
    )
}

/// An encoder that publishes `clip` in a loop, in real time, and reconnects a
/// second after its connection ends, until `stop`; counts its reconnects.
async fn encoder(
    url: String,
    clip: std::path::PathBuf,
    stop: CancellationToken,
    reconnects: Arc<Mutex<usize>>,
) {
    loop {
        let clip = clip.to_str().unwrap();
        let args = [
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            clip,
        ];
        let mut args = args.to_vec();
        args.extend(["-c", "copy", "-f", "flv", &url]);
        let mut child = spawn("ffmpeg", &args);
        tokio::select! {
            _ = child.wait() => {}
            () = stop.cancelled() => {
                let _ = child.kill().await;
                return;
            }
        }
        *reconnects.lock().unwrap() += 1;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One stream's recordings: their start (the second nginx opened each) and length.
fn recorded(files: &[std::path::PathBuf]) -> Vec<(f64, f64)> {
    files
        .iter()
        .filter_map(|path| {
            let started: f64 = start_second(path)?;
            let dts: Vec<i64> = recording_dts(path)
                .into_iter()
                .filter(|(stream, _)| *stream == 0)
                .map(|(_, dts)| dts)
                .collect();
            let length = (dts.iter().max()? - dts.iter().min()?) as f64 / 1000.0;
            Some((started, length))
        })
        .collect()
}

/// `<stream>-<unix seconds>-run<n>.flv`: the seconds.
fn start_second(path: &Path) -> Option<f64> {
    let name = path.file_stem()?.to_str()?;
    let (rest, _run) = name.rsplit_once("-run")?;
    rest.rsplit_once('-')?.1.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_survive_a_rolling_restart_of_every_node() {
    let redis = RedisServer::start().await;
    let sink = NginxSink::start("live").await;
    let mut addresses = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let ip = Ipv4Addr::new(127, 0, 0, 2 + i as u8);
        let rtmp = SocketAddr::from((ip, pick_port()));
        let http = SocketAddr::from((ip, pick_port()));
        addresses.push((rtmp, http));
        let config = node_config(&redis, &sink, i);
        nodes.push(Some(
            ChildPrism::start_at(&format!("soak-{i}"), &config, &[], rtmp, http).await,
        ));
    }
    let backends: Vec<Backend> = addresses
        .iter()
        .map(|&(rtmp, http)| Backend {
            rtmp,
            health: Some(http),
        })
        .collect();
    let haproxy = Haproxy::start(&backends, None).await;

    let clip = clip(10);
    let stop = CancellationToken::new();
    let reconnects = Arc::new(Mutex::new(0usize));
    let mut encoders = Vec::new();
    for s in 0..STREAMS {
        let url = haproxy.url(&format!("live/soak-key-{s}?youtube=soak-out-{s}"));
        encoders.push(tokio::spawn(encoder(
            url,
            clip.clone(),
            stop.clone(),
            Arc::clone(&reconnects),
        )));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in 0..STREAMS {
        sink.wait_publishing(&format!("soak-out-{s}"), Duration::from_secs(30))
            .await;
    }

    // The rolling restart, node after node, until the soak's time is up.
    let started = Instant::now();
    let mut drains = 0;
    'soak: loop {
        for i in 0..3 {
            if started.elapsed() >= SOAK {
                break 'soak;
            }
            let mut node = nodes[i].take().unwrap();
            assert_eq!(node.drain(Some(TOKEN)).await, 202);
            // A drained node exits within its drain timeout.
            let status = node
                .exited(Duration::from_secs(DRAIN_TIMEOUT_SECS + 20))
                .await;
            assert!(
                status.success(),
                "node{i} exits 0 after its drain: {status}"
            );
            drains += 1;
            let (rtmp, http) = addresses[i];
            let config = node_config(&redis, &sink, i);
            nodes[i] =
                Some(ChildPrism::start_at(&format!("soak-{i}"), &config, &[], rtmp, http).await);
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
    }
    stop.cancel();
    for encoder in encoders {
        encoder.await.unwrap();
    }
    for node in nodes.into_iter().flatten() {
        node.stop().await;
    }
    haproxy.stop().await;
    redis.stop().await;

    // Every stream's recordings cover the soak but for short reconnect gaps.
    let mut all_gaps = Vec::new();
    println!("stream  recordings  recorded_s  coverage  gaps_s");
    for s in 0..STREAMS {
        let parts = recorded(&sink.recordings(&format!("soak-out-{s}")));
        assert!(!parts.is_empty(), "stream {s} was recorded");
        let first = parts[0].0;
        let (last_start, last_length) = parts[parts.len() - 1];
        let span = last_start + last_length - first;
        let total: f64 = parts.iter().map(|(_, length)| length).sum();
        let gaps: Vec<f64> = parts
            .windows(2)
            .map(|pair| (pair[1].0 - (pair[0].0 + pair[0].1)).max(0.0))
            .collect();
        let coverage = total / span;
        println!(
            "{s:>6}  {:>10}  {total:>10.1}  {:>7.1}%  {gaps:.1?}",
            parts.len(),
            coverage * 100.0
        );
        assert!(
            coverage >= 0.9,
            "stream {s} recorded {coverage:.3} of {span:.0} s"
        );
        for gap in &gaps {
            assert!(*gap <= MAX_GAP_SECS, "stream {s}: a gap of {gap:.1} s");
        }
        all_gaps.extend(gaps);
    }
    let reconnects = *reconnects.lock().unwrap();
    let longest = all_gaps.iter().copied().fold(0.0, f64::max);
    let mean = all_gaps.iter().sum::<f64>() / all_gaps.len().max(1) as f64;
    println!(
        "{drains} drains, {reconnects} encoder reconnects, {} recording gaps: mean {mean:.1} s, longest {longest:.1} s",
        all_gaps.len()
    );
    assert!(drains >= 3, "every node was drained and restarted");
    assert!(reconnects > 0, "drains moved streams");
}
