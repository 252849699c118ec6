//! One run: one relay, N sinks, one publish, one capture, its figures.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::analysis::{self, Figures, Window};
use crate::capture::{self, CaptureStats};
use crate::error::BenchError;
use crate::procs::{self, GroupSample, MachineSample};
use crate::proxy::Proxy;
use crate::setup::{self, Nginx, Prism, Publisher, Tcpdump, TcpdumpStats};

/// A relay under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Relay {
    /// prism (`target/release/prism serve`).
    Prism,
    /// nginx-rtmp with one `push` per destination.
    Nginx,
    /// A byte proxy on tokio: the floor of any relay on tokio (`proxy.rs`).
    /// Measured without the capture only (what reaches the sinks is the
    /// publisher's stream under its own name, which the wire analysis does not
    /// look for).
    Proxy,
}

impl Relay {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Relay::Prism => "prism",
            Relay::Nginx => "nginx-rtmp",
            Relay::Proxy => "tokio proxy",
        }
    }
}

/// What every run of a benchmark shares.
pub struct Plan {
    /// The prism binary.
    pub prism: PathBuf,
    /// Extra environment for prism.
    pub prism_env: Vec<(String, String)>,
    /// The ffmpeg binary (publisher).
    pub ffmpeg: String,
    /// The source clip.
    pub clip: PathBuf,
    /// Where run directories go.
    pub runs_dir: PathBuf,
    /// From the publisher's start to the window's start.
    pub warmup: Duration,
    /// The measurement window.
    pub duration: Duration,
    /// Capture time after the window, for frames still in flight.
    pub tail: Duration,
    /// nginx workers of the sinks.
    pub sink_workers: usize,
    /// tcpdump's kernel buffer, KiB.
    pub capture_buffer_kib: u32,
    /// Keep the pcap files.
    pub keep: bool,
}

/// CPU use over the window, as a share of one core.
#[derive(Debug, Default, Serialize)]
pub struct CpuShares {
    /// The relay's processes.
    pub relay: f64,
    /// The sink nginx's processes.
    pub sinks: f64,
    /// The ffmpeg publisher.
    pub publisher: f64,
    /// tcpdump.
    pub tcpdump: f64,
    /// The kernel's softirq threads (deferred network work, much of it the
    /// loopback traffic of the benchmark itself at high N).
    pub softirq: f64,
    /// The whole machine (all cores summed, so up to nproc).
    pub machine: f64,
    /// The machine minus the five above: other programs sharing it.
    pub others: f64,
}

/// One run's record (written raw to the JSON file).
#[derive(Debug, Serialize)]
pub struct RunRecord {
    /// The relay.
    pub relay: Relay,
    /// Destinations.
    pub n: usize,
    /// Repeat index (0-based).
    pub repeat: usize,
    /// Position in the repeat's relay order (0 = ran first).
    pub slot: usize,
    /// Whether this run had the capture (wire figures) or not (CPU and memory:
    /// the capture's copy of every packet is charged to the sending process, so
    /// it would inflate the relay's CPU).
    pub captured: bool,
    /// Start, seconds since the epoch.
    pub started_unix: u64,
    /// The run's directory (configs, logs; the pcap if kept).
    pub dir: PathBuf,
    /// Relay and sink ports.
    pub relay_port: u16,
    /// Sink port.
    pub sink_port: u16,
    /// Whether the figures are trustworthy: no error, nothing dropped, no problem.
    pub ok: bool,
    /// What went wrong.
    pub error: Option<String>,
    /// The measurement window.
    pub window: Option<Window>,
    /// The relay's processes at the window's start and end.
    pub relay_start: GroupSample,
    /// At the end (peak RSS is read here).
    pub relay_end: GroupSample,
    /// CPU time of the relay inside the window, ms.
    pub relay_cpu_ms: f64,
    /// The same from /proc/PID/stat ticks (10 ms resolution), a cross-check.
    pub relay_cpu_ms_from_stat: f64,
    /// The kernel's share of the relay's CPU time inside the window (system over
    /// user + system ticks of /proc/PID/stat): the part no user-space change removes.
    pub relay_kernel_share: Option<f64>,
    /// Bytes the sinks' sockets received inside the window (TCP payload: RTMP
    /// chunks, almost all of it media), as megabits.
    pub delivered_wire_mbit: f64,
    /// Sink sockets counted at the window's end.
    pub sink_sockets: usize,
    /// Media payload share of `delivered_wire_mbit` (captured runs): how close
    /// the kernel's count is to the capture's media count.
    pub media_share_of_wire: Option<f64>,
    /// Relay CPU ms per delivered megabit (`delivered_wire_mbit`).
    pub cpu_ms_per_mbit: Option<f64>,
    /// CPU ms of the whole data path (publisher, relay, sinks and the kernel's
    /// softirq threads) per delivered megabit. On loopback the kernel charges a
    /// TCP segment's receive work to whichever side transmits it, and a sender
    /// that uses Nagle has part of its sends transmitted later from its peer's
    /// ACK, in the peer's context; this sum does not move with that accounting.
    pub path_cpu_ms_per_mbit: Option<f64>,
    /// Peak RSS of the relay (sum of VmHWM over its processes), KiB.
    pub peak_rss_kib: u64,
    /// Pss of the relay at the window's end, KiB.
    pub pss_kib: u64,
    /// CPU shares inside the window.
    pub cpu: CpuShares,
    /// tcpdump's own counts.
    pub tcpdump: Option<TcpdumpStats>,
    /// Packet-level facts of the pcap.
    pub capture: Option<CaptureStats>,
    /// Bytes of the pcap file.
    pub pcap_bytes: u64,
    /// Wall time of decoding the capture, s.
    pub analysis_secs: f64,
    /// The measured figures.
    pub figures: Option<Figures>,
}

