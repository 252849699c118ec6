//! The machine, the medians, the Markdown table.

use std::fmt::Write as _;
use std::fs;
use std::process::Command;

use serde::Serialize;

use crate::analysis::median_f64;
use crate::run::{Relay, RunRecord};

/// Where and when the benchmark ran.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// `date -u`.
    pub date: String,
    /// CPUs available to this process.
    pub nproc: usize,
    /// /proc/cpuinfo "model name".
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// MemTotal, MiB.
    pub memory_mib: u64,
    /// /proc/loadavg when the benchmark started.
    pub loadavg_at_start: String,
    /// prism's commit (`git describe --always --dirty`).
    pub prism_commit: String,
    /// `nginx -v`.
    pub nginx: String,
    /// First line of `ffmpeg -version`.
    pub ffmpeg: String,
    /// First line of `tcpdump --version`.
    pub tcpdump: String,
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|out| {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|e| format!("({program}: {e})"))
}

impl Machine {
    /// Reads it all.
    pub fn probe(ffmpeg: &str) -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let nginx = if std::path::Path::new("/usr/sbin/nginx").is_file() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        Self {
            date: first_line("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]),
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default(),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            memory_mib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
                .map_or(0, |kib| kib / 1024),
            loadavg_at_start: fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            prism_commit: first_line(
                "git",
                &[
                    "-C",
                    env!("CARGO_MANIFEST_DIR"),
                    "describe",
                    "--always",
                    "--dirty",
                ],
            ),
            nginx: first_line(nginx, &["-v"]),
            ffmpeg: first_line(ffmpeg, &["-version"]),
            tcpdump: first_line("tcpdump", &["--version"]),
        }
    }

    /// One Markdown paragraph.
    pub fn markdown(&self) -> String {
        format!(
            "{} · {} × {} · {} MiB · Linux {} · load average at start {} · prism {} · {} · {}",
            self.date,
            self.nproc,
            self.cpu_model,
            self.memory_mib,
            self.kernel,
            self.loadavg_at_start,
            self.prism_commit,
            self.nginx,
            self.ffmpeg
        )
    }
}

/// Medians over the good runs of one relay and N.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The relay.
    pub relay: Relay,
    /// Destinations.
    pub n: usize,
    /// Captured runs (wire figures) with trustworthy figures.
    pub wire_ok: usize,
    /// All captured runs.
    pub wire_runs: usize,
    /// Runs without capture (CPU and memory) that completed.
    pub cpu_ok: usize,
    /// All runs without capture.
    pub cpu_runs: usize,
    /// Median relay CPU ms per delivered Mbit (runs without capture).
    pub cpu_ms_per_mbit: Option<f64>,
    /// The same in the captured runs, where the capture's copy of every packet
    /// the relay sends is charged to it: shows what the capture costs.
    pub cpu_ms_per_mbit_captured: Option<f64>,
    /// Median CPU ms of the whole data path per delivered Mbit (runs without capture).
    pub path_cpu_ms_per_mbit: Option<f64>,
    /// Median share of the relay's CPU spent in the kernel (runs without capture).
    pub kernel_share: Option<f64>,
    /// Median relay CPU, share of one core.
    pub relay_cpu: Option<f64>,
    /// Median peak RSS (sum of VmHWM), MiB.
    pub peak_rss_mib: Option<f64>,
    /// Median Pss at the window's end, MiB.
    pub pss_mib: Option<f64>,
    /// Median of the per-run minimum over sinks of delivered (all).
    pub delivered_all_min: Option<f64>,
    /// Median of the per-run minimum over sinks of delivered (window).
    pub delivered_window_min: Option<f64>,
    /// Median of the per-run median first-frame time, ms.
    pub first_frame_median_ms: Option<f64>,
    /// Median of the per-run maximum first-frame time, ms.
    pub first_frame_max_ms: Option<f64>,
    /// Median of the per-run p50 added latency, ms.
    pub latency_p50_ms: Option<f64>,
    /// Median of the per-run p99 added latency, ms.
    pub latency_p99_ms: Option<f64>,
    /// Median publisher media rate, Mbit/s.
    pub published_mbit_per_s: Option<f64>,
    /// Median CPU share of the sinks.
    pub sinks_cpu: Option<f64>,
    /// Median CPU share of the kernel's softirq threads.
    pub softirq_cpu: Option<f64>,
    /// Median CPU share of everything else on the machine.
    pub others_cpu: Option<f64>,
}

