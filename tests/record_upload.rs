//! Recordings uploaded to a real S3-compatible server (`s3s-fs`, which checks
//! SigV4 signatures): prism runs as a child process with the credentials in its
//! environment, as an operator runs it. Uploads that fail while the store is
//! down show in the API and the metrics, are retried with backoff, and land when
//! it comes back, byte for byte, while the stream and its player lose nothing; a
//! recording larger than a part goes up in parts and its local file is deleted
//! afterwards when asked.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::child::ChildPrism;
use common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use common::*;
use serde_json::Value;

const BUCKET: &str = "prism-rec";
const WAIT: Duration = Duration::from_secs(60);

fn temp_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("upload-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(dir: &Path, endpoint: &str, segment_secs: u64, delete: bool) -> String {
    format!(
        "[record]\nenabled = true\ndir = \"{}\"\nsegment_secs = {segment_secs}\n\
         [record.upload]\nurl = \"s3://{BUCKET}/archive\"\nendpoint = \"{endpoint}\"\n\
         delete_after_upload = {delete}\nretry_max_secs = 2\n",
        dir.display()
    )
}

async fn start_prism(tag: &str, config: &str) -> ChildPrism {
    ChildPrism::start_with_env(
        tag,
        config,
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ],
    )
    .await
}

async fn uploads(prism: &ChildPrism) -> Value {
    serde_json::from_str(&prism.get("/api/v1/uploads").await).unwrap()
}

async fn wait_uploads(prism: &ChildPrism, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = uploads(prism).await;
        if done(&now) {
            return now;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {now:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn recordings(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("live"))
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_wait_for_a_store_that_is_down_and_land_byte_for_byte_when_it_is_back() {
    let dir = temp_dir("retry");
    let root = temp_dir("retry-store");
    // The store's port, known before it runs: prism retries against it.
    let port = common::sinks::pick_port();
    let prism = start_prism(
        "upload-retry",
        &config(&dir, &format!("http://127.0.0.1:{port}"), 2, false),
    )
    .await;
    let source = clip(8);
    let key = "upload-retry-key";
    let publisher = publish(&source, &prism.url(&format!("live/{key}")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let player = play_framemd5(&prism.url(&format!("live/{key}")));

    // Files complete every 2 s; their uploads fail while the store is down,
    // visibly, and recording and playing go on.
    let failing = wait_uploads(&prism, "failed attempts", |u| {
        u["failed_attempts"].as_u64() >= Some(1) && u["pending_count"].as_u64() >= Some(1)
    })
    .await;
    let pending = &failing["pending"][0];
    assert!(pending["attempts"].as_u64() >= Some(1), "{failing:#}");
    assert!(pending["last_error"].as_str().is_some(), "{failing:#}");
    assert!(
        pending["object"]
            .as_str()
            .unwrap()
            .starts_with("archive/live/"),
        "{failing:#}"
    );
    assert!(prism.gauge("prism_upload_failures_total").await >= 1.0);
    let (exit, _) = finish(publisher).await;
    assert!(exit.success());
    let (status, out) = finish(player).await;
    assert!(status.success());
    assert_source_from_keyframe(&source, &parse_framemd5(&out));

    // The store comes back: every file lands, as it is on disk.
    let store = S3Server::start(&root, BUCKET, port).await;
    let files = recordings(&dir);
    assert!(files.len() >= 3, "{files:?}");
    let done = wait_uploads(&prism, "every file uploaded", |u| {
        u["pending_count"] == 0 && u["uploaded"].as_u64() == Some(files.len() as u64)
    })
    .await;
    assert_eq!(done["pending"], serde_json::json!([]));
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        let stored = store
            .object(BUCKET, &format!("archive/live/{name}"))
            .unwrap_or_else(|| panic!("{name} not in the store"));
        assert!(stored == std::fs::read(file).unwrap(), "{name} differs");
    }
    assert_eq!(prism.gauge("prism_uploads_pending").await, 0.0);
    prism.stop().await;
    store.stop().await;
    for d in [&dir, &root] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_recording_goes_up_in_parts_and_is_deleted_locally_after() {
    let dir = temp_dir("large");
    let root = temp_dir("large-store");
    let store = S3Server::start(&root, BUCKET, 0).await;
    let prism = start_prism("upload-large", &config(&dir, &store.endpoint(), 0, true)).await;
    // About 10 MB at 4 Mbit/s: more than one 8 MiB part.
    let source = heavy_clip(20);
    let key = "upload-large-key";
    let publisher = publish(&source, &prism.url(&format!("live/{key}")));
    let (exit, _) = finish(publisher).await;
    assert!(exit.success());
    wait_uploads(&prism, "the file uploaded", |u| {
        u["uploaded"] == 1 && u["pending_count"] == 0
    })
    .await;
    // Deleted after the upload; the stored object is the recording.
    assert!(recordings(&dir).is_empty(), "{:?}", recordings(&dir));
    let stored: Vec<PathBuf> = std::fs::read_dir(root.join(BUCKET).join("archive/live"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let size = std::fs::metadata(&stored[0]).unwrap().len();
    assert!(size > 8 * 1024 * 1024, "{size} bytes");
    // What was stored plays back as the source: every packet.
    assert_eq!(framemd5_of_file(&stored[0]), framemd5_of_file(&source));
    let log = store.log();
    assert!(
        log.contains("CreateMultipartUpload") && log.contains("CompleteMultipartUpload"),
        "no multipart upload in the store's log"
    );
    prism.stop().await;
    store.stop().await;
    for d in [&dir, &root] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A recording whose upload had not happened when prism stopped is uploaded by
/// the next start: the queue is kept in a journal beside the recordings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_left_at_shutdown_are_uploaded_by_the_next_start() {
    let dir = temp_dir("restart");
    let root = temp_dir("restart-store");
    let port = common::sinks::pick_port();
    let settings = config(&dir, &format!("http://127.0.0.1:{port}"), 0, false);
    let prism = start_prism("upload-restart-1", &settings).await;
    let publisher = publish(&clip(3), &prism.url("live/upload-restart-key"));
    let (exit, _) = finish(publisher).await;
    assert!(exit.success());
    wait_uploads(&prism, "a failed attempt", |u| {
        u["pending_count"] == 1 && u["failed_attempts"].as_u64() >= Some(1)
    })
    .await;
    prism.stop().await;
    let files = recordings(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let journal = std::fs::read_to_string(dir.join(".prism-uploads-pending")).unwrap();
    assert!(journal.contains(files[0].to_str().unwrap()), "{journal}");

    let store = S3Server::start(&root, BUCKET, port).await;
    let prism = start_prism("upload-restart-2", &settings).await;
    wait_uploads(&prism, "the file left by the last run", |u| {
        u["pending_count"] == 0 && u["uploaded"] == 1
    })
    .await;
    let name = files[0].file_name().unwrap().to_str().unwrap();
    let stored = store
        .object(BUCKET, &format!("archive/live/{name}"))
        .unwrap();
    assert!(
        stored == std::fs::read(&files[0]).unwrap(),
        "the same bytes"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join(".prism-uploads-pending")).unwrap(),
        "",
        "nothing left to upload"
    );
    prism.stop().await;
    store.stop().await;
    for d in [&dir, &root] {
        let _ = std::fs::remove_dir_all(d);
    }
}
