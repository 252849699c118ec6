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

#[tokio::test]
async fn check_config_accepts_defaults_and_refuses_a_bad_file() {
    let out = prism().arg("check-config").output().await.unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1935"), "prints the effective config: {text}");

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[rtmp]\nchunk_size = 5\n").unwrap();
    let out = prism()
        .arg("check-config")
        .arg("--config")
        .arg(&bad)
        .output()
        .await
        .unwrap();
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
