//! Issue 19 item 12: what `prism serve` says at start (one line per loaded thing),
//! and what prism says about a `PRISM_*` variable that is not a configuration key.
//! The real binary, as an operator runs it, read through its stderr.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// How long a starting prism may take to log something (a loaded 2-core machine).
const LOG_TIMEOUT: Duration = Duration::from_secs(30);

fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("startup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `prism` with no `PRISM_*` variable from the test's own environment.
fn prism() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prism"));
    for (name, _) in std::env::vars_os() {
        if name
            .to_string_lossy()
            .to_ascii_uppercase()
            .starts_with("PRISM_")
        {
            command.env_remove(name);
        }
    }
    command.kill_on_drop(true).stdin(Stdio::null());
    command
}

/// A running `prism serve` and every stderr line it has written.
struct Serving {
    child: tokio::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Serving {
    async fn start(config: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let mut command = prism();
        command
            .args(["serve", "--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("PRISM_STANDBY__ENABLED", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("prism starts");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = std::sync::Arc::clone(&lines);
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                eprintln!("prism: {line}");
                keep.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// The first line containing every one of `parts`.
    async fn line(&self, parts: &[&str]) -> String {
        tokio::time::timeout(LOG_TIMEOUT, async {
            loop {
                let found = self
                    .lines
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|line| parts.iter().all(|part| line.contains(part)))
                    .cloned();
                if let Some(line) = found {
                    return line;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("prism never logged a line with {parts:?}"))
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let line = self.line(&["http listening", "http_addr="]).await;
        let addr = line.split("http_addr=").nth(1).unwrap().trim();
        http_get(addr, path).await
    }

    fn all(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// SIGTERM (by PID), then a clean exit.
    async fn stop(mut self) {
        let pid = libc::pid_t::try_from(self.child.id().unwrap()).unwrap();
        // SAFETY: kill(2) on the PID of our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("prism exits on SIGTERM")
            .unwrap();
        assert!(status.success(), "a clean exit on SIGTERM: {status}");
    }
}

/// `GET path` over plain HTTP/1.0 (the connection closes after the answer): the
/// status and body.
async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: prism\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    })
    .await
    .unwrap_or_else(|_| panic!("GET {path} answered within 10 s"));
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP status line: {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default();
    (status, body.to_owned())
}

/// The value of `key=` in a log line (quoted or not).
fn field(line: &str, key: &str) -> String {
    let rest = line
        .split(&format!(" {key}="))
        .nth(1)
        .unwrap_or_else(|| panic!("{key}= in {line}"));
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap().to_owned(),
        None => rest.split_whitespace().next().unwrap().to_owned(),
    }
}

/// `ffmpeg -version`'s first line, as the test itself sees it.
fn ffmpeg_version_line() -> String {
    let out = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .expect("ffmpeg runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_owned()
}

/// Where `ffmpeg` is on PATH, as the test itself finds it.
fn ffmpeg_on_path() -> std::path::PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join("ffmpeg"))
        .find(|path| path.is_file())
        .expect("ffmpeg on PATH")
}

/// At start, one line each: presets (count and ids, a configured one included),
/// users (count, and no stream key anywhere in the log), profiles (names, a
/// configured one included), and the ffmpeg found with the version it prints.
#[tokio::test]
async fn serve_logs_presets_users_profiles_and_ffmpeg_at_start() {
    let dir = test_dir("inventory");
    let users = dir.join("users");
    std::fs::create_dir_all(&users).unwrap();
    let keys = ["startup-key-alice-0001", "startup-key-bob-000002"];
    for (name, key) in ["alice", "bob"].iter().zip(keys) {
        std::fs::write(
            users.join(format!("{name}.toml")),
            format!(
                "name = \"{name}\"\nstream_key = \"{key}\"\n\n[[destinations]]\n\
                 url = \"rtmp://127.0.0.1:9/live/{name}\"\n"
            ),
        )
        .unwrap();
    }
    let config = dir.join("prism.toml");
    std::fs::write(
        &config,
        format!(
            "[users]\ndir = {users:?}\n\n[presets.mycdn]\nname = \"My CDN\"\n\
             url = \"rtmp://127.0.0.1:9/ingest\"\n\n[profiles.audioonly]\n\
             args = [\"-vn\", \"-c:a\", \"aac\"]\n"
        ),
    )
    .unwrap();
    let prism = Serving::start(&config, &[]).await;

    let presets = prism.line(&["presets loaded"]).await;
    assert_eq!(field(&presets, "count"), "6", "{presets}");
    let ids = field(&presets, "ids");
    let ids: Vec<&str> = ids.split(", ").collect();
    for id in ["facebook", "kick", "mycdn", "trovo", "twitch", "youtube"] {
        assert!(ids.contains(&id), "{id} in {presets}");
    }

    let users_line = prism.line(&["users loaded"]).await;
    assert_eq!(field(&users_line, "count"), "2", "{users_line}");
    assert_eq!(field(&users_line, "dir"), users.display().to_string());

    let profiles = prism.line(&["profiles loaded"]).await;
    let names = field(&profiles, "names");
    let names: Vec<&str> = names.split(", ").collect();
    for name in ["1080p30", "720p30", "audioonly", "h264"] {
        assert!(names.contains(&name), "{name} in {profiles}");
    }

    let ffmpeg = prism.line(&["ffmpeg found"]).await;
    assert_eq!(
        field(&ffmpeg, "path"),
        ffmpeg_on_path().display().to_string()
    );
    assert_eq!(field(&ffmpeg, "version"), ffmpeg_version_line());

    let (status, body) = prism.get("/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let log = prism.all();
    for key in keys {
        assert!(!log.contains(key), "a stream key in the log:\n{log}");
    }
    for what in [
        "presets loaded",
        "users loaded",
        "profiles loaded",
        "ffmpeg found",
    ] {
        assert_eq!(log.matches(what).count(), 1, "one {what:?} line:\n{log}");
    }
    prism.stop().await;
}

/// An ffmpeg that cannot run: a warning naming the binary that says re-encoding
/// and the standby slate are unavailable, and prism serves anyway.
#[tokio::test]
async fn serve_warns_at_start_when_ffmpeg_does_not_run_and_serves_anyway() {
    let dir = test_dir("no-ffmpeg");
    let config = dir.join("prism.toml");
    std::fs::write(&config, "").unwrap();
    let missing = dir.join("no-such-ffmpeg");
    let prism = Serving::start(
        &config,
        &[("PRISM_TRANSCODE__FFMPEG", missing.to_str().unwrap())],
    )
    .await;
    let warning = prism
        .line(&[
            "WARN",
            "re-encoding and the standby slate are unavailable",
            missing.to_str().unwrap(),
        ])
        .await;
    assert!(warning.contains("No such file"), "{warning}");
    let users = prism.line(&["users loaded"]).await;
    assert_eq!(field(&users, "count"), "0", "{users}");
    let (status, body) = prism.get("/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    assert!(!prism.all().contains("ffmpeg found"));
    prism.stop().await;
}

/// `prism ARGS` with `env` set, expected to refuse: exit status and stderr.
async fn refused(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = prism();
    command
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let out = tokio::time::timeout(LOG_TIMEOUT, command.output())
        .await
        .expect("prism refuses instead of starting")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A `PRISM_*` variable that is not a key (a wrapper script's `PRISM_BIN`, a
/// single underscore where two belong, a misspelt key) is refused, by `serve` and
/// `check-config` alike, with a message that names the variable, the key it would
/// set, the nearest real key and its variable, and how variables map to keys;
/// nothing listens. `PRISM_CONFIG` (the file) is not a key and is not refused.
#[tokio::test]
async fn an_unknown_prism_variable_is_refused_naming_it_and_the_nearest_key() {
    let serve = ["serve", "--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0"];
    let cases = [
        ("PRISM_BIN", "bin", None),
        (
            "PRISM_RELAY_CHUNK_SIZE",
            "relay_chunk_size",
            Some("`relay.chunk_size` (PRISM_RELAY__CHUNK_SIZE)"),
        ),
        (
            "PRISM_HTTP__TOKN",
            "http.tokn",
            Some("`http.token` (PRISM_HTTP__TOKEN)"),
        ),
        (
            "PRISM_PRESETS__YOUTUBE__UTL",
            "presets.youtube.utl",
            Some("`presets.youtube.url` (PRISM_PRESETS__YOUTUBE__URL)"),
        ),
    ];
    for (var, key, nearest) in cases {
        for args in [&serve[..], &["check-config"][..]] {
            let (code, stderr) = refused(args, &[(var, "1")]).await;
            assert_eq!(code, Some(2), "{var} with {args:?}: {stderr}");
            let message = stderr
                .lines()
                .find(|line| line.starts_with("prism: configuration:"))
                .unwrap_or_else(|| panic!("an error line for {var}: {stderr}"));
            assert!(
                message.contains(&format!(
                    "environment variable {var} is not a configuration key"
                )),
                "{message}"
            );
            assert!(message.contains(&format!("would set `{key}`")), "{message}");
            assert!(message.contains("the nearest key is `"), "{message}");
            if let Some(nearest) = nearest {
                assert!(
                    message.contains(&format!("the nearest key is {nearest}")),
                    "{message}"
                );
            }
            assert!(
                message.contains("PRISM_RELAY__CHUNK_SIZE -> relay.chunk_size"),
                "{message}"
            );
            assert!(
                message.contains(&format!("env -u {var} prism")),
                "{message}"
            );
            assert!(!stderr.contains("listening"), "{stderr}");
        }
    }

    // The configuration file by its variable: not a key, loaded as --config is.
    let dir = test_dir("config-var");
    let config = dir.join("prism.toml");
    std::fs::write(&config, "[relay]\nchunk_size = 8192\n").unwrap();
    let out = prism()
        .arg("check-config")
        .env("PRISM_CONFIG", &config)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let effective: toml::Value = toml::from_str(&stdout).unwrap();
    assert_eq!(effective["relay"]["chunk_size"].as_integer(), Some(8192));
}
