//! The programs of a run: the source clip, the nginx-rtmp sinks, the relays under
//! test (prism, nginx-rtmp with `push`), the ffmpeg publisher and the tcpdump
//! capture. Everything listens on 127.0.0.1, lives in the run's directory and is
//! stopped by PID.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::error::BenchError;
use crate::procs;

/// Where Debian's libnginx-mod-rtmp puts the module.
pub const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// Bound for a server to come up.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Bound for a program to stop after its first signal.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Application and stream the publisher publishes to on the relay.
pub const RELAY_APP: &str = "live";
/// The publisher's stream name on the relay.
pub const RELAY_STREAM: &str = "bench";
/// Application on the sinks.
pub const SINK_APP: &str = "app";

/// The stream name of sink `i` (the same for both relays).
pub fn sink_name(i: usize) -> String {
    format!("sink{i}")
}

/// The source: 1080p30 H.264 (x264 CBR 5.8 Mbit/s with filler, a keyframe every
/// 60 frames) + AAC 160 kbit/s stereo, about 6 Mbit/s in all, generated once and
/// cached. Noise over a moving test pattern keeps the encoder at its rate and
/// makes every frame's payload unique (frames are matched across connections by
/// payload).
pub fn ensure_clip(dir: &Path, ffmpeg: &str, secs: u64) -> Result<PathBuf, BenchError> {
    let path = dir.join(format!("clip-1080p30-6mbps-{secs}s.flv"));
    if path.is_file() {
        return Ok(path);
    }
    fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
    let partial = path.with_extension("flv.tmp");
    eprintln!(
        "generating the {secs} s source clip {} (once; a few minutes on 2 cores)",
        path.display()
    );
    let status = Command::new(ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i"])
        .arg("testsrc2=size=1920x1080:rate=30,noise=alls=12:allf=t+u")
        .args(["-f", "lavfi", "-i"])
        .arg("anoisesrc=color=pink:amplitude=0.2:sample_rate=48000")
        .args(["-t", &secs.to_string()])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ])
        .args(["-b:v", "5800k", "-minrate", "5800k", "-maxrate", "5800k"])
        .args([
            "-bufsize",
            "5800k",
            "-x264-params",
            "nal-hrd=cbr:force-cfr=1",
        ])
        .args(["-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
        .args(["-c:a", "aac", "-b:a", "160k", "-ac", "2"])
        .args(["-f", "flv"])
        .arg(&partial)
        .status()
        .map_err(|source| BenchError::Spawn {
            program: ffmpeg.to_owned(),
            source,
        })?;
    if !status.success() {
        return Err(BenchError::Setup(format!(
            "ffmpeg could not generate the clip ({status})"
        )));
    }
    fs::rename(&partial, &path).map_err(|e| BenchError::io(&path, e))?;
    Ok(path)
}

/// A running nginx (a sink, or the nginx-rtmp relay): a master and its workers.
pub struct Nginx {
    master: Child,
    workers: Vec<u32>,
}

impl Nginx {
    /// Writes `rtmp_block` into a config under `dir` and starts nginx in the
    /// foreground with `dir` as its prefix, then waits for `port` and the workers.
    fn start(dir: &Path, workers: usize, rtmp_block: &str, port: u16) -> Result<Self, BenchError> {
        if !Path::new(RTMP_MODULE).is_file() {
            return Err(BenchError::Setup(format!(
                "{RTMP_MODULE} is missing: install libnginx-mod-rtmp (scripts/bench-fanout does)"
            )));
        }
        fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        // As root, nginx would run its workers as `nobody`, who cannot write here.
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;\n"
        } else {
            ""
        };
        let d = dir.display();
        let conf = format!(
            "load_module {RTMP_MODULE};\n\
             {user}worker_processes {workers};\n\
             worker_rlimit_nofile 16384;\n\
             pid \"{d}/nginx.pid\";\n\
             lock_file \"{d}/nginx.lock\";\n\
             error_log \"{d}/error.log\" info;\n\
             events {{\n    worker_connections 8192;\n}}\n\
             {rtmp_block}"
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).map_err(|e| BenchError::io(&conf_path, e))?;
        let mut command = Command::new(nginx_binary());
        command
            .arg("-p")
            .arg(format!("{d}/"))
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .args(["-g", "daemon off;"]);
        let mut master = procs::spawn(command, &dir.join("nginx.stderr"), libc::SIGTERM)?;
        if let Err(e) = procs::wait_listening(&mut master, port, "nginx", START_TIMEOUT) {
            procs::stop(&mut master, libc::SIGTERM, STOP_GRACE);
            return Err(e);
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let mut found = procs::children_of(master.id());
        while found.len() < workers && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            found = procs::children_of(master.id());
        }
        if found.len() < workers {
            procs::stop(&mut master, libc::SIGTERM, STOP_GRACE);
            return Err(BenchError::Setup(format!(
                "nginx in {d} started {} of {workers} workers",
                found.len()
            )));
        }
        Ok(Self {
            master,
            workers: found,
        })
    }

    /// The sinks: one nginx-rtmp application with `live on` that accepts any
    /// number of publishes (one per destination), nothing recorded; and the
    /// relay's application name too, for what the byte proxy passes on as the
    /// publisher sent it.
    pub fn start_sinks(dir: &Path, port: u16, workers: usize) -> Result<Self, BenchError> {
        let block = format!(
            "rtmp {{\n    server {{\n        listen 127.0.0.1:{port};\n        chunk_size 4096;\n        \
             application {SINK_APP} {{\n            live on;\n        }}\n        \
             application {RELAY_APP} {{\n            live on;\n        }}\n    }}\n}}\n"
        );
        Self::start(dir, workers, &block, port)
    }

    /// nginx-rtmp as the relay under test: `live on` and one `push` per sink, one
    /// worker (nginx-rtmp's documented setup for live streams).
    pub fn start_relay(
        dir: &Path,
        port: u16,
        sink_port: u16,
        sinks: usize,
    ) -> Result<Self, BenchError> {
        let mut pushes = String::new();
        for i in 0..sinks {
            let _ = writeln!(
                pushes,
                "            push rtmp://127.0.0.1:{sink_port}/{SINK_APP}/{};",
                sink_name(i)
            );
        }
        let block = format!(
            "rtmp {{\n    server {{\n        listen 127.0.0.1:{port};\n        chunk_size 4096;\n        \
             application {RELAY_APP} {{\n            live on;\n{pushes}        }}\n    }}\n}}\n"
        );
        Self::start(dir, 1, &block, port)
    }

    /// Master and workers.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.master.id()];
        pids.extend_from_slice(&self.workers);
        pids
    }

    /// Whether the master and every worker still run.
    pub fn alive(&self) -> bool {
        self.pids().into_iter().all(procs::alive)
    }

    /// Fast shutdown (SIGTERM to the master), then SIGKILL to whatever is left.
    pub fn stop(mut self) {
        procs::stop(&mut self.master, libc::SIGTERM, STOP_GRACE);
        procs::kill_and_reap(&self.workers);
    }
}

