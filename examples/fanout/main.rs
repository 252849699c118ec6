//! End-to-end fan-out benchmark: prism against nginx-rtmp `push`, one ffmpeg
//! publisher of a 1080p30 ~6 Mbit/s stream, N nginx-rtmp sinks, everything on
//! loopback, measured on the wire with tcpdump. See BENCHMARKS.md for what each
//! figure means; run it with `scripts/bench-fanout` (`just bench-fanout`), which
//! installs the tools and builds prism first.
//!
//! Built by CI (`clippy --all-targets`) but never run there: a run takes minutes
//! and wants a quiet machine.

mod analysis;
mod capture;
mod crosscheck;
mod error;
mod load;
mod many;
mod procs;
mod proxy;
mod report;
mod run;
mod setup;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use crate::error::BenchError;
use crate::report::{CostModel, Machine, ScaleStep, Summary};
use crate::run::{Plan, Relay, RunRecord};

/// Fan-out benchmark: prism vs nginx-rtmp push (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Destination counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    n: Vec<usize>,
    /// Repeats per relay and N (medians are reported); each repeat is one run
    /// without the capture (CPU, memory) and one with it (wire figures), and the
    /// relay order alternates between repeats.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Relays to measure.
    #[arg(long, value_delimiter = ',', default_value = "prism,nginx")]
    relays: Vec<Relay>,
    /// Seconds from the publisher's start to the measurement window.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Seconds of the measurement window.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds captured after the window for frames still in flight.
    #[arg(long, default_value_t = 1)]
    tail: u64,
    /// Instead of the N list: raise N from --scale-start by --scale-step until a
    /// relay fails (a sink below 99.9 % delivered in the window, or p99 added
    /// latency >= 50 ms) or --scale-max.
    #[arg(long)]
    scale: bool,
    /// First N of the scale search.
    #[arg(long, default_value_t = 50)]
    scale_start: usize,
    /// Step of the scale search.
    #[arg(long, default_value_t = 50)]
    scale_step: usize,
    /// Last N of the scale search.
    #[arg(long, default_value_t = 400)]
    scale_max: usize,
    /// Runs per relay at each N of the scale search; the verdict uses their
    /// medians. On a shared machine one run is at the mercy of its load: use 3.
    #[arg(long, default_value_t = 1)]
    scale_repeats: usize,
    /// Instead of a benchmark: decode one short capture per relay both with
    /// this tool and with tshark's RTMPT dissector, and compare.
    #[arg(long)]
    crosscheck: bool,
    /// Keep the pcap files (~0.9 GB at N = 32, ~11 GB at N = 400).
    #[arg(long)]
    keep: bool,
    /// nginx worker processes of the sinks.
    #[arg(long, default_value_t = 1)]
    sink_workers: usize,
    /// tcpdump's kernel buffer (-B), KiB.
    #[arg(long, default_value_t = 262_144)]
    capture_buffer_kib: u32,
    /// Results, run directories and the cached clip go here.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-fanout"))]
    out_dir: PathBuf,
    /// The prism binary under test.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/prism"))]
    prism: PathBuf,
    /// Extra environment for prism, e.g. `--prism-env TOKIO_WORKER_THREADS=1`
    /// (repeatable; PRISM_* and RUST_LOG of the caller are not passed on).
    #[arg(long, value_parser = parse_env)]
    prism_env: Vec<(String, String)>,
    /// The ffmpeg binary that generates the clip and publishes it.
    #[arg(long, default_value = "ffmpeg")]
    ffmpeg: String,
    /// Instead of the N list: the many-streams mode with these publisher counts
    /// (K publishers x --many-destinations each, 1 Mbit/s streams, the
    /// benchmark's own light publishers and sinks), for prism on one thread,
    /// prism with one worker per core, and nginx-rtmp.
    #[arg(long, value_delimiter = ',')]
    many: Vec<usize>,
    /// Destinations per stream in the many-streams mode.
    #[arg(long, default_value_t = 4)]
    many_destinations: usize,
    /// Instead of a benchmark: be the byte proxy (`--relays proxy` starts this
    /// binary so) listening on this port...
    #[arg(long, hide = true, requires = "proxy_to")]
    proxy_listen: Option<u16>,
    /// ...connecting to this one...
    #[arg(long, hide = true)]
    proxy_to: Option<u16>,
    /// ...this many times per publisher.
    #[arg(long, hide = true, default_value_t = 1)]
    proxy_sinks: usize,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))
}

