//! The `prism` binary as an operator runs it: flags, config check, signals.

mod common;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn prism() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prism"));
    command.kill_on_drop(true).stdin(Stdio::null());
    command
}

#[tokio::test]
async fn serve_listens_where_told_publishes_work_and_sigterm_stops_it() {
    let mut child = prism()
        .args(["serve", "--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        // ffprobe below reads the stream by its key (tests/playback.rs has the
        // default: by its public name only).
        .env("PRISM_RTMP__PLAY_BY_KEY", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prism starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("rtmp_addr=").nth(1) {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("prism exited without logging its address");
    })
    .await
    .expect("prism logs its listen address");
    // Keep draining stderr so prism never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let clip = common::test_flv();
    let url = format!("rtmp://{addr}/live/cli");
    let publisher = common::publish(&clip, &url);
    let probe = common::spawn(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &url,
        ],
    );
    let (status, out) = common::finish(probe).await;
    assert!(status.success(), "ffprobe read the live stream");
    assert!(
        out.contains("h264") && out.contains("aac"),
        "ffprobe saw {out}"
    );
    drop(publisher);

    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("prism exits within its grace period")
        .unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}

/// `prism check-config --config FILE`.
async fn check_config(file: &std::path::Path) -> std::process::Output {
    prism()
        .arg("check-config")
        .arg("--config")
        .arg(file)
        // RUST_LOG, when valid, overrides log.level.
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn check_config_accepts_defaults_and_refuses_a_bad_file() {
    let out = prism().arg("check-config").output().await.unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("[rtmp]") && text.contains("listen = \"0.0.0.0:1935\""),
        "prints the effective config as TOML: {text}"
    );

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The output is a configuration file that gives the same values, here ones
    // that differ from the defaults.
    let changed = dir.join("changed.toml");
    std::fs::write(
        &changed,
        "[rtmp]\nlisten = \"127.0.0.1:2936\"\n[relay]\nchunk_size = 8192\n",
    )
    .unwrap();
    let out = check_config(&changed).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("2936") && text.contains("8192"), "{text}");
    let printed = dir.join("printed.toml");
    std::fs::write(&printed, &text).unwrap();
    let out = check_config(&printed).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);
    // Secrets are masked.
    let secret = dir.join("secret.toml");
    std::fs::write(
        &secret,
        "[http]\ntoken = \"api-token-0123456789\"\n\
         [auth]\npublish_url = \"https://auth.example/on_publish?secret=cb-token-42\"\n\
         [hls]\ntoken_secret = \"hls-secret-0123456789-0123456789-xx\"\n",
    )
    .unwrap();
    let out = check_config(&secret).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("token = \"****"), "{text}");
    assert!(
        text.contains("https://auth.example/on_publish?secret="),
        "{text}"
    );
    assert!(
        !text.contains("api-token") && !text.contains("cb-token") && !text.contains("hls-secret"),
        "{text}"
    );
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[rtmp]\nchunk_size = 5\n").unwrap();
    let out = check_config(&bad).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rtmp.chunk_size"), "names the bad key: {err}");

    let out = prism()
        .arg("check-config")
        .env("PRISM_RTMP__LISTEN", "127.0.0.1:2935")
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2935"),
        "PRISM_* overrides"
    );
}

#[tokio::test]
async fn sighup_reloads_user_files_and_a_broken_file_keeps_the_old_ones() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("reload-{}", std::process::id()));
    let users = dir.join("users");
    std::fs::create_dir_all(&users).unwrap();
    std::fs::write(users.join("a.toml"), "stream_key = \"user-a-key-1\"\n").unwrap();
    let config = dir.join("prism.toml");
    std::fs::write(&config, format!("[users]\ndir = \"{}\"\n", users.display())).unwrap();
    let Served {
        mut child,
        lines: mut lines_rx,
        rtmp: addr,
        ..
    } = serve(&config).await;
    let clip = common::clip(2);
    let publish_ok = |key: &str| {
        let child = common::publish(&clip, &format!("rtmp://{addr}/live/{key}"));
        async move { common::finish(child).await.0.success() }
    };
    assert!(publish_ok("user-a-key-1").await, "user a may publish");
    assert!(!publish_ok("user-b-key-2").await, "user b is unknown");

    std::fs::write(users.join("b.toml"), "stream_key = \"user-b-key-2\"\n").unwrap();
    signal(&child, "-HUP");
    wait_line(&mut lines_rx, "reloaded").await;
    assert!(
        publish_ok("user-b-key-2").await,
        "user b may publish after the reload"
    );

    std::fs::write(users.join("c.toml"), "stream_key = \"broken\n").unwrap();
    signal(&child, "-HUP");
    let refused = wait_line(&mut lines_rx, "reload refused").await;
    assert!(
        refused.contains("c.toml"),
        "the error names the broken file: {refused}"
    );
    assert!(
        publish_ok("user-a-key-1").await,
        "the previous configuration stays"
    );

    terminate(&mut child).await;
}

