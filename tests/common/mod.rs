//! Shared harness for integration tests: real third-party tools against the real
//! server, all on 127.0.0.1, every process stopped by the test that started it.
#![allow(dead_code)]

pub mod child;
pub mod haproxy;
pub mod raw_client;
pub mod redis;
pub mod s3;
#[allow(unused_imports)]
pub use child::ChildPrism;
pub mod sinks;
pub mod srt;
pub mod tap;
pub mod ts;
pub mod wire;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use prism::App;
use prism::config::{Config, Overrides};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// Upper bound for any child process in a test; a hung tool fails the test instead
/// of hanging CI.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// Fails loudly when a tool is missing: a test never skips silently.
/// An HTTP client for prism's API. prism's reqwest has no TLS provider of its own
/// (prism installs ring when it starts), so a test that talks HTTP before or
/// without an in-process prism installs it here first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub fn require(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{tool}` is required by this test but is not on PATH. \
             Run scripts/test, which installs the test dependencies (see README)."
        )
    })
}

/// The FFmpeg 9 binary shipped by the PyPI package imageio-ffmpeg (Debian's 5.1
/// predates enhanced RTMP). Fails loudly when it is missing.
pub fn ffmpeg9() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let out = std::process::Command::new(require("python3"))
            .args([
                "-c",
                "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
            ])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "FFmpeg 9 from the PyPI package imageio-ffmpeg is required by this test. \
             Run scripts/test, which installs it (see README)."
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

/// Everything the in-process server logged, for asserting that no key leaks.
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

/// A log writer that keeps a copy of every line in [`LOGS`] and passes it on to
/// stderr (which the test runner captures and shows on failure).
struct Tee;

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        std::io::stderr().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Sends the tracing output of the in-process server (at debug level, so that
/// key-leak checks see as much as possible) to stderr and to [`captured_logs`].
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "prism=debug".into()),
        )
        .with_ansi(false)
        .with_writer(|| Tee)
        .try_init();
}

/// Everything logged so far by the in-process server.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

/// Asserts that none of `secrets` appears in anything prism logged.
pub fn assert_logs_hide(secrets: &[&str]) {
    let logs = captured_logs();
    assert!(!logs.is_empty(), "logs were captured");
    for secret in secrets {
        assert!(!logs.contains(secret), "a stream key appeared in the logs");
    }
}

/// A prism running in this process on an ephemeral port.
pub struct Prism {
    pub app: Option<App>,
    pub addr: std::net::SocketAddr,
}