fn nginx_binary() -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("nginx"))
}

/// prism as the relay under test.
pub struct Prism {
    child: Child,
}

impl Prism {
    /// Starts `prism serve` with one preset per sink (`s<i>`, stream name
    /// `sink{key}`), so that the publish URL's query string `s0=0&s1=1...` gives
    /// it exactly the same N destinations as nginx's `push` lines. Returns the
    /// query string too.
    pub fn start(
        binary: &Path,
        env: &[(String, String)],
        dir: &Path,
        port: u16,
        sink_port: u16,
        sinks: usize,
    ) -> Result<(Self, String), BenchError> {
        if !binary.is_file() {
            return Err(BenchError::Setup(format!(
                "{} is missing: build it with `cargo build --release` (scripts/bench-fanout does)",
                binary.display()
            )));
        }
        fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        let mut config = format!(
            "[rtmp]\nlisten = \"127.0.0.1:{port}\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n\
             [log]\nlevel = \"info\"\n"
        );
        let mut query = Vec::with_capacity(sinks);
        for i in 0..sinks {
            let _ = write!(
                config,
                "\n[presets.s{i}]\nurl = \"rtmp://127.0.0.1:{sink_port}/{SINK_APP}\"\n\
                 stream_name = \"sink{{key}}\"\n"
            );
            query.push(format!("s{i}={i}"));
        }
        let query = query.join("&");
        // prism refuses longer query strings (stream_name::MAX_QUERY_LEN).
        if query.len() > 4096 {
            return Err(BenchError::Setup(format!(
                "{sinks} destinations need a {} byte query string; prism accepts 4096",
                query.len()
            )));
        }
        let config_path = dir.join("prism.toml");
        fs::write(&config_path, config).map_err(|e| BenchError::io(&config_path, e))?;
        let mut command = Command::new(binary);
        command.arg("serve").arg("--config").arg(&config_path);
        // Only the file configures it.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PRISM_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        command.envs(env.iter().map(|(name, value)| (name, value)));
        let mut child = procs::spawn(command, &dir.join("prism.log"), libc::SIGTERM)?;
        if let Err(e) = procs::wait_listening(&mut child, port, "prism", START_TIMEOUT) {
            procs::stop(&mut child, libc::SIGTERM, STOP_GRACE);
            return Err(e);
        }
        Ok((Self { child }, query))
    }