fn median_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut values: Vec<f64> = values.flatten().collect();
    values.sort_by(f64::total_cmp);
    median_f64(&values)
}

/// Summaries per (relay, N), in the order given.
pub fn summarize(runs: &[RunRecord], relays: &[Relay], ns: &[usize]) -> Vec<Summary> {
    let mut summaries = Vec::new();
    for &n in ns {
        for &relay in relays {
            let all: Vec<&RunRecord> = runs
                .iter()
                .filter(|r| r.relay == relay && r.n == n)
                .collect();
            if all.is_empty() {
                continue;
            }
            let ok = |captured: bool| -> Vec<&RunRecord> {
                all.iter()
                    .copied()
                    .filter(|r| r.ok && r.captured == captured)
                    .collect()
            };
            let wire = ok(true);
            let cpu = ok(false);
            let fig = |f: fn(&crate::analysis::Figures) -> Option<f64>| {
                median_of(wire.iter().map(|r| r.figures.as_ref().and_then(f)))
            };
            summaries.push(Summary {
                relay,
                n,
                wire_ok: wire.len(),
                wire_runs: all.iter().filter(|r| r.captured).count(),
                cpu_ok: cpu.len(),
                cpu_runs: all.iter().filter(|r| !r.captured).count(),
                cpu_ms_per_mbit: median_of(cpu.iter().map(|r| r.cpu_ms_per_mbit)),
                cpu_ms_per_mbit_captured: median_of(wire.iter().map(|r| r.cpu_ms_per_mbit)),
                path_cpu_ms_per_mbit: median_of(cpu.iter().map(|r| r.path_cpu_ms_per_mbit)),
                kernel_share: median_of(cpu.iter().map(|r| r.relay_kernel_share)),
                relay_cpu: median_of(cpu.iter().map(|r| Some(r.cpu.relay))),
                peak_rss_mib: median_of(cpu.iter().map(|r| Some(r.peak_rss_kib as f64 / 1024.0))),
                pss_mib: median_of(cpu.iter().map(|r| Some(r.pss_kib as f64 / 1024.0))),
                delivered_all_min: fig(|f| Some(f.delivered_all_min)),
                delivered_window_min: fig(|f| Some(f.delivered_window_min)),
                first_frame_median_ms: fig(|f| f.first_frame_median_ms),
                first_frame_max_ms: fig(|f| f.first_frame_max_ms),
                latency_p50_ms: fig(|f| f.latency_p50_ms),
                latency_p99_ms: fig(|f| f.latency_p99_ms),
                published_mbit_per_s: fig(|f| Some(f.published.mbit_per_s)),
                sinks_cpu: median_of(cpu.iter().map(|r| Some(r.cpu.sinks))),
                softirq_cpu: median_of(cpu.iter().map(|r| Some(r.cpu.softirq))),
                others_cpu: median_of(all.iter().filter(|r| r.ok).map(|r| Some(r.cpu.others))),
            });
        }
    }
    summaries
}