/// SIGTERM, then a clean exit within prism's shutdown grace period.
async fn terminate(child: &mut tokio::process::Child) {
    signal(child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("prism exits within its grace period")
        .unwrap();
    assert!(status.success(), "a clean exit on SIGTERM: {status}");
}

fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// A running `prism serve` (RTMP and HTTP on port 0) and what it logged.
struct Served {
    child: tokio::process::Child,
    /// Its stderr lines after the listen addresses.
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    rtmp: String,
    http: String,
}

/// Starts `prism serve --config config` on port 0 (without any token from the
/// environment) and reads the addresses it logs.
async fn serve(config: &std::path::Path) -> Served {
    let mut child = prism()
        .args(["serve", "--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env_remove("PRISM_HTTP__TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prism starts");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            let _ = lines_tx.send(line);
        }
    });
    let http = field(&wait_line(&mut lines, "http_addr=").await, "http_addr=");
    let rtmp = field(&wait_line(&mut lines, "rtmp_addr=").await, "rtmp_addr=");
    Served {
        child,
        lines,
        rtmp,
        http,
    }
}

/// The value after `key` in a log line.
fn field(line: &str, key: &str) -> String {
    line.split(key)
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// The first line from prism's stderr that contains `needle`.
async fn wait_line(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, needle: &str) -> String {
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = rx.recv().await {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("prism exited before logging {needle:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {needle:?}"))
}

#[tokio::test]
async fn prism_reload_asks_the_running_prism_and_says_clearly_when_it_cannot() {
    const TOKEN: &str = "cli-reload-token-0123456789";
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-reload-{}", std::process::id()));
    let users = dir.join("users");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&users).unwrap();
    std::fs::write(users.join("a.toml"), "stream_key = \"cli-user-a-key\"\n").unwrap();
    let config = dir.join("prism.toml");
    std::fs::write(
        &config,
        format!(
            "[users]\ndir = \"{}\"\n[http]\ntoken = \"{TOKEN}\"\n",
            users.display()
        ),
    )
    .unwrap();
    let Served {
        mut child,
        lines: mut lines_rx,
        rtmp,
        http,
    } = serve(&config).await;
    // `prism reload` finds prism from the same config file and flags.
    let reload = |extra_env: Option<(&str, &str)>| {
        let mut command = prism();
        command
            .args(["reload", "--http", &http, "--config"])
            .arg(&config)
            .env_remove("PRISM_HTTP__TOKEN");
        if let Some((key, value)) = extra_env {
            command.env(key, value);
        }
        async move {
            tokio::time::timeout(Duration::from_secs(60), command.output())
                .await
                .expect("prism reload answers in time")
                .unwrap()
        }
    };
    let clip = common::clip(2);
    let publish_ok = |key: &str| {
        let child = common::publish(&clip, &format!("rtmp://{rtmp}/live/{key}"));
        async move { common::finish(child).await.0.success() }
    };
    assert!(!publish_ok("cli-user-b-key").await, "user b is unknown");

    std::fs::write(users.join("b.toml"), "stream_key = \"cli-user-b-key\"\n").unwrap();
    let out = reload(None).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "reload succeeds: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("2 users"),
        "says what it reloaded: {stdout}"
    );
    wait_line(&mut lines_rx, "reloaded").await;
    assert!(
        publish_ok("cli-user-b-key").await,
        "user b publishes after the reload"
    );

    // A wrong token (from the environment, as PRISM_HTTP__TOKEN overrides the file).
    let out = reload(Some(("PRISM_HTTP__TOKEN", "a-wrong-token-0123456789"))).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused") && stderr.contains("401"),
        "{stderr}"
    );

    // A broken file: refused, named, and the old configuration stays.
    std::fs::write(users.join("c.toml"), "stream_key = \"broken\n").unwrap();
    let out = reload(None).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("c.toml") && stderr.contains("previous configuration stays"),
        "names the broken file: {stderr}"
    );
    assert!(publish_ok("cli-user-b-key").await, "b still publishes");

    terminate(&mut child).await;

    // Nothing listens any more.
    let out = reload(None).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach prism"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGTERM while a stream is relayed: every destination gets FCUnpublish and