    /// The process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Graceful shutdown (SIGTERM), then SIGKILL.
    pub fn stop(mut self) {
        procs::stop(&mut self.child, libc::SIGTERM, STOP_GRACE);
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// `ffmpeg -re -i CLIP -c copy -f flv URL`: the publisher.
pub struct Publisher {
    child: Child,
}

impl Publisher {
    /// Starts publishing `clip` to `url` at its own pace, as stream `playpath`.
    /// The stream name (with prism's query string) goes in `-rtmp_playpath`
    /// rather than in the URL: ffmpeg cuts URLs at 1023 bytes, which would drop
    /// destinations past about 136.
    pub fn start(
        ffmpeg: &str,
        clip: &Path,
        url: &str,
        playpath: &str,
        log: &Path,
    ) -> Result<Self, BenchError> {
        let mut command = Command::new(ffmpeg);
        command
            .args([
                "-hide_banner",
                "-loglevel",
                "warning",
                "-nostdin",
                "-re",
                "-i",
            ])
            .arg(clip)
            .args(["-c", "copy", "-f", "flv", "-rtmp_playpath", playpath, url]);
        Ok(Self {
            child: procs::spawn(command, log, libc::SIGTERM)?,
        })
    }

    /// The process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops it (SIGTERM makes ffmpeg end the stream cleanly).
    pub fn stop(mut self) {
        procs::stop(&mut self.child, libc::SIGTERM, STOP_GRACE);
    }
}

/// tcpdump writing every packet of two loopback ports to a pcap file with
/// nanosecond timestamps and a large kernel buffer.
pub struct Tcpdump {
    child: Child,
    log: PathBuf,
}

/// What tcpdump reported when it stopped.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TcpdumpStats {
    /// "packets captured".
    pub captured: u64,
    /// "packets received by filter".
    pub received_by_filter: u64,
    /// "packets dropped by kernel".
    pub dropped_by_kernel: u64,
    /// "packets dropped by interface" (newer tcpdump).
    pub dropped_by_interface: u64,
}

impl Tcpdump {
    /// Starts the capture and waits until tcpdump listens.
    pub fn start(file: &Path, ports: &[u16], buffer_kib: u32) -> Result<Self, BenchError> {
        let log = file.with_extension("tcpdump.log");
        // Loopback shows the kernel every packet twice (sent, then received);
        // libpcap keeps one. Both copies into the capture buffer are charged to
        // the sending process, which is why CPU is measured in runs without the
        // capture. (An `inbound` filter would halve that, but with libpcap
        // 1.10.3 on Linux 6.x it lost packets in tests.)
        let filter = ports
            .iter()
            .map(|p| format!("tcp port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let mut command = Command::new("tcpdump");
        command
            .args(["-i", "lo", "-n", "-s", "0", "--time-stamp-precision=nano"])
            .args(["-B", &buffer_kib.to_string()])
            .arg("-w")
            .arg(file);
        // As root, tcpdump would drop to its own user, which cannot write here.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            command.args(["-Z", "root"]);
        }
        command.arg(filter);
        let mut child = procs::spawn(command, &log, libc::SIGINT)?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if text.contains("listening on") {
                return Ok(Self { child, log });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(BenchError::Setup(format!(
                    "tcpdump exited at start ({status}): {}",
                    text.trim()
                )));
            }
            if Instant::now() >= deadline {
                procs::stop(&mut child, libc::SIGKILL, STOP_GRACE);
                return Err(BenchError::Setup("tcpdump did not start listening".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the capture (SIGINT: tcpdump flushes the file and prints its counts).
    pub fn stop(mut self) -> Result<TcpdumpStats, BenchError> {
        if !procs::stop(&mut self.child, libc::SIGINT, Duration::from_secs(30)) {
            return Err(BenchError::Capture(
                "tcpdump did not stop on SIGINT; the file may be incomplete".into(),
            ));
        }
        let text = fs::read_to_string(&self.log).map_err(|e| BenchError::io(&self.log, e))?;
        let count = |label: &str| {
            text.lines()
                .find(|line| line.contains(label))
                .and_then(|line| line.split_whitespace().next()?.parse().ok())
        };
        let stats = TcpdumpStats {
            captured: count("packets captured").ok_or_else(|| {
                BenchError::Capture(format!("no tcpdump statistics in {}", self.log.display()))
            })?,
            received_by_filter: count("received by filter").unwrap_or(0),
            dropped_by_kernel: count("dropped by kernel").unwrap_or(0),
            dropped_by_interface: count("dropped by interface").unwrap_or(0),
        };
        Ok(stats)
    }
}