struct Samples {
    at_ns: u64,
    sink_bytes: (u64, usize),
    relay: GroupSample,
    sinks: GroupSample,
    publisher: GroupSample,
    tcpdump: GroupSample,
    softirq: GroupSample,
    machine: MachineSample,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

enum Running {
    Prism(Prism),
    Nginx(Nginx),
    Proxy(Proxy),
}

impl Running {
    fn pids(&self) -> Vec<u32> {
        match self {
            Running::Prism(p) => vec![p.pid()],
            Running::Nginx(n) => n.pids(),
            Running::Proxy(p) => vec![p.pid()],
        }
    }

    fn alive(&mut self) -> bool {
        match self {
            Running::Prism(p) => p.alive(),
            Running::Nginx(n) => n.alive(),
            Running::Proxy(p) => p.alive(),
        }
    }

    fn stop(self) {
        match self {
            Running::Prism(p) => p.stop(),
            Running::Nginx(n) => n.stop(),
            Running::Proxy(p) => p.stop(),
        }
    }
}

/// Runs `relay` with `n` destinations once, with or without the capture. Never
/// panics on a failed run: the record says what failed.
pub fn run_once(
    plan: &Plan,
    relay: Relay,
    n: usize,
    repeat: usize,
    slot: usize,
    captured: bool,
) -> RunRecord {
    let started_unix = now_ns() / 1_000_000_000;
    let dir = plan.runs_dir.join(format!(
        "{started_unix}-{}-n{n}-r{repeat}-{}",
        relay.name(),
        if captured { "wire" } else { "cpu" }
    ));
    let mut record = RunRecord {
        relay,
        n,
        repeat,
        slot,
        captured,
        started_unix,
        dir: dir.clone(),
        relay_port: 0,
        sink_port: 0,
        ok: false,
        error: None,
        window: None,
        relay_start: GroupSample::default(),
        relay_end: GroupSample::default(),
        relay_cpu_ms: 0.0,
        relay_cpu_ms_from_stat: 0.0,
        relay_kernel_share: None,
        delivered_wire_mbit: 0.0,
        sink_sockets: 0,
        media_share_of_wire: None,
        cpu_ms_per_mbit: None,
        path_cpu_ms_per_mbit: None,
        peak_rss_kib: 0,
        pss_kib: 0,
        cpu: CpuShares::default(),
        tcpdump: None,
        capture: None,
        pcap_bytes: 0,
        analysis_secs: 0.0,
        figures: None,
    };
    if let Err(e) = execute(plan, &mut record) {
        record.error = Some(e.to_string());
    }
    let problems = record
        .figures
        .as_ref()
        .map_or(0, |figures| figures.problems.len());
    record.ok = record.error.is_none()
        && (record.figures.is_some() || !captured)
        && problems == 0
        && record.delivered_wire_mbit > 0.0;
    record
}

fn execute(plan: &Plan, record: &mut RunRecord) -> Result<(), BenchError> {
    let dir = record.dir.clone();
    fs::create_dir_all(&dir).map_err(|e| BenchError::io(&dir, e))?;
    let ports = procs::pick_ports(2)?;
    let (relay_port, sink_port) = (ports[0], ports[1]);
    record.relay_port = relay_port;
    record.sink_port = sink_port;
    let n = record.n;
    let sink_names: Vec<String> = (0..n).map(setup::sink_name).collect();

    if record.captured {
        // ~6 Mbit/s per sink plus the publisher, for the whole capture, with slack.
        let secs = (plan.warmup + plan.duration + plan.tail).as_secs() + 5;
        let needed = (n as u64 + 1) * 6_500_000 / 8 * secs;
        let free = procs::free_bytes(&dir);
        if free < needed {
            return Err(BenchError::Setup(format!(
                "the capture needs about {} MB in {} and {} MB are free",
                needed / 1_000_000,
                dir.display(),
                free / 1_000_000
            )));
        }
    }

    let sinks = Nginx::start_sinks(&dir.join("sinks"), sink_port, plan.sink_workers)?;
    let started = match record.relay {
        Relay::Prism => Prism::start(
            &plan.prism,
            &plan.prism_env,
            &dir.join("prism"),
            relay_port,
            sink_port,
            n,
        )
        .map(|(prism, query)| (Running::Prism(prism), format!("?{query}"))),
        Relay::Nginx => Nginx::start_relay(&dir.join("nginx"), relay_port, sink_port, n)
            .map(|nginx| (Running::Nginx(nginx), String::new())),
        Relay::Proxy if record.captured => Err(BenchError::Setup(
            "the proxy is measured without the capture".into(),
        )),
        Relay::Proxy => Proxy::start(&dir.join("proxy"), relay_port, sink_port, n)
            .map(|proxy| (Running::Proxy(proxy), String::new())),
    };
    let (mut relay, query) = match started {
        Ok(started) => started,
        Err(e) => {
            sinks.stop();
            return Err(e);
        }
    };
    let pcap = dir.join("capture.pcap");
    let result = measure(
        plan, record, &mut relay, &sinks, relay_port, sink_port, &query, &pcap,
    );
    relay.stop();
    sinks.stop();
    let (tcpdump, window) = result?;
    if record.delivered_wire_mbit > 0.0 {
        record.cpu_ms_per_mbit = Some(record.relay_cpu_ms / record.delivered_wire_mbit);
    }
    let Some(tcpdump) = tcpdump else {
        return Ok(());
    };
    record.tcpdump = Some(tcpdump.clone());
    record.pcap_bytes = fs::metadata(&pcap).map(|m| m.len()).unwrap_or(0);

    let analysis_start = Instant::now();
    let decoded = capture::decode_file(&pcap, relay_port, sink_port);
    record.analysis_secs = analysis_start.elapsed().as_secs_f64();
    if !plan.keep {
        let _ = fs::remove_file(&pcap);
    }
    let decoded = decoded?;
    let mut figures = analysis::analyze(&decoded, window, &sink_names);
    if tcpdump.dropped_by_kernel > 0 || tcpdump.dropped_by_interface > 0 {
        figures.problems.push(format!(
            "the capture dropped packets ({} by the kernel, {} by the interface): \
             figures of this run are not trustworthy",
            tcpdump.dropped_by_kernel, tcpdump.dropped_by_interface
        ));
    }
    if decoded.stats.truncated > 0 {
        figures.problems.push(format!(
            "{} packets were truncated by the snap length",
            decoded.stats.truncated
        ));
    }
    if record.delivered_wire_mbit > 0.0 {
        record.media_share_of_wire = Some(figures.delivered_mbit / record.delivered_wire_mbit);
    }
    record.capture = Some(decoded.stats);
    record.figures = Some(figures);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn measure(
    plan: &Plan,
    record: &mut RunRecord,
    relay: &mut Running,
    sinks: &Nginx,
    relay_port: u16,
    sink_port: u16,
    query: &str,
    pcap: &Path,
) -> Result<(Option<TcpdumpStats>, Window), BenchError> {
    let tcpdump = if record.captured {
        Some(Tcpdump::start(
            pcap,
            &[relay_port, sink_port],
            plan.capture_buffer_kib,
        )?)
    } else {
        None
    };
    let url = format!(
        "rtmp://127.0.0.1:{relay_port}/{}/{}",
        setup::RELAY_APP,
        setup::RELAY_STREAM
    );
    let playpath = format!("{}{query}", setup::RELAY_STREAM);
    let publisher = match Publisher::start(
        &plan.ffmpeg,
        &plan.clip,
        &url,
        &playpath,
        &record.dir.join("publisher.log"),
    ) {
        Ok(publisher) => publisher,
        Err(e) => {
            if let Some(tcpdump) = tcpdump {
                let _ = tcpdump.stop();
            }
            return Err(e);
        }
    };
    let result = window(
        plan,
        record,
        relay,
        sinks,
        sink_port,
        &publisher,
        tcpdump.as_ref(),
    );
    // Capture first, so that the publisher's and relay's shutdown is not in it.
    let stats = tcpdump.map(Tcpdump::stop).transpose();
    let mut publisher = publisher;
    let publisher_alive = publisher.alive();
    publisher.stop();
    let window = result?;
    if !publisher_alive {
        return Err(BenchError::Setup(format!(
            "the publisher exited before the end of the window (see {})",
            record.dir.join("publisher.log").display()
        )));
    }
    if !relay.alive() {
        return Err(BenchError::Setup(
            "the relay exited during the run (see its log in the run directory)".into(),
        ));
    }
    Ok((stats?, window))
}

/// Warm-up, window, tail: samples the processes at the window's edges.
#[allow(clippy::too_many_arguments)]
fn window(
    plan: &Plan,
    record: &mut RunRecord,
    relay: &mut Running,
    sinks: &Nginx,
    sink_port: u16,
    publisher: &Publisher,
    tcpdump: Option<&Tcpdump>,
) -> Result<Window, BenchError> {
    let start = Instant::now();
    let relay_pids = relay.pids();
    let sink_pids = sinks.pids();
    let tcpdump_pids: Vec<u32> = tcpdump.map(Tcpdump::pid).into_iter().collect();
    let softirq_pids = procs::softirq_threads();
    let sample = || -> Result<Samples, BenchError> {
        Ok(Samples {
            relay: procs::sample_group(&relay_pids),
            sinks: procs::sample_group(&sink_pids),
            publisher: procs::sample_group(&[publisher.pid()]),
            tcpdump: procs::sample_group(&tcpdump_pids),
            softirq: procs::sample_group(&softirq_pids),
            machine: procs::sample_machine(),
            at_ns: now_ns(),
            sink_bytes: procs::tcp_bytes_received(sink_port)?,
        })
    };
    sleep_until(start + plan.warmup);
    let a = sample()?;
    sleep_until(start + plan.warmup + plan.duration);
    let b = sample()?;
    sleep_until(start + plan.warmup + plan.duration + plan.tail);

    let window = Window {
        start_ns: a.at_ns,
        end_ns: b.at_ns,
    };
    record.window = Some(window);
    let secs = (b.at_ns - a.at_ns) as f64 / 1e9;
    let share =
        |x: &GroupSample, y: &GroupSample| (y.cpu_ns.saturating_sub(x.cpu_ns)) as f64 / 1e9 / secs;
    record.delivered_wire_mbit = b.sink_bytes.0.saturating_sub(a.sink_bytes.0) as f64 * 8.0 / 1e6;
    record.sink_sockets = b.sink_bytes.1;
    if a.sink_bytes.1 != b.sink_bytes.1 {
        return Err(BenchError::Setup(format!(
            "the sinks had {} connections at the window's start and {} at its end: \
             a destination reconnected, its bytes are not all counted",
            a.sink_bytes.1, b.sink_bytes.1
        )));
    }
    record.relay_start = a.relay;
    record.relay_end = b.relay;
    record.relay_cpu_ms = (b.relay.cpu_ns.saturating_sub(a.relay.cpu_ns)) as f64 / 1e6;
    record.relay_cpu_ms_from_stat = b.relay.stat_cpu_ms.saturating_sub(a.relay.stat_cpu_ms) as f64;
    let system_ms = b
        .relay
        .stat_system_ms
        .saturating_sub(a.relay.stat_system_ms) as f64;
    record.relay_kernel_share =
        (record.relay_cpu_ms_from_stat > 0.0).then(|| system_ms / record.relay_cpu_ms_from_stat);
    record.peak_rss_kib = b.relay.peak_rss_kib;
    record.pss_kib = b.relay.pss_kib;
    let machine_ms = b.machine.busy_ms.saturating_sub(a.machine.busy_ms) as f64;
    let mut cpu = CpuShares {
        relay: share(&a.relay, &b.relay),
        sinks: share(&a.sinks, &b.sinks),
        publisher: share(&a.publisher, &b.publisher),
        tcpdump: share(&a.tcpdump, &b.tcpdump),
        softirq: share(&a.softirq, &b.softirq),
        machine: machine_ms / 1e3 / secs,
        others: 0.0,
    };
    cpu.others =
        (cpu.machine - cpu.relay - cpu.sinks - cpu.publisher - cpu.tcpdump - cpu.softirq).max(0.0);
    if record.delivered_wire_mbit > 0.0 {
        let path_ms = (cpu.relay + cpu.sinks + cpu.publisher + cpu.softirq) * secs * 1e3;
        record.path_cpu_ms_per_mbit = Some(path_ms / record.delivered_wire_mbit);
    }
    record.cpu = cpu;
    if a.relay.processes != relay_pids.len() || b.relay.processes != relay_pids.len() {
        return Err(BenchError::Setup(format!(
            "read {} and {} of the relay's {} processes: one exited",
            a.relay.processes,
            b.relay.processes,
            relay_pids.len()
        )));
    }
    Ok(window)
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}