/// The JSON file.
#[derive(Serialize)]
struct Output<'a> {
    machine: &'a Machine,
    command: Vec<String>,
    summaries: &'a [Summary],
    cost_models: &'a [CostModel],
    scale: &'a [ScaleStep],
    runs: &'a [RunRecord],
}

fn main() {
    let args = Args::parse();
    if let Err(e) = real_main(&args) {
        eprintln!("fanout: {e}");
        std::process::exit(1);
    }
}

fn real_main(args: &Args) -> Result<(), BenchError> {
    if let (Some(listen), Some(to)) = (args.proxy_listen, args.proxy_to) {
        return proxy::serve(listen, to, args.proxy_sinks);
    }
    procs::become_subreaper();
    if !args.many.is_empty() {
        return many_main(args);
    }
    let machine = Machine::probe(&args.ffmpeg);
    eprintln!("machine: {}", machine.markdown());
    // Clip length: the longest run plus slack for connection setup, in 30 s steps.
    let needed = args.warmup + args.duration + args.tail + 10;
    let clip_secs = needed.div_ceil(30).max(2) * 30;
    let clip = setup::ensure_clip(&args.out_dir, &args.ffmpeg, clip_secs)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let plan = Plan {
        prism: args.prism.clone(),
        prism_env: args.prism_env.clone(),
        ffmpeg: args.ffmpeg.clone(),
        clip,
        runs_dir: args.out_dir.join("runs"),
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
        tail: Duration::from_secs(args.tail),
        sink_workers: args.sink_workers,
        capture_buffer_kib: args.capture_buffer_kib,
        keep: args.keep || args.crosscheck,
    };
    if args.crosscheck {
        return crosscheck::run(&plan, &args.relays, args.keep);
    }

    let mut runs: Vec<RunRecord> = Vec::new();
    let mut scale: Vec<ScaleStep> = Vec::new();
    if args.scale {
        scale_search(args, &plan, &mut runs, &mut scale);
    } else {
        // Two runs per relay (without and with the capture), one for the proxy.
        let runs_per_repeat: usize = args
            .relays
            .iter()
            .map(|&relay| if relay == Relay::Proxy { 1 } else { 2 })
            .sum();
        let total = args.n.len() * args.repeats * runs_per_repeat;
        for &n in &args.n {
            for repeat in 0..args.repeats {
                // Alternate which relay goes first, so that a drift in the
                // machine's load does not always favour the same one. CPU
                // and memory come from runs without the capture, wire
                // figures from runs with it.
                let mut order = args.relays.clone();
                if repeat % 2 == 1 {
                    order.reverse();
                }
                for captured in [false, true] {
                    for (slot, &relay) in order.iter().enumerate() {
                        if captured && relay == Relay::Proxy {
                            continue;
                        }
                        eprint!(
                            "[{}/{total}] {} N={n} repeat {repeat} {}: ",
                            runs.len() + 1,
                            relay.name(),
                            if captured { "wire" } else { "cpu" }
                        );
                        let record = run::run_once(&plan, relay, n, repeat, slot, captured);
                        eprintln!("{}", one_line(&record));
                        runs.push(record);
                    }
                }
            }
        }
    }

    let ns: Vec<usize> = if args.scale {
        let mut ns: Vec<usize> = scale.iter().map(|s| s.n).collect();
        ns.dedup();
        ns
    } else {
        args.n.clone()
    };
    let summaries = report::summarize(&runs, &args.relays, &ns);
    let mut markdown = format!(
        "Fan-out benchmark, {} (warm-up {} s, window {} s, {} repeat(s))\n\nMachine: {}\n\n",
        if args.scale {
            "scale search"
        } else {
            "relay × N"
        },
        args.warmup,
        args.duration,
        if args.scale {
            args.scale_repeats
        } else {
            args.repeats
        },
        machine.markdown()
    );
    markdown.push_str(&report::markdown_table(&summaries));
    let cost_models = report::cost_models(&summaries, &args.relays);
    if !cost_models.is_empty() {
        markdown.push_str(
            "\nRelay CPU per second of stream, split into a fixed part and a part per \
             destination (least squares over N, from the medians above):\n\n",
        );
        markdown.push_str(&report::markdown_cost_models(&cost_models));
    }
    if let Some(floor) = report::markdown_floor(&summaries) {
        markdown.push_str(
            "\nRelay CPU as a multiple of the tokio proxy's, the floor of a relay on tokio \
             (BENCHMARKS.md):\n\n",
        );
        markdown.push_str(&floor);
    }
    if args.scale {
        markdown.push('\n');
        markdown.push_str(&report::markdown_scale(&scale, &args.relays));
    }
    let failed: Vec<&RunRecord> = runs.iter().filter(|r| !r.ok).collect();
    if !failed.is_empty() {
        markdown.push_str("\nRuns without trustworthy figures (left out of the medians):\n\n");
        for r in failed {
            markdown.push_str(&format!(
                "- {} N={} repeat {}: {}\n",
                r.relay.name(),
                r.n,
                r.repeat,
                why_failed(r)
            ));
        }
    }
    println!("{markdown}");

    fs::create_dir_all(&args.out_dir).map_err(|e| BenchError::io(&args.out_dir, e))?;
    let json_path = args.out_dir.join(format!("fanout-{stamp}.json"));
    let output = Output {
        machine: &machine,
        command: std::env::args().collect(),
        summaries: &summaries,
        cost_models: &cost_models,
        scale: &scale,
        runs: &runs,
    };
    let json = serde_json::to_string_pretty(&output)
        .map_err(|e| BenchError::Setup(format!("JSON: {e}")))?;
    fs::write(&json_path, json).map_err(|e| BenchError::io(&json_path, e))?;
    let md_path = json_path.with_extension("md");
    fs::write(&md_path, &markdown).map_err(|e| BenchError::io(&md_path, e))?;
    eprintln!(
        "raw results: {}\ntable: {}",
        json_path.display(),
        md_path.display()
    );
    Ok(())
}