/// deleteStream before its connection closes (platforms end the broadcast
/// cleanly instead of waiting for a dropped one), the publisher is let go, and
/// prism exits within its grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_unpublishes_every_destination_cleanly_and_exits() {
    let youtube = common::sinks::NginxSink::start("live2").await;
    let twitch = common::sinks::NginxSink::start("app").await;
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prism.toml");
    std::fs::write(
        &config,
        format!(
            "[presets.youtube]\nurl = \"{}\"\n[presets.twitch]\nurl = \"{}\"\n",
            youtube.url(),
            twitch.url()
        ),
    )
    .unwrap();
    let Served {
        mut child,
        rtmp: addr,
        ..
    } = serve(&config).await;

    let clip = common::clip(30);
    let publisher = common::publish(
        &clip,
        &format!("rtmp://{addr}/live/term-source?youtube=yt-term-key&twitch=tw-term-key"),
    );
    youtube
        .wait_publishing("yt-term-key", Duration::from_secs(20))
        .await;
    twitch
        .wait_publishing("tw-term-key", Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    terminate(&mut child).await;
    assert!(
        youtube.saw_clean_unpublish("yt-term-key").await,
        "youtube got deleteStream before the close"
    );
    assert!(
        twitch.saw_clean_unpublish("tw-term-key").await,
        "twitch got deleteStream before the close"
    );
    // The encoder is let go at once rather than left to time out.
    tokio::time::timeout(Duration::from_secs(10), common::finish(publisher))
        .await
        .expect("the publisher's connection ends with prism");
}

/// A fresh directory for one test's files.
fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `prism: ...` lines a finished prism wrote to stderr (its own error lines,
/// not log lines).
fn error_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|line| line.starts_with("prism: "))
        .map(str::to_owned)
        .collect()
}

/// `prism serve --config file` on port 0, expected to refuse to start: its exit
/// status and error lines.
async fn serve_refusing(file: &std::path::Path) -> (std::process::ExitStatus, Vec<String>) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        prism()
            .args(["serve", "--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--config")
            .arg(file)
            .env_remove("PRISM_HTTP__TOKEN")
            .env_remove("RUST_LOG")
            .output(),
    )
    .await
    .expect("serve refuses this configuration instead of starting")
    .unwrap();
    (out.status, error_lines(&out.stderr))
}