impl Prism {
    /// Starts prism on 127.0.0.1:0 with the embedded defaults, adjusted by `tune`.
    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        init_logging();
        let overrides = Overrides {
            rtmp_listen: Some("127.0.0.1:0".parse().unwrap()),
            http_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Overrides::default()
        };
        let mut config = Config::load(None, &overrides).expect("defaults load");
        // The standby slate renders with ffmpeg for every stream that goes live and
        // holds a dropped publisher's stream for minutes: only the tests about it
        // (tests/standby.rs) turn it on.
        config.standby.enabled = false;
        // Most tests play a stream by its key, as nginx-rtmp's players do; the
        // default (public names only) is tested in tests/playback.rs.
        config.rtmp.play_by_key = true;
        tune(&mut config);
        let app = App::start(config).await.expect("prism starts");
        let addr = app.rtmp_addr();
        Self {
            app: Some(app),
            addr,
        }
    }

    /// Starts prism with the embedded defaults.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// `rtmp://127.0.0.1:PORT/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("rtmp://{}/{}", self.addr, path)
    }

    pub fn hub(&self) -> &std::sync::Arc<prism::hub::Hub> {
        self.app.as_ref().unwrap().hub()
    }

    /// `GET /metrics`, as text.
    pub async fn metrics_text(&self) -> String {
        let addr = self.app.as_ref().unwrap().http_addr();
        http_client()
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `GET /api/v1/streams` (reads are open unless `http.protect_reads`).
    pub async fn streams_json(&self) -> serde_json::Value {
        let addr = self.app.as_ref().unwrap().http_addr();
        http_client()
            .get(format!("http://{addr}/api/v1/streams"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until `app/name` is live (or panics after `CHILD_TIMEOUT`).
    pub async fn wait_live(&self, app: &str, name: &str) {
        let deadline = tokio::time::Instant::now() + CHILD_TIMEOUT;
        while !self.hub().is_live(app, name) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{app}/{name} never went live"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `app/name` has at least `n` subscribers.
    pub async fn wait_subscribers(&self, app: &str, name: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + CHILD_TIMEOUT;
        loop {
            let count = self
                .hub()
                .stream(app, name)
                .map(|s| s.subscriber_count())
                .unwrap_or(0);
            if count >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{app}/{name}: {count} subscribers, wanted {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            assert!(
                app.shutdown(Duration::from_secs(5)).await,
                "prism shut down in time"
            );
        }
    }
}

/// The generated test clip: 6 s of 320x240 30 fps H.264 (keyframe every 2 s, no
/// scene-cut keyframes) and 44.1 kHz AAC, as FLV. Generated once per build directory.
pub fn test_flv() -> PathBuf {
    clip(6)
}

/// Like [`test_flv`], `seconds` long.
pub fn clip(seconds: u32) -> PathBuf {
    h264_clip(
        &format!("clip-{seconds}s.flv"),
        seconds,
        "testsrc=size=320x240:rate=30",
        "",
    )
}

/// A heavier clip for back-pressure tests: 6 s of 640x360 noise at about 4 Mbit/s
/// (keyframe every 2 s) and AAC, so that a reader that stops reading fills every
/// socket buffer and the queue behind it.
pub fn heavy_flv() -> PathBuf {
    heavy_clip(6)
}

/// Like [`heavy_flv`], `seconds` long.
pub fn heavy_clip(seconds: u32) -> PathBuf {
    h264_clip(
        &format!("heavy-{seconds}s.flv"),
        seconds,
        "testsrc2=size=640x360:rate=30,noise=alls=60:allf=t",
        "-b:v 4M -maxrate 4M -bufsize 2M",
    )
}

/// Encodes a lavfi video source and a sine, `seconds` long, as H.264 (2 s GOPs, no
/// B-frames) plus AAC, with Debian's ffmpeg.
pub fn h264_clip(name: &str, seconds: u32, video_source: &str, rate_args: &str) -> PathBuf {
    let video = format!("{video_source}:duration={seconds}");
    let video = match video_source.split_once(',') {
        // Filters after the source: the duration belongs to the source.
        Some((source, filters)) => format!("{source}:duration={seconds},{filters}"),
        None => video,
    };
    let audio = format!("sine=frequency=440:sample_rate=44100:duration={seconds}");
    let mut args = vec!["-f", "lavfi", "-i", &video, "-f", "lavfi", "-i", &audio];
    args.extend("-c:v libx264 -preset ultrafast -pix_fmt yuv420p".split_whitespace());
    args.extend(rate_args.split_whitespace());
    args.extend("-g 60 -keyint_min 60 -sc_threshold 0 -bf 0".split_whitespace());
    args.extend("-c:a aac -b:a 64k -shortest".split_whitespace());
    generate(&require("ffmpeg"), name, &args)
}

/// Runs `ffmpeg` with `args` to make `target/tmp/media/<name>` (FLV) once.
pub fn generate(ffmpeg: &Path, name: &str, args: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("media");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    if path.exists() {
        return path;
    }
    // Tests run as separate processes, and as threads of one: write to a name
    // private to this call, then rename atomically (the same clip generated twice
    // at once is harmless: x264 and the AAC encoder are deterministic, so the
    // second rename replaces the first file with the same bytes).
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let call = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!("{name}.{}-{call}.tmp.flv", std::process::id()));
    let status = std::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .args(["-f", "flv"])
        .arg(&tmp)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "generating {name} failed");
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// Spawns a tool with its stdout captured and stderr passed through; killed on drop.
pub fn spawn(program: &str, args: &[&str]) -> Child {
    spawn_path(&require(program), args)
}

/// Like [`spawn`], for a program given by path.
pub fn spawn_path(program: &Path, args: &[&str]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", program.display()))
}

/// `ffmpeg -re -i FILE -c copy -f flv URL`: a real-time publisher.
pub fn publish(file: &Path, url: &str) -> Child {
    publish_with(file, url, &[])
}

/// Like [`publish`], with extra output options (e.g. TLS verification) before the URL.
pub fn publish_with(file: &Path, url: &str, options: &[&str]) -> Child {
    publish_using(&require("ffmpeg"), file, url, options)
}

/// Like [`publish_with`], with a given ffmpeg binary (e.g. [`ffmpeg9`]).
pub fn publish_using(ffmpeg: &Path, file: &Path, url: &str, options: &[&str]) -> Child {
    let mut args = vec!["-hide_banner", "-loglevel", "error", "-re", "-i"];
    args.push(file.to_str().unwrap());
    args.extend(["-c", "copy", "-f", "flv"]);
    args.extend(options);
    args.push(url);
    spawn_path(ffmpeg, &args)
}

/// `ffmpeg -i URL -c copy -f framemd5 -`: a player that hashes every packet.
pub fn play_framemd5(url: &str) -> Child {
    play_framemd5_using(&require("ffmpeg"), url)
}

/// Like [`play_framemd5`], with a given ffmpeg binary (e.g. [`ffmpeg9`]).
pub fn play_framemd5_using(ffmpeg: &Path, url: &str) -> Child {
    let args = "-hide_banner -loglevel error -i URL -map 0:v -map 0:a -c copy -f framemd5 -";
    let args: Vec<&str> = args
        .split_whitespace()
        .map(|a| if a == "URL" { url } else { a })
        .collect();
    spawn_path(ffmpeg, &args)
}

/// Waits for a child (bounded), returning its status and stdout.
pub async fn finish(mut child: Child) -> (ExitStatus, String) {
    let mut stdout = child.stdout.take().expect("stdout piped");
    let collect = async {
        let mut out = String::new();
        stdout.read_to_string(&mut out).await.unwrap();
        let status = child.wait().await.unwrap();
        (status, out)
    };
    match tokio::time::timeout(CHILD_TIMEOUT, collect).await {
        Ok(done) => done,
        Err(_) => panic!("child process did not finish within {CHILD_TIMEOUT:?}"),
    }
}

/// One line of ffmpeg's framemd5 output. Two frames are equal when their stream,
/// size and hash are: the decode time (`dts`, in the stream's time base, ms for FLV)
/// is rebased by a relay, so it does not take part.
#[derive(Debug, Clone)]
pub struct Frame {
    pub stream: usize,
    pub dts: i64,
    pub size: usize,
    pub hash: String,
}

impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        (self.stream, self.size, &self.hash) == (other.stream, other.size, &other.hash)
    }
}

impl Eq for Frame {}

/// Parses framemd5 output (comments skipped). Packet side data (`, S=n, size,
/// hash...` after the packet hash) is not packet payload and is ignored: ffmpeg's
/// FLV demuxer attaches "New Extradata" (the same AAC config as the stream's) to
/// the first audio packet of an nginx-rtmp recording, which has no onMetaData and
/// repeats the AAC sequence header.
pub fn parse_framemd5(text: &str) -> Vec<Frame> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            assert!(
                fields.len() == 6 || fields.len() > 6 && fields[6].starts_with("S="),
                "framemd5 line: {line}"
            );
            Frame {
                stream: fields[0].parse().unwrap(),
                dts: fields[1].parse().unwrap(),
                size: fields[4].parse().unwrap(),
                hash: fields[5].to_owned(),
            }
        })
        .collect()
}

