//! Playback names (issue 19, item 6): a player names a stream by its public name
//! (its user's name, or the stream id from the API), not by the secret key that
//! publishes it; playing by the key takes `rtmp.play_by_key = true`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

fn users_dir(tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("playback-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

async fn stream_ids(prism: &Prism) -> Vec<String> {
    let status = prism.streams_json().await;
    status["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// What a player that names `url` gets: its exit status and framemd5 output.
async fn play(url: &str) -> (std::process::ExitStatus, String) {
    finish(play_framemd5(url)).await
}

/// A player of `live/<user>` that connects before the user publishes waits, and
/// gets the user's stream, from its first keyframe, when they do; `live/<key>`
/// is refused at once (`NetStream.Play.StreamNotFound`), before and while live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_stream_plays_by_the_users_name_and_never_by_the_key() {
    let users = users_dir(
        "user",
        &[("grace.toml", "stream_key = \"grace-secret-key\"\n")],
    );
    let prism = Prism::start_with(|c| {
        c.users.dir = Some(users.clone());
        c.rtmp.play_by_key = false;
    })
    .await;
    let (refused, _) = play(&prism.url("live/grace-secret-key")).await;
    assert!(!refused.success(), "the key is not a playback name");
    let player = play_framemd5(&prism.url("live/grace"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let source = test_flv();
    let publisher = publish(&source, &prism.url("live/grace-secret-key"));
    prism.wait_live("live", "grace-secret-key").await;
    let (refused, _) = play(&prism.url("live/grace-secret-key")).await;
    assert!(!refused.success(), "not while live either");
    let (exit, _) = finish(publisher).await;
    assert!(exit.success());
    let (exit, out) = finish(player).await;
    assert!(exit.success(), "the waiting player got the stream: {exit}");
    // The user's stream, from a keyframe (it asserts that, whatever the index).
    assert_source_from_keyframe(&source, &parse_framemd5(&out));
    assert_logs_hide(&["grace-secret-key"]);
    prism.stop().await;
}

/// An anonymous stream plays by its id from the status API; an unknown name is
/// refused at once rather than left waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_stream_plays_by_its_id() {
    let prism = Prism::start_with(|c| c.rtmp.play_by_key = false).await;
    let (refused, _) = play(&prism.url("live/nobody")).await;
    assert!(!refused.success(), "nothing by that name");
    let source = clip(8);
    let publisher = publish(&source, &prism.url("live/anon-secret-key"));
    prism.wait_live("live", "anon-secret-key").await;
    let ids = stream_ids(&prism).await;
    assert_eq!(ids.len(), 1);
    // The dashboard shows what a player opens: the id, not the key.
    let addr = prism.app.as_ref().unwrap().http_addr();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("playback-dashboard");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dom = chromium(&format!("http://{addr}/"), &dir, &["--dump-dom"]).await;
    assert!(
        dom.contains(&format!("rtmp://127.0.0.1/live/{}", ids[0])),
        "the play URL on the dashboard:\n{dom}"
    );
    assert!(!dom.contains("anon-secret-key"));
    let (exit, out) = play(&prism.url(&format!("live/{}", ids[0]))).await;
    assert!(exit.success(), "played by id: {exit}");
    assert_source_from_keyframe(&source, &parse_framemd5(&out));
    let (refused, _) = play(&prism.url("live/anon-secret-key")).await;
    assert!(!refused.success(), "not by the key");
    let _ = finish(publisher).await;
    prism.stop().await;
}

/// With `rtmp.play_by_key = true`, the key plays too (as with nginx-rtmp).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playing_by_the_key_takes_the_switch() {
    let prism = Prism::start_with(|c| c.rtmp.play_by_key = true).await;
    let source = test_flv();
    let player = play_framemd5(&prism.url("live/switch-key"));
    prism.wait_subscribers("live", "switch-key", 1).await;
    let (exit, _) = finish(publish(&source, &prism.url("live/switch-key"))).await;
    assert!(exit.success());
    let (exit, out) = finish(player).await;
    assert!(exit.success());
    assert_source_from_keyframe(&source, &parse_framemd5(&out));
    prism.stop().await;
}