fn num(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

fn pct(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{:.1} %", v * 100.0))
}

fn pct0(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{:.0} %", v * 100.0))
}

/// The results table.
pub fn markdown_table(summaries: &[Summary]) -> String {
    let mut out = String::new();
    out.push_str(
        "| relay | N | ok runs, wire + cpu | CPU ms / delivered Mbit (in kernel) | relay CPU | peak RSS MiB (Pss) \
         | delivered min, all / window | first frame median / max ms \
         | added latency p50 / p99 ms | published Mbit/s | sinks CPU | whole path CPU ms / Mbit \
         | other load |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in summaries {
        let _ = writeln!(
            out,
            "| {} | {} | {}/{} + {}/{} | {} ({}) | {} | {} ({}) | {} / {} | {} / {} | {} / {} | {} | {} | {} | {} |",
            s.relay.name(),
            s.n,
            s.wire_ok,
            s.wire_runs,
            s.cpu_ok,
            s.cpu_runs,
            num(s.cpu_ms_per_mbit, 3),
            pct0(s.kernel_share),
            pct(s.relay_cpu),
            num(s.peak_rss_mib, 1),
            num(s.pss_mib, 1),
            pct(s.delivered_all_min),
            pct(s.delivered_window_min),
            num(s.first_frame_median_ms, 0),
            num(s.first_frame_max_ms, 0),
            num(s.latency_p50_ms, 2),
            num(s.latency_p99_ms, 2),
            num(s.published_mbit_per_s, 2),
            pct(s.sinks_cpu),
            num(s.path_cpu_ms_per_mbit, 3),
            pct(s.others_cpu),
        );
    }
    out
}

/// One step of the scale search.
#[derive(Debug, Serialize)]
pub struct ScaleStep {
    /// The relay.
    pub relay: Relay,
    /// Destinations.
    pub n: usize,
    /// Runs at this step (medians over them below).
    pub runs: usize,
    /// Whether every run's figures were trustworthy.
    pub ok: bool,
    /// Whether the relay met the bar (delivered window >= 99.9 % on every sink,
    /// p99 added latency < 50 ms).
    pub passed: bool,
    /// Lowest delivered (window) over sinks.
    pub delivered_window_min: Option<f64>,
    /// p99 added latency, ms.
    pub latency_p99_ms: Option<f64>,
    /// Relay CPU, share of one core (with the capture's cost included).
    pub relay_cpu: f64,
    /// Sinks CPU, share of one core.
    pub sinks_cpu: f64,
    /// The kernel's softirq threads, share of one core.
    pub softirq_cpu: f64,
    /// Everything else on the machine, share of one core.
    pub others_cpu: f64,
    /// Why the run's figures are not trustworthy, if so.
    pub error: Option<String>,
}

/// The scale table: every step, and the largest N that passed per relay.
pub fn markdown_scale(steps: &[ScaleStep], relays: &[Relay]) -> String {
    let mut out = String::new();
    for &relay in relays {
        let best = steps
            .iter()
            .filter(|s| s.relay == relay && s.passed)
            .map(|s| s.n)
            .max();
        let _ = writeln!(
            out,
            "- **{}**: largest N passing: {}",
            relay.name(),
            best.map_or_else(|| "none".to_owned(), |n| n.to_string())
        );
    }
    out.push_str(
        "\n| relay | N | result | delivered min (window) | added latency p99 ms \
         | relay CPU (captured) | sinks CPU | softirq threads | other load |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in steps {
        let result = if !s.ok {
            format!(
                "not measurable: {}",
                s.error.as_deref().unwrap_or("see the JSON")
            )
        } else if s.passed {
            "pass".to_owned()
        } else {
            "FAIL".to_owned()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.relay.name(),
            s.n,
            result,
            pct(s.delivered_window_min),
            num(s.latency_p99_ms, 2),
            pct(Some(s.relay_cpu)),
            pct(Some(s.sinks_cpu)),
            pct(Some(s.softirq_cpu)),
            pct(Some(s.others_cpu)),
        );
    }
    out
}

/// A relay's CPU split into what relaying one stream costs with no destination (the
/// publisher's side: reading, decoding, the hub) and what each destination adds,
/// fitted by least squares over the measured N.
///
/// Why: CPU per delivered Mbit mixes the two, and the ratio of two relays' figures
/// then moves with N; the split says which part a difference comes from, and what
/// a target on the ratio asks of each part.
#[derive(Debug, Serialize, PartialEq)]
pub struct CostModel {
    /// The relay.
    pub relay: Relay,
    /// The N the fit used.
    pub ns: Vec<usize>,
    /// CPU ms per second of stream with no destination (the fit's intercept).
    pub fixed_ms_per_s: f64,
    /// CPU ms per second of stream that each destination adds (the fit's slope).
    pub per_destination_ms_per_s: f64,
}

/// Least-squares line through (N, relay CPU ms per second of stream) per relay,
/// from the summaries' median relay CPU; none for a relay measured at fewer than
/// two distinct N.
pub fn cost_models(summaries: &[Summary], relays: &[Relay]) -> Vec<CostModel> {
    relays
        .iter()
        .filter_map(|&relay| {
            let points: Vec<(usize, f64)> = summaries
                .iter()
                .filter(|s| s.relay == relay)
                .filter_map(|s| Some((s.n, s.relay_cpu? * 1000.0)))
                .collect();
            let (fixed, per_destination) = fit_line(&points)?;
            Some(CostModel {
                relay,
                ns: points.iter().map(|&(n, _)| n).collect(),
                fixed_ms_per_s: fixed,
                per_destination_ms_per_s: per_destination,
            })
        })
        .collect()
}

/// Intercept and slope of the least-squares line through the points.
fn fit_line(points: &[(usize, f64)]) -> Option<(f64, f64)> {
    if points.len() < 2 {
        return None;
    }
    let count = points.len() as f64;
    let mean_x = points.iter().map(|&(x, _)| x as f64).sum::<f64>() / count;
    let mean_y = points.iter().map(|&(_, y)| y).sum::<f64>() / count;
    let sxx: f64 = points
        .iter()
        .map(|&(x, _)| (x as f64 - mean_x).powi(2))
        .sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points
        .iter()
        .map(|&(x, y)| (x as f64 - mean_x) * (y - mean_y))
        .sum();
    let slope = sxy / sxx;
    Some((mean_y - slope * mean_x, slope))
}

/// The cost models as a Markdown table.
pub fn markdown_cost_models(models: &[CostModel]) -> String {
    let mut out = String::from(
        "| relay | fitted over N | fixed CPU ms / s of stream | per destination ms / s |\n\
         |---|---|---:|---:|\n",
    );
    for m in models {
        let ns: Vec<String> = m.ns.iter().map(usize::to_string).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.3} |",
            m.relay.name(),
            ns.join(", "),
            m.fixed_ms_per_s,
            m.per_destination_ms_per_s
        );
    }
    out
}