/// The framemd5 of a file (video mapped to stream 0, audio to 1).
pub fn framemd5_of_file(file: &Path) -> Vec<Frame> {
    framemd5_of_file_with(&require("ffmpeg"), file)
}

/// The framemd5 of a file, computed by the given ffmpeg binary.
pub fn framemd5_of_file_with(ffmpeg: &Path, file: &Path) -> Vec<Frame> {
    let out = std::process::Command::new(ffmpeg)
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            file.to_str().unwrap(),
        ])
        .args([
            "-map", "0:v", "-map", "0:a", "-c", "copy", "-f", "framemd5", "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "framemd5 of {file:?} failed");
    parse_framemd5(&String::from_utf8(out.stdout).unwrap())
}

/// Hashes of the source's video keyframes (from ffprobe's packet flags).
pub fn keyframe_hashes(file: &Path) -> HashSet<String> {
    let out = std::process::Command::new(require("ffprobe"))
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success());
    let flags: Vec<bool> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.starts_with('K'))
        .collect();
    let video: Vec<Frame> = framemd5_of_file(file)
        .into_iter()
        .filter(|f| f.stream == 0)
        .collect();
    assert_eq!(
        flags.len(),
        video.len(),
        "ffprobe and framemd5 agree on the packet count"
    );
    video
        .into_iter()
        .zip(flags)
        .filter(|(_, key)| *key)
        .map(|(f, _)| f.hash)
        .collect()
}