/// The many-streams mode: runs, prints the table, writes the JSON beside it.
fn many_main(args: &Args) -> Result<(), BenchError> {
    let plan = many::ManyPlan {
        prism: args.prism.clone(),
        ffmpeg: args.ffmpeg.clone(),
        out_dir: args.out_dir.clone(),
        destinations: args.many_destinations,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
    };
    let relays = [
        many::ManyRelay::PrismOneThread,
        many::ManyRelay::PrismPerCore,
        many::ManyRelay::Nginx,
    ];
    let (records, markdown) = many::run(&plan, &args.many, &relays)?;
    println!("{markdown}");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = args.out_dir.join(format!("many-{stamp}.json"));
    let json = serde_json::to_string_pretty(&records)
        .map_err(|e| BenchError::Setup(format!("JSON: {e}")))?;
    fs::write(&path, json).map_err(|e| BenchError::io(&path, e))?;
    eprintln!("raw results: {}", path.display());
    Ok(())
}

/// Raises N for every relay until it fails the bar; relays alternate at each N.
fn scale_search(args: &Args, plan: &Plan, runs: &mut Vec<RunRecord>, steps: &mut Vec<ScaleStep>) {
    let mut active = args.relays.clone();
    let mut n = args.scale_start.max(1);
    let mut step_index = 0;
    let repeats = args.scale_repeats.max(1);
    while !active.is_empty() && n <= args.scale_max {
        // Runs of one step alternate between the relays, the first relay
        // changing from step to step.
        let mut order = active.clone();
        if step_index % 2 == 1 {
            order.reverse();
        }
        let mut records: Vec<Vec<RunRecord>> = order.iter().map(|_| Vec::new()).collect();
        for repeat in 0..repeats {
            for (slot, &relay) in order.iter().enumerate() {
                eprint!("[scale] {} N={n} repeat {repeat}: ", relay.name());
                let record = run::run_once(plan, relay, n, repeat, slot, true);
                eprintln!("{}", one_line(&record));
                records[slot].push(record);
            }
        }
        for (&relay, records) in order.iter().zip(records) {
            let step = judge_step(relay, n, &records);
            // A step whose measurement failed (capture drops...) is no verdict
            // on the relay either way, but the search stops there for it too.
            if !step.passed {
                active.retain(|&r| r != relay);
            }
            steps.push(step);
            runs.extend(records);
        }
        n += args.scale_step.max(1);
        step_index += 1;
    }
}

