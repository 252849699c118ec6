//! The many-streams mode (`--many 1,10,50`): K publishers, each relayed to D
//! destinations (default 4), for prism on one thread, prism with one worker
//! per core, and nginx-rtmp (one worker, `push` lines). The publishers and
//! sinks are the light generators of [`crate::load`], on a runtime of this
//! process, so the relay's CPU is measured apart from theirs: relay CPU (from
//! /proc, the relay's processes only) per delivered Mbit (media bytes the sinks
//! received) over the window, and the relay's peak RSS.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::BenchError;
use crate::load::{self, SinkCounters};
use crate::procs;
use crate::setup::{self, RELAY_APP};

/// The relays of the many-streams mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ManyRelay {
    /// prism, `[runtime] worker_threads = 1` (the default).
    PrismOneThread,
    /// prism, `[runtime] worker_threads = 0` (one connection worker per core).
    PrismPerCore,
    /// nginx-rtmp, one worker.
    Nginx,
}

impl ManyRelay {
    fn name(self) -> &'static str {
        match self {
            ManyRelay::PrismOneThread => "prism (1 thread)",
            ManyRelay::PrismPerCore => "prism (a worker per core)",
            ManyRelay::Nginx => "nginx-rtmp",
        }
    }
}

/// What every run shares.
pub struct ManyPlan {
    /// The prism binary.
    pub prism: PathBuf,
    /// The ffmpeg binary (makes the clip).
    pub ffmpeg: String,
    /// Where run directories and the clip go.
    pub out_dir: PathBuf,
    /// Destinations per stream.
    pub destinations: usize,
    /// From the last sink's publish to the window.
    pub warmup: Duration,
    /// The window.
    pub duration: Duration,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ManyRecord {
    /// The relay.
    pub relay: ManyRelay,
    /// Publishers.
    pub k: usize,
    /// Sink connections publishing when the window ended (K x D expected).
    pub sinks: usize,
    /// Media delivered to the sinks in the window, Mbit/s.
    pub delivered_mbit_per_s: f64,
    /// The relay's CPU in the window, share of one core.
    pub relay_cpu: f64,
    /// The relay's CPU per delivered Mbit, ms.
    pub cpu_ms_per_mbit: f64,
    /// The relay's peak RSS, KiB.
    pub peak_rss_kib: u64,
}

/// A 1 Mbit/s 640x360 30 fps clip (H.264 with a keyframe every 2 s, AAC),
/// generated once: many streams of it stay within what 2 cores can deliver.
fn ensure_light_clip(dir: &Path, ffmpeg: &str) -> Result<PathBuf, BenchError> {
    let path = dir.join("clip-360p30-1mbps-60s.flv");
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
    let status = Command::new(ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "60", "-c:v", "libx264", "-preset", "veryfast"])
        .args([
            "-b:v",
            "900k",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
        ])
        .args([
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-f", "flv",
        ])
        .arg(&path)
        .status()
        .map_err(|e| BenchError::Setup(format!("{ffmpeg}: {e}")))?;
    if !status.success() {
        return Err(BenchError::Setup(format!(
            "{ffmpeg} failed to make the clip"
        )));
    }
    Ok(path)
}

/// Runs every relay at every K, alternating the relay order, and returns the
/// records and a markdown report.
pub fn run(
    plan: &ManyPlan,
    ks: &[usize],
    relays: &[ManyRelay],
) -> Result<(Vec<ManyRecord>, String), BenchError> {
    let clip = ensure_light_clip(&plan.out_dir, &plan.ffmpeg)?;
    let tags = load::read_clip(&clip).map_err(BenchError::Setup)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let mut records = Vec::new();
    for (i, &k) in ks.iter().enumerate() {
        let mut order = relays.to_vec();
        if i % 2 == 1 {
            order.reverse();
        }
        for relay in order {
            eprint!("[many] {} K={k}: ", relay.name());
            match runtime.block_on(run_once(plan, relay, k, &tags)) {
                Ok(record) => {
                    eprintln!(
                        "{:.1} Mbit/s to {} sinks, relay {:.1} % of a core, {:.3} ms/Mbit",
                        record.delivered_mbit_per_s,
                        record.sinks,
                        record.relay_cpu * 100.0,
                        record.cpu_ms_per_mbit
                    );
                    records.push(record);
                }
                Err(e) => eprintln!("FAILED: {e}"),
            }
        }
    }
    let report = markdown(&records, plan.destinations);
    Ok((records, report))
}