fn track(frames: &[Frame], stream: usize) -> Vec<&Frame> {
    frames.iter().filter(|f| f.stream == stream).collect()
}

/// Asserts that `got` is the source from one of its keyframes to its end: every
/// video packet identical and in order, starting on a keyframe; audio a contiguous
/// run of the source's audio ending with the source's last packet, which holds
/// every audio packet stamped at or after that keyframe, whatever order the
/// publisher sent them in (a relay starting at the keyframe skips those stamped
/// before it; a direct recording may keep them). Returns the index of the first
/// video packet received.
pub fn assert_source_from_keyframe(source: &Path, got: &[Frame]) -> usize {
    let expected = framemd5_of_file(source);
    let keyframes = keyframe_hashes(source);
    let (src_video, got_video) = (track(&expected, 0), track(got, 0));
    assert!(!got_video.is_empty(), "no video arrived");
    assert!(
        keyframes.contains(&got_video[0].hash),
        "first video packet is a keyframe"
    );
    let start = src_video
        .iter()
        .position(|f| f.hash == got_video[0].hash)
        .expect("first video packet comes from the source");
    assert_eq!(
        &src_video[start..],
        &got_video[..],
        "video packets identical to the source from its keyframe #{start} on"
    );
    let (src_audio, got_audio) = (track(&expected, 1), track(got, 1));
    assert!(!got_audio.is_empty(), "no audio arrived");
    let audio_start = src_audio
        .len()
        .checked_sub(got_audio.len())
        .expect("no extra audio");
    assert_eq!(
        &src_audio[audio_start..],
        &got_audio[..],
        "audio packets identical to the source's tail"
    );
    let keyframe_dts = src_video[start].dts;
    let needed_from = src_audio
        .iter()
        .position(|a| a.dts >= keyframe_dts)
        .unwrap_or(src_audio.len());
    assert!(
        audio_start <= needed_from,
        "every audio packet stamped from the keyframe (at {keyframe_dts} ms) on arrived: \
         audio from #{audio_start}, needed from #{needed_from}"
    );
    start
}

/// Asserts that stream `stream` of `got` is a contiguous run of the same stream
/// of `expected`, packet for packet (size and hash) and in order; returns the
/// index in `expected`'s stream where it starts.
pub fn assert_contiguous_run(expected: &[Frame], got: &[Frame], stream: usize) -> usize {
    let (expected, got) = (track(expected, stream), track(got, stream));
    assert!(!got.is_empty(), "no packet of stream {stream} arrived");
    let start = expected
        .iter()
        .position(|f| *f == got[0])
        .unwrap_or_else(|| panic!("stream {stream}: the first packet is not the source's"));
    assert!(
        start + got.len() <= expected.len(),
        "stream {stream}: more packets than sent"
    );
    assert_eq!(
        &expected[start..start + got.len()],
        &got[..],
        "stream {stream}: every packet, in order, from the source's #{start}"
    );
    start
}

