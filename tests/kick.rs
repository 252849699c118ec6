//! Issue 19, item 11: a kicked publisher is told why, and a kick may disable its
//! key for a while so that the encoder's automatic reconnect does not come
//! straight back.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::AsyncReadExt;

/// An ffmpeg publisher whose stderr (where it prints the server's status
/// descriptions) the test reads.
fn publisher(url: &str) -> tokio::process::Child {
    let clip = clip(20);
    tokio::process::Command::new(require("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(&clip)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn ends_with_stderr(mut child: tokio::process::Child) -> (std::process::ExitStatus, String) {
    let mut stderr = child.stderr.take().unwrap();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        stderr.read_to_string(&mut text).await.unwrap();
        let status = child.wait().await.unwrap();
        (status, text)
    })
    .await
    .expect("the publisher ends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_publisher_is_told_why_and_a_ban_keeps_its_key_out_until_it_ends() {
    let prism = Prism::start_with(|c| c.http.token = Some("operator".into())).await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let url = prism.url("live/kicked-key");
    let first = publisher(&url);
    prism.wait_live("live", "kicked-key").await;
    let status = prism.streams_json().await;
    let id = status["streams"][0]["id"].as_str().unwrap().to_owned();
    let too_long = http_client()
        .delete(format!(
            "http://{http}/api/v1/streams/{id}?ban_secs=9999999"
        ))
        .bearer_auth("operator")
        .send()
        .await
        .unwrap();
    assert_eq!(too_long.status(), 400, "a ban is at most a week");
    let kicked = http_client()
        .delete(format!("http://{http}/api/v1/streams/{id}?ban_secs=3"))
        .bearer_auth("operator")
        .send()
        .await
        .unwrap();
    assert_eq!(kicked.status(), 204);
    let (exit, stderr) = ends_with_stderr(first).await;
    assert!(!exit.success());
    assert!(
        stderr.contains("disconnected by the operator"),
        "the encoder was told why: {stderr}"
    );
    // OBS comes back at once: refused while the ban lasts.
    let (exit, stderr) = ends_with_stderr(publisher(&url)).await;
    assert!(!exit.success(), "refused while banned");
    assert!(stderr.contains("disabled for now"), "{stderr}");
    assert!(!prism.hub().is_live("live", "kicked-key"));
    // After it, the key publishes again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = publisher(&url);
    prism.wait_live("live", "kicked-key").await;
    drop(again);
    assert_logs_hide(&["kicked-key"]);
    prism.stop().await;
}