async fn run_once(
    plan: &ManyPlan,
    relay: ManyRelay,
    k: usize,
    tags: &Arc<Vec<load::Tag>>,
) -> Result<ManyRecord, BenchError> {
    let ports = procs::pick_ports(2)?;
    let (relay_port, sink_port) = (ports[0], ports[1]);
    let dir =
        plan.out_dir
            .join("runs")
            .join(format!("many-{}-k{k}-{}", relay_port, std::process::id()));
    let stop = CancellationToken::new();
    let counters = Arc::new(SinkCounters::default());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", sink_port))
        .await
        .map_err(|e| BenchError::Setup(format!("sink port {sink_port}: {e}")))?;
    tokio::spawn(load::run_sinks(
        listener,
        Arc::clone(&counters),
        stop.clone(),
    ));
    let (pids, query, stopper): (Vec<u32>, String, Box<dyn FnOnce()>) = match relay {
        ManyRelay::Nginx => {
            let nginx = setup::Nginx::start_relay(&dir, relay_port, sink_port, plan.destinations)?;
            (nginx.pids(), String::new(), Box::new(move || nginx.stop()))
        }
        ManyRelay::PrismOneThread | ManyRelay::PrismPerCore => {
            let workers = if relay == ManyRelay::PrismOneThread {
                "1"
            } else {
                "0"
            };
            // Every publisher comes from 127.0.0.1: lift the per-address limits
            // a public port keeps (20 publishers, 100 connections).
            let env = [
                ("PRISM_RUNTIME__WORKER_THREADS", workers),
                ("PRISM_RTMP__MAX_PUBLISHERS_PER_IP", "100000"),
                ("PRISM_RTMP__MAX_CONNECTIONS_PER_IP", "100000"),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned()));
            let (prism, query) = setup::Prism::start(
                &plan.prism,
                &env,
                &dir,
                relay_port,
                sink_port,
                plan.destinations,
            )?;
            (
                vec![prism.pid()],
                format!("?{query}"),
                Box::new(move || prism.stop()),
            )
        }
    };
    let started = Arc::new(AtomicUsize::new(0));
    let addr: SocketAddr = ([127, 0, 0, 1], relay_port).into();
    for i in 0..k {
        tokio::spawn(load::publish(
            addr,
            RELAY_APP.to_owned(),
            format!("s{i}{query}"),
            Arc::clone(tags),
            Arc::clone(&started),
            stop.clone(),
        ));
    }
    let expected = k * plan.destinations;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while counters.publishing.load(Ordering::Relaxed) < expected
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(plan.warmup).await;
    let (cpu0, bytes0) = (
        procs::sample_group(&pids),
        counters.media_bytes.load(Ordering::Relaxed),
    );
    let t0 = std::time::Instant::now();
    tokio::time::sleep(plan.duration).await;
    let (cpu1, bytes1) = (
        procs::sample_group(&pids),
        counters.media_bytes.load(Ordering::Relaxed),
    );
    let secs = t0.elapsed().as_secs_f64();
    let sinks = counters.publishing.load(Ordering::Relaxed);
    stop.cancel();
    stopper();
    let _ = std::fs::remove_dir_all(&dir);
    if started.load(Ordering::Relaxed) < k || sinks < expected {
        return Err(BenchError::Setup(format!(
            "{} of {k} publishers and {sinks} of {expected} sinks were live",
            started.load(Ordering::Relaxed)
        )));
    }
    let mbit = (bytes1 - bytes0) as f64 * 8.0 / 1e6;
    let cpu_ms = (cpu1.cpu_ns - cpu0.cpu_ns) as f64 / 1e6;
    Ok(ManyRecord {
        relay,
        k,
        sinks,
        delivered_mbit_per_s: mbit / secs,
        relay_cpu: cpu_ms / 1000.0 / secs,
        cpu_ms_per_mbit: cpu_ms / mbit,
        peak_rss_kib: cpu1.peak_rss_kib,
    })
}

fn markdown(records: &[ManyRecord], destinations: usize) -> String {
    let mut out = format!(
        "Many streams: K publishers x {destinations} destinations, 1 Mbit/s each\n\n\
         | relay | K | sinks | delivered Mbit/s | relay CPU (% of a core) | ms per Mbit | vs K = 1 | peak RSS MiB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for r in records {
        let base = records
            .iter()
            .find(|b| b.relay == r.relay && b.k == 1)
            .map(|b| r.cpu_ms_per_mbit / b.cpu_ms_per_mbit);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.1} | {:.3} | {} | {:.1} |",
            r.relay.name(),
            r.k,
            r.sinks,
            r.delivered_mbit_per_s,
            r.relay_cpu * 100.0,
            r.cpu_ms_per_mbit,
            base.map_or("–".to_owned(), |b| format!("{b:.2}")),
            r.peak_rss_kib as f64 / 1024.0
        );
    }
    out
}