/// Issue 19 bug 2: `check-config` exited 0 on configurations that `serve` refuses.
/// Each one now fails both the same way, with the same message.
#[tokio::test]
async fn check_config_refuses_what_serve_refuses_with_the_same_message() {
    let dir = test_dir("check-serve");
    // A users folder that does not exist.
    let missing_users = dir.join("missing-users.toml");
    std::fs::write(
        &missing_users,
        format!("[users]\ndir = \"{}\"\n", dir.join("no-such-dir").display()),
    )
    .unwrap();
    // A user file naming a preset prism does not know.
    let users = dir.join("users");
    std::fs::create_dir_all(&users).unwrap();
    std::fs::write(
        users.join("alice.toml"),
        "stream_key = \"alice-key-0123\"\n[[destinations]]\npreset = \"youtub\"\nkey = \"yt-key-0123\"\n",
    )
    .unwrap();
    let unknown_preset = dir.join("unknown-preset.toml");
    std::fs::write(
        &unknown_preset,
        format!("[users]\ndir = \"{}\"\n", users.display()),
    )
    .unwrap();
    // A preset whose URL is not RTMP.
    let http_preset = dir.join("http-preset.toml");
    std::fs::write(
        &http_preset,
        "[presets.youtube]\nurl = \"http://a.rtmp.youtube.com/live2\"\n",
    )
    .unwrap();

    // A log level filter that does not parse.
    let bad_level = dir.join("bad-level.toml");
    std::fs::write(&bad_level, "[log]\nlevel = \"info,prism=loud=yes\"\n").unwrap();

    for (file, names) in [
        (&missing_users, "no-such-dir"),
        (&unknown_preset, "youtub"),
        (&http_preset, "http"),
        (&bad_level, "log.level"),
    ] {
        let check = check_config(file).await;
        let checked = error_lines(&check.stderr);
        let (served, refused) = serve_refusing(file).await;
        assert!(!served.success(), "serve refuses {}", file.display());
        assert!(
            !check.status.success(),
            "check-config refuses {} as serve does ({refused:?}); stdout: {}",
            file.display(),
            String::from_utf8_lossy(&check.stdout)
        );
        assert_eq!(check.status.code(), served.code(), "the same exit status");
        assert_eq!(checked, refused, "the same message");
        assert_eq!(checked.len(), 1, "{checked:?}");
        assert!(checked[0].contains(names), "{checked:?}");
        assert!(check.stdout.is_empty(), "no configuration printed");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 19 bug 2: `check-config` did not check that ffmpeg runs. A binary that is
/// not there, or is not ffmpeg, is refused by name; the real one is reported.
#[tokio::test]
async fn check_config_refuses_an_ffmpeg_that_does_not_run() {
    let dir = test_dir("check-ffmpeg");
    let missing = dir.join("missing-ffmpeg.toml");
    let nonexistent = dir.join("no-such-ffmpeg");
    std::fs::write(
        &missing,
        format!("[transcode]\nffmpeg = \"{}\"\n", nonexistent.display()),
    )
    .unwrap();
    let out = check_config(&missing).await;
    assert_eq!(out.status.code(), Some(1));
    let err = error_lines(&out.stderr).join("\n");
    assert!(
        err.contains("transcode.ffmpeg") && err.contains(&nonexistent.display().to_string()),
        "names the setting and the binary: {err}"
    );
    assert!(out.stdout.is_empty());

    // Something that runs but is not ffmpeg.
    let not_ffmpeg = dir.join("not-ffmpeg.toml");
    std::fs::write(&not_ffmpeg, "[transcode]\nffmpeg = \"false\"\n").unwrap();
    let out = check_config(&not_ffmpeg).await;
    assert_eq!(out.status.code(), Some(1));
    let err = error_lines(&out.stderr).join("\n");
    assert!(err.contains("transcode.ffmpeg"), "{err}");

    // The real one: accepted, and its version said.
    let real = dir.join("real-ffmpeg.toml");
    let ffmpeg = common::require("ffmpeg");
    std::fs::write(
        &real,
        format!("[transcode]\nffmpeg = \"{}\"\n", ffmpeg.display()),
    )
    .unwrap();
    let out = check_config(&real).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = error_lines(&out.stderr).join("\n");
    assert!(said.contains("ffmpeg version"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 19 bug 5: `prism reload --config OTHER.toml` reloaded the server's own
/// file. It is refused now, nothing read or applied, and the answer names both
/// files; the server's own file (in another spelling) still reloads.
#[tokio::test]
async fn reload_refuses_a_config_file_other_than_the_servers() {
    const TOKEN: &str = "cli-other-token-0123456789";
    let dir = test_dir("cli-reload-other");
    let users = dir.join("users");
    let other_users = dir.join("other-users");
    std::fs::create_dir_all(&users).unwrap();
    std::fs::create_dir_all(&other_users).unwrap();
    std::fs::write(users.join("a.toml"), "stream_key = \"other-user-a-key\"\n").unwrap();
    std::fs::write(
        other_users.join("b.toml"),
        "stream_key = \"other-user-b-key\"\n",
    )
    .unwrap();
    let config = dir.join("prism.toml");
    let other = dir.join("other.toml");
    for (file, users) in [(&config, &users), (&other, &other_users)] {
        std::fs::write(
            file,
            format!(
                "[users]\ndir = \"{}\"\n[http]\ntoken = \"{TOKEN}\"\n",
                users.display()
            ),
        )
        .unwrap();
    }
    let Served {
        mut child,
        rtmp,
        http,
        ..
    } = serve(&config).await;
    let reload = |file: std::path::PathBuf| {
        let mut command = prism();
        command
            .args(["reload", "--http", &http, "--config"])
            .arg(file)
            .env_remove("PRISM_HTTP__TOKEN");
        async move {
            tokio::time::timeout(Duration::from_secs(60), command.output())
                .await
                .expect("prism reload answers in time")
                .unwrap()
        }
    };
    let clip = common::clip(2);
    let publish_ok = |key: &str| {
        let child = common::publish(&clip, &format!("rtmp://{rtmp}/live/{key}"));
        async move { common::finish(child).await.0.success() }
    };

    let out = reload(other.clone()).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("409"), "{stderr}");
    assert!(
        stderr.contains(&other.display().to_string())
            && stderr.contains(&config.canonicalize().unwrap().display().to_string()),
        "names the file asked for and the one prism runs with: {stderr}"
    );
    assert!(out.stdout.is_empty());
    assert!(
        !publish_ok("other-user-b-key").await,
        "nothing of the other file applied"
    );
    assert!(
        publish_ok("other-user-a-key").await,
        "the running users stay"
    );

    // The server's own file, spelled differently, reloads, and says which file.
    let same = dir.join("users").join("..").join("prism.toml");
    let out = reload(same).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&config.canonicalize().unwrap().display().to_string()),
        "says which file it re-read: {stdout}"
    );

    terminate(&mut child).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `prism fingerprint KEY` (or the key on stdin).
async fn fingerprint(key: &str, on_stdin: bool) -> String {
    let mut command = prism();
    command.arg("fingerprint");
    if on_stdin {
        command.stdin(Stdio::piped());
    } else {
        command.arg(key);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if on_stdin {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{key}\n").as_bytes())
            .await
            .unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// Issue 19 bug 4: the README's mask example read like a key's last characters.
/// `prism fingerprint` prints exactly the mask that the status API shows for a live
/// stream's key and its destination's key, from an argument or from stdin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprint_prints_the_mask_the_status_api_shows() {
    const STREAM_KEY: &str = "fp-stream-key-0123";
    const DEST_KEY: &str = "fp-dest-key-4567";
    let sink = common::sinks::NginxSink::start("live2").await;
    let dir = test_dir("cli-fingerprint");
    let config = dir.join("prism.toml");
    std::fs::write(
        &config,
        format!("[presets.youtube]\nurl = \"{}\"\n", sink.url()),
    )
    .unwrap();
    let Served {
        mut child,
        rtmp,
        http,
        ..
    } = serve(&config).await;
    let clip = common::clip(30);
    let publisher = common::publish(
        &clip,
        &format!("rtmp://{rtmp}/live/{STREAM_KEY}?youtube={DEST_KEY}"),
    );
    sink.wait_publishing(DEST_KEY, Duration::from_secs(20))
        .await;
    let status = common::http_client()
        .get(format!("http://{http}/api/v1/streams"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    drop(publisher);

    let stream_mask = fingerprint(STREAM_KEY, false).await;
    let dest_mask = fingerprint(DEST_KEY, false).await;
    assert!(stream_mask.starts_with("****") && stream_mask.len() == 8);
    assert_ne!(stream_mask, dest_mask);
    assert_eq!(fingerprint(STREAM_KEY, true).await, stream_mask, "stdin");
    let streams: serde_json::Value = serde_json::from_str(&status).unwrap();
    let stream = &streams["streams"][0];
    assert_eq!(stream["name"], stream_mask.as_str(), "{status}");
    let url = stream["destinations"][0]["url"].as_str().unwrap();
    assert!(url.ends_with(&format!("/{dest_mask}")), "{status}");
    assert!(
        !status.contains(STREAM_KEY) && !status.contains(DEST_KEY),
        "{status}"
    );

    terminate(&mut child).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 22: a cluster node on a wildcard address with nothing advertised cannot be
/// reached by the other nodes; check-config says so (serve refuses at start with
/// the same error, made by the same function) without binding anything.
#[tokio::test]
async fn check_config_refuses_a_cluster_node_nobody_can_reach() {
    let dir = test_dir("check-cluster");
    let file = dir.join("cluster.toml");
    std::fs::write(
        &file,
        "[rtmp]\nlisten = \"0.0.0.0:1935\"\n[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n",
    )
    .unwrap();
    let check = check_config(&file).await;
    assert!(!check.status.success());
    let lines = error_lines(&check.stderr);
    assert!(
        lines.iter().any(|l| l.contains("cluster.advertise_rtmp")),
        "{lines:?}"
    );
    std::fs::write(
        &file,
        "[rtmp]\nlisten = \"0.0.0.0:1935\"\n[http]\nlisten = \"127.0.0.1:8080\"\n\
         [cluster]\nredis_url = \"redis://:secret-pass@127.0.0.1:6379\"\nadvertise_rtmp = \"10.0.0.1:1935\"\n",
    )
    .unwrap();
    let check = check_config(&file).await;
    assert!(check.status.success(), "{:?}", error_lines(&check.stderr));
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(
        printed.contains("advertise_rtmp = \"10.0.0.1:1935\""),
        "{printed}"
    );
    assert!(
        !printed.contains("secret-pass"),
        "the Redis password is masked: {printed}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