/// What ffprobe (Debian's) sees in the first video stream of a file.
#[derive(Debug, Clone)]
pub struct VideoProbe {
    /// `codec_name`, e.g. `h264`.
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Frames per second measured from the packets' timestamps (not the header's
    /// claim, which an FLV recording may not carry).
    pub fps: f64,
    /// Presentation times (seconds) of the keyframes, in file order.
    pub keyframes: Vec<f64>,
    /// Video packets in the file.
    pub frames: usize,
    /// Decode times (seconds) of every video packet, in file order: what an
    /// ingest sees, which must never go backwards.
    pub dts: Vec<f64>,
}

/// Runs ffprobe with `args` and the file, and returns the lines of its
/// `compact` output as key=value maps (one per section).
fn ffprobe_compact(path: &Path, args: &[&str]) -> Vec<std::collections::HashMap<String, String>> {
    let out = std::process::Command::new(require("ffprobe"))
        .args(["-v", "error", "-of", "compact=p=0"])
        .args(args)
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe {path:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.split('|')
                .filter_map(|field| field.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// Probes the first video stream of `path`: codec, size, measured frame rate,
/// keyframe times and packet decode times.
pub fn ffprobe_video(path: &Path) -> VideoProbe {
    let streams = ffprobe_compact(
        path,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height",
        ],
    );
    let stream = streams
        .first()
        .unwrap_or_else(|| panic!("{path:?} has no video stream"));
    let field = |name: &str| {
        stream
            .get(name)
            .unwrap_or_else(|| panic!("ffprobe gave no {name} for {path:?}: {stream:?}"))
            .clone()
    };
    let packets = ffprobe_compact(
        path,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time,dts_time,flags",
        ],
    );
    let time = |packet: &std::collections::HashMap<String, String>, key: &str| -> f64 {
        packet[key]
            .parse()
            .unwrap_or_else(|_| panic!("{key} of a packet in {path:?}: {packet:?}"))
    };
    let pts: Vec<f64> = packets.iter().map(|p| time(p, "pts_time")).collect();
    let dts: Vec<f64> = packets.iter().map(|p| time(p, "dts_time")).collect();
    let keyframes: Vec<f64> = packets
        .iter()
        .filter(|p| p["flags"].starts_with('K'))
        .map(|p| time(p, "pts_time"))
        .collect();
    let first = pts.iter().copied().fold(f64::INFINITY, f64::min);
    let last = pts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let fps = if pts.len() > 1 && last > first {
        (pts.len() - 1) as f64 / (last - first)
    } else {
        0.0
    };
    VideoProbe {
        codec: field("codec_name"),
        width: field("width").parse().unwrap(),
        height: field("height").parse().unwrap(),
        fps,
        keyframes,
        frames: pts.len(),
        dts,
    }
}

/// The codec of the first audio stream of `path` (Debian's ffprobe).
pub fn ffprobe_audio_codec(path: &Path) -> String {
    let streams = ffprobe_compact(
        path,
        &[
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name",
        ],
    );
    streams
        .first()
        .and_then(|s| s.get("codec_name").cloned())
        .unwrap_or_else(|| panic!("{path:?} has no audio stream"))
}

/// Every tag of an FLV file, in file order.
pub fn flv_tags(file: &Path) -> Vec<prism::flv::FlvTag> {
    use bytes::BytesMut;
    use prism::flv::FlvReader;
    let mut flv = BytesMut::from(&std::fs::read(file).unwrap()[..]);
    let mut reader = FlvReader::new();
    reader
        .read_header(&mut flv)
        .unwrap()
        .expect("an FLV header");
    let mut tags = Vec::new();
    while let Some(tag) = reader.read_tag(&mut flv).unwrap() {
        tags.push(tag);
    }
    tags
}

/// One tag of a crafted publish: sent `at_ms` after the publish started.
#[derive(Debug, Clone)]
pub struct Scheduled {
    /// When to send it, in ms from the start.
    pub at_ms: u64,
    pub tag: prism::flv::FlvTag,
}

/// The tags of an FLV file scheduled as ffmpeg `-re` sends them: each at its own
/// timestamp (relative to the first), on the publishing stream.
pub fn schedule_in_real_time(file: &Path) -> Vec<Scheduled> {
    let tags = flv_tags(file);
    let first = tags.first().map_or(0, |t| t.timestamp);
    tags.into_iter()
        .map(|tag| Scheduled {
            at_ms: u64::from(tag.timestamp.wrapping_sub(first)),
            tag,
        })
        .collect()
}

/// Publishes `schedule` to prism with prism's own RTMP client, each tag at its time
/// (the list is sent in its order; a tag due earlier than the one before it goes
/// out right after it). Ends with FCUnpublish and deleteStream, then waits for
/// prism to close.
pub async fn publish_schedule(
    addr: std::net::SocketAddr,
    app: &str,
    key: &str,
    schedule: &[Scheduled],
) {
    use prism::flv::TagType;
    use prism::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
    use prism::transport::write_out;
    use tokio::io::AsyncWriteExt;

    let (mut io, mut inbound) = wire::handshake_from(addr, None)
        .await
        .unwrap_or_else(|e| panic!("handshake: {e}"));
    let mut session = ClientSession::after_handshake(
        ClientConfig::new(&format!("rtmp://{addr}/{app}"), key),
        std::time::Instant::now(),
    );
    'publishing: loop {
        write_out(&mut io, session.out()).await.unwrap();
        assert!(
            io.read_buf(&mut inbound).await.unwrap() > 0,
            "server closed"
        );
        while let Some(event) = session.poll(&mut inbound).unwrap() {
            if let ClientEvent::Publishing { .. } = event {
                break 'publishing;
            }
        }
    }
    let started = tokio::time::Instant::now();
    for item in schedule {
        tokio::time::sleep_until(started + Duration::from_millis(item.at_ms)).await;
        let tag = &item.tag;
        match tag.tag_type {
            TagType::Script if tag.data.starts_with(b"\x02\x00\x0aonMetaData") => {
                session.send_metadata(tag.timestamp, &tag.data)
            }
            other => session.send_media(other as u8, tag.timestamp, &tag.data),
        }
        write_out(&mut io, session.out()).await.unwrap();
        while io.try_read_buf(&mut inbound).is_ok_and(|n| n > 0) {}
        while session.poll(&mut inbound).unwrap().is_some() {}
    }
    session.unpublish();
    write_out(&mut io, session.out()).await.unwrap();
    io.shutdown().await.unwrap();
    // Read until prism closes, so that nothing it says meets a closed socket.
    let drain = async { while io.read_buf(&mut inbound).await.is_ok_and(|n| n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
}

/// Publishes an FLV file to prism in real time with prism's own RTMP client,
/// adding `offset_ms` (wrapping) to every timestamp: a publisher whose clock is
/// about to cross the 32-bit wrap, without waiting 49.7 days.
pub async fn publish_with_timestamp_offset(
    addr: std::net::SocketAddr,
    app: &str,
    key: &str,
    file: &Path,
    offset_ms: u32,
) {
    let mut schedule = schedule_in_real_time(file);
    for item in &mut schedule {
        item.tag.timestamp = item.tag.timestamp.wrapping_add(offset_ms);
    }
    publish_schedule(addr, app, key, &schedule).await;
}

/// The indexes of a file's streams of one kind (`v`, `a`), by ffprobe.
pub fn stream_indexes(file: &Path, kind: &str) -> Vec<u32> {
    let out = std::process::Command::new(require("ffprobe"))
        .args(["-v", "error", "-select_streams", kind])
        .args(["-show_entries", "stream=index", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The dts of every packet of a recording in ms, per stream index, in file order.
pub fn recording_dts(path: &Path) -> Vec<(u32, i64)> {
    let out = std::process::Command::new(require("ffprobe"))
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=stream_index,dts",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (index, dts) = l.split_once(',')?;
            Some((index.parse().ok()?, dts.trim().parse().ok()?))
        })
        .collect()
}

/// Points preset `preset` at `url` (a local ingest stand-in).
pub fn point_preset(config: &mut prism::Config, preset: &str, url: String) {
    config.presets.insert(
        preset.to_owned(),
        prism::presets::PresetOverride {
            url: Some(url),
            ..Default::default()
        },
    );
}

/// How long [`Prism::wait_destination`] waits for a destination's state, and how
/// often it looks.
pub const DESTINATION_WAIT: Duration = Duration::from_secs(30);
const DESTINATION_POLL: Duration = Duration::from_millis(50);

impl Prism {
    /// The status of destination `id` of the live stream `live/<stream>`.
    pub fn destination(
        &self,
        stream: &str,
        id: &str,
    ) -> Option<prism::relay::status::DestinationSnapshot> {
        self.app
            .as_ref()
            .unwrap()
            .relay()
            .destinations("live", stream)
            .into_iter()
            .find(|d| d.id == id)
    }

    /// Polls destination `id` until `done` holds, and returns that snapshot. Panics
    /// after [`DESTINATION_WAIT`] with the last status seen.
    pub async fn wait_destination(
        &self,
        stream: &str,
        id: &str,
        what: &str,
        done: impl Fn(&prism::relay::status::DestinationSnapshot) -> bool,
    ) -> prism::relay::status::DestinationSnapshot {
        let deadline = tokio::time::Instant::now() + DESTINATION_WAIT;
        let mut last = None;
        loop {
            if let Some(d) = self.destination(stream, id) {
                if done(&d) {
                    return d;
                }
                last = Some(d);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id}: {what} within {DESTINATION_WAIT:?}; last status: {last:#?}"
            );
            tokio::time::sleep(DESTINATION_POLL).await;
        }
    }
}

/// The PID of the running encoder of a destination, if any.
pub fn encoder_pid(d: &prism::relay::status::DestinationSnapshot) -> Option<u32> {
    d.encoder.as_ref().and_then(|e| e.pid)
}

/// Runs Debian's Chromium headless on `url` (the dashboard) with `args`, in a
/// profile directory of its own under `dir`, and returns its stdout. The
/// virtual-time budget lets the page's script fetch the status and render it.
pub async fn chromium(url: &str, dir: &Path, args: &[&str]) -> String {
    let output = tokio::process::Command::new(require("chromium"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("chromium finishes")
        .unwrap();
    assert!(output.status.success(), "chromium: {}", output.status);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `npm root -g`: where scripts/install-test-deps put playwright-core.
pub fn npm_root() -> String {
    let output = std::process::Command::new(require("npm"))
        .args(["root", "-g"])
        .output()
        .expect("npm runs");
    assert!(output.status.success(), "npm root -g");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Runs `tests/browser/<script>` with node and `args`, and returns the JSON
/// report it prints as its last line (panics on none) and whether it exited 0.
pub async fn run_browser_script(script: &str, args: &[&str]) -> (bool, serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let run = tokio::process::Command::new(require("node"))
        .arg(&path)
        .args(args)
        .env("NODE_PATH", npm_root())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser run finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report =
        serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap_or_else(|e| {
            panic!(
                "no report from {script} ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    (output.status.success(), report)
}

/// A light H.264 + AAC re-encode profile (`height` lines, `kbps`, ultrafast,
/// keyframes every 2 s like the built-ins) for tests that need profiles of
/// their own without a busy machine.
pub fn light_profile(height: u32, kbps: u32) -> prism::transcode::Profile {
    let text = format!(
        "-c:v libx264 -preset ultrafast -pix_fmt yuv420p -vf scale=-2:{height} \
         -b:v {kbps}k -maxrate {kbps}k -bufsize {}k \
         -force_key_frames expr:gte(t,n_forced*2) -sc_threshold 0 -c:a aac -b:a 64k",
        kbps * 2
    );
    prism::transcode::Profile {
        args: text.split_whitespace().map(str::to_owned).collect(),
    }
}

/// The decoded pictures' hashes of a file's video, in presentation order (what
/// a viewer sees; a remux through MPEG-TS changes the packets' bytes, H.264's
/// Annex B in place of length prefixes, but not one picture).
pub fn decoded_pictures(file: &Path) -> Vec<String> {
    decoded_pictures_with(&require("ffmpeg"), file)
}

/// [`decoded_pictures`], decoded by the given ffmpeg binary.
pub fn decoded_pictures_with(ffmpeg: &Path, file: &Path) -> Vec<String> {
    let out = std::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(file)
        .args([
            "-map",
            "0:v",
            "-fps_mode",
            "passthrough",
            "-f",
            "framemd5",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "decoding {file:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect()
}

/// Asserts that `recording` is `source` remuxed through MPEG-TS (an HTTP push of
/// MPEG-TS, an SRT publish): every picture, from the first, and the audio
/// packets byte for byte from the first video frame on (MPEG-TS muxing puts the
/// first AAC frame a little before it, and a destination starts at the
/// keyframe). Up to `tail_ms` at the end may be missing (an SRT caller's last
/// moments, held by the receiver for their delivery time when the close comes).
pub fn assert_remuxed_intact(source: &Path, recording: &Path, tail_ms: usize) {
    assert_remuxed_intact_with(&require("ffmpeg"), source, recording, tail_ms);
}

/// [`assert_remuxed_intact`], read by the given ffmpeg binary (one that reads
/// enhanced FLV, for HEVC).
pub fn assert_remuxed_intact_with(ffmpeg: &Path, source: &Path, recording: &Path, tail_ms: usize) {
    let (got, sent) = (
        decoded_pictures_with(ffmpeg, recording),
        decoded_pictures_with(ffmpeg, source),
    );
    // Each picture that arrived is the source's, in the source's order; the
    // ones missing are within `tail_ms` of the end. (Not a prefix: with
    // B-frames, a stream cut in decoding order misses a picture or two just
    // before its last one in display order.)
    let mut next = 0;
    let mut missing = Vec::new();
    for (i, picture) in got.iter().enumerate() {
        let at = sent[next..].iter().position(|s| s == picture);
        let at = at.unwrap_or_else(|| {
            panic!("picture {i} of the recording is not the source's (damaged, or out of order)")
        });
        missing.extend(next..next + at);
        next += at + 1;
    }
    missing.extend(next..sent.len());
    assert!(
        missing.iter().all(|m| (sent.len() - m) * 33 <= tail_ms),
        "{} pictures of {} arrived; missing (in display order): {missing:?}",
        got.len(),
        sent.len()
    );
    let audio = |frames: Vec<Frame>| -> Vec<String> {
        frames
            .into_iter()
            .filter(|f| f.stream == 1)
            .map(|f| f.hash)
            .collect()
    };
    let (got, sent) = (
        audio(framemd5_of_file_with(ffmpeg, recording)),
        audio(framemd5_of_file_with(ffmpeg, source)),
    );
    let start = got
        .first()
        .and_then(|first| sent.iter().position(|s| s == first))
        .expect("audio from the source arrived");
    let end = start + got.len();
    assert!(
        start <= 2 && sent.get(start..end) == Some(&got[..]) && (sent.len() - end) * 23 <= tail_ms,
        "audio packets {start}..{end} of {} arrived, or not the source's",
        sent.len()
    );
}