/// The verdict on one relay at one N: medians over the step's trustworthy runs
/// (all of them must be trustworthy), then the bar: every sink >= 99.9 %
/// delivered in the window and p99 added latency < 50 ms.
fn judge_step(relay: Relay, n: usize, records: &[RunRecord]) -> ScaleStep {
    let median = |f: &dyn Fn(&RunRecord) -> Option<f64>| {
        let mut values: Vec<f64> = records.iter().filter_map(f).collect();
        values.sort_by(f64::total_cmp);
        analysis::median_f64(&values)
    };
    let ok = records.iter().all(|r| r.ok);
    let delivered = median(&|r| r.figures.as_ref().map(|f| f.delivered_window_min));
    let p99 = median(&|r| r.figures.as_ref().and_then(|f| f.latency_p99_ms));
    let passed = ok && delivered.is_some_and(|d| d >= 0.999) && p99.is_some_and(|p| p < 50.0);
    let errors: Vec<String> = records.iter().filter(|r| !r.ok).map(why_failed).collect();
    ScaleStep {
        relay,
        n,
        runs: records.len(),
        ok,
        passed,
        delivered_window_min: delivered,
        latency_p99_ms: p99,
        relay_cpu: median(&|r| Some(r.cpu.relay)).unwrap_or(0.0),
        sinks_cpu: median(&|r| Some(r.cpu.sinks)).unwrap_or(0.0),
        softirq_cpu: median(&|r| Some(r.cpu.softirq)).unwrap_or(0.0),
        others_cpu: median(&|r| Some(r.cpu.others)).unwrap_or(0.0),
        error: (!errors.is_empty()).then(|| errors.join(" | ")),
    }
}

fn why_failed(record: &RunRecord) -> String {
    if let Some(error) = &record.error {
        return error.clone();
    }
    record
        .figures
        .as_ref()
        .map(|f| f.problems.join("; "))
        .unwrap_or_default()
}

fn one_line(r: &RunRecord) -> String {
    let opt = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.2}"));
    if !r.captured && r.error.is_none() {
        return format!(
            "{}cpu {} ms/Mbit ({:.1} % of a core, {} % in the kernel), rss {:.1} MiB, delivered {:.1} Mbit/s to {} sockets",
            if r.ok { "" } else { "[NOT TRUSTWORTHY] " },
            opt(r.cpu_ms_per_mbit),
            r.cpu.relay * 100.0,
            r.relay_kernel_share
                .map_or("–".to_owned(), |k| format!("{:.0}", k * 100.0)),
            r.peak_rss_kib as f64 / 1024.0,
            r.delivered_wire_mbit
                / r.window
                    .map_or(1.0, |w| (w.end_ns - w.start_ns) as f64 / 1e9),
            r.sink_sockets,
        );
    }
    let Some(f) = r.figures.as_ref() else {
        return format!("FAILED: {}", why_failed(r));
    };
    format!(
        "{}cpu {} ms/Mbit ({:.1} % of a core), rss {:.1} MiB, delivered all {:.2} % window {:.2} %, \
         first frame {} ms, latency p50 {} p99 {} ms (keyframes p50 {} max {}), \
         capture {} MB decoded in {:.1} s",
        if r.ok { "" } else { "[NOT TRUSTWORTHY] " },
        opt(r.cpu_ms_per_mbit),
        r.cpu.relay * 100.0,
        r.peak_rss_kib as f64 / 1024.0,
        f.delivered_all_min * 100.0,
        f.delivered_window_min * 100.0,
        opt(f.first_frame_max_ms),
        opt(f.latency_p50_ms),
        opt(f.latency_p99_ms),
        opt(f.keyframe_latency_p50_ms),
        opt(f.keyframe_latency_max_ms),
        r.pcap_bytes / 1_000_000,
        r.analysis_secs,
    )
}