/// Each relay's CPU per delivered Mbit as a multiple of the tokio proxy's at the
/// same N (`--relays proxy`): what a relay costs above the floor of any relay on
/// tokio, the reads and writes it must make (BENCHMARKS.md, "The floor of a relay
/// on tokio"). `None` when the proxy was not measured.
pub fn markdown_floor(summaries: &[Summary]) -> Option<String> {
    let mut out = String::from(
        "| relay | N | CPU ms / delivered Mbit | the proxy's | x the floor |\n\
         |---|---:|---:|---:|---:|\n",
    );
    let mut rows = 0;
    for floor in summaries.iter().filter(|s| s.relay == Relay::Proxy) {
        let Some(floor_cpu) = floor.cpu_ms_per_mbit.filter(|cpu| *cpu > 0.0) else {
            continue;
        };
        for s in summaries
            .iter()
            .filter(|s| s.n == floor.n && s.relay != Relay::Proxy)
        {
            if let Some(cpu) = s.cpu_ms_per_mbit {
                let _ = writeln!(
                    out,
                    "| {} | {} | {cpu:.3} | {floor_cpu:.3} | {:.2} |",
                    s.relay.name(),
                    s.n,
                    cpu / floor_cpu
                );
                rows += 1;
            }
        }
    }
    (rows > 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(relay: Relay, n: usize, relay_cpu: Option<f64>) -> Summary {
        Summary {
            relay,
            n,
            wire_ok: 0,
            wire_runs: 0,
            cpu_ok: 0,
            cpu_runs: 0,
            cpu_ms_per_mbit: None,
            cpu_ms_per_mbit_captured: None,
            path_cpu_ms_per_mbit: None,
            kernel_share: None,
            relay_cpu,
            peak_rss_mib: None,
            pss_mib: None,
            delivered_all_min: None,
            delivered_window_min: None,
            first_frame_median_ms: None,
            first_frame_max_ms: None,
            latency_p50_ms: None,
            latency_p99_ms: None,
            published_mbit_per_s: None,
            sinks_cpu: None,
            softirq_cpu: None,
            others_cpu: None,
        }
    }

    #[test]
    fn cost_model_recovers_a_line_and_skips_what_cannot_be_fitted() {
        // prism: 4 ms/s + 0.5 per destination, exactly; nginx: one N only.
        let summaries = [
            summary(Relay::Prism, 1, Some(0.0045)),
            summary(Relay::Nginx, 8, Some(0.010)),
            summary(Relay::Prism, 8, Some(0.008)),
            summary(Relay::Prism, 32, Some(0.020)),
            summary(Relay::Prism, 64, None),
        ];
        let models = cost_models(&summaries, &[Relay::Prism, Relay::Nginx]);
        assert_eq!(models.len(), 1, "nginx has one point: no line");
        let m = &models[0];
        assert_eq!(m.ns, [1, 8, 32]);
        assert!((m.fixed_ms_per_s - 4.0).abs() < 1e-9, "{m:?}");
        assert!((m.per_destination_ms_per_s - 0.5).abs() < 1e-9, "{m:?}");
        let table = markdown_cost_models(&models);
        assert!(
            table.contains("| prism | 1, 8, 32 | 4.00 | 0.500 |"),
            "{table}"
        );
    }

    #[test]
    fn the_floor_table_divides_by_the_proxy_at_the_same_n() {
        let with_cpu = |relay, n, cpu| Summary {
            cpu_ms_per_mbit: Some(cpu),
            ..summary(relay, n, None)
        };
        let summaries = [
            with_cpu(Relay::Prism, 1, 0.5),
            with_cpu(Relay::Nginx, 1, 0.4),
            with_cpu(Relay::Proxy, 1, 0.25),
            with_cpu(Relay::Prism, 8, 0.1),
            with_cpu(Relay::Proxy, 8, 0.05),
            with_cpu(Relay::Prism, 32, 0.07),
        ];
        let table = markdown_floor(&summaries).unwrap();
        assert!(
            table.contains("| prism | 1 | 0.500 | 0.250 | 2.00 |"),
            "{table}"
        );
        assert!(
            table.contains("| nginx-rtmp | 1 | 0.400 | 0.250 | 1.60 |"),
            "{table}"
        );
        assert!(
            table.contains("| prism | 8 | 0.100 | 0.050 | 2.00 |"),
            "{table}"
        );
        assert!(!table.contains("| 32 |"), "no proxy at N = 32: {table}");
        assert_eq!(markdown_floor(&summaries[..2]), None, "no proxy measured");
    }

    #[test]
    fn a_noisy_fit_is_the_least_squares_line() {
        // y = 1, 3, 2 at x = 0, 1, 2: slope 0.5, intercept 1.5.
        let (intercept, slope) = fit_line(&[(0, 1.0), (1, 3.0), (2, 2.0)]).unwrap();
        assert!((slope - 0.5).abs() < 1e-12);
        assert!((intercept - 1.5).abs() < 1e-12);
        assert_eq!(fit_line(&[(4, 1.0), (4, 2.0)]), None);
        assert_eq!(fit_line(&[]), None);
    }
}
