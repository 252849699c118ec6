//! Uploading complete recordings to S3-compatible object storage
//! (`[record.upload]`), through the maintained `object_store` crate: SigV4
//! signing, multipart uploads for large files, its own retries of single
//! requests.
//!
//! One uploader per prism takes complete files from a queue, one at a time, so
//! uploads never compete with the relay for more than one connection's worth of
//! bandwidth and CPU. A file whose upload fails stays on disk and is tried again
//! later (delays doubling up to `retry_max_secs`), for as long as prism runs; the
//! queue, the attempts and the last error show in the API (`GET
//! /api/v1/uploads`) and the metrics. Nothing here ever waits on the recorder or
//! the relay, or makes them wait.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::{Backoff, BackoffPolicy};

/// The part of a file read and sent at a time; above it an upload is multipart
/// (S3's smallest part is 5 MiB).
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// The most failed and waiting uploads listed by the API (all are counted).
pub const MAX_LISTED: usize = 100;

/// `[record.upload]`: where complete recordings go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadConfig {
    /// `s3://BUCKET/PREFIX`: objects are named `PREFIX/APP/FILE`.
    pub url: String,
    /// An S3-compatible server (`http://127.0.0.1:9000`, MinIO, R2...); AWS when
    /// absent. Credentials come from the environment (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The bucket's region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Delete the local file once it is uploaded.
    #[serde(default)]
    pub delete_after_upload: bool,
    /// The longest wait between two attempts at a failing upload.
    #[serde(default = "default_retry_max_secs")]
    pub retry_max_secs: u64,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

fn default_retry_max_secs() -> u64 {
    300
}

/// Why the uploader could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UploadSetupError {
    /// The URL is not `s3://BUCKET[/PREFIX]`.
    #[error("record.upload.url must be s3://BUCKET[/PREFIX]")]
    Url,
    /// The HTTP client or the store could not be built.
    #[error("record.upload: {0}")]
    Store(String),
}

/// One file waiting for its upload.
#[derive(Debug, Clone, Serialize)]
pub struct PendingUpload {
    /// The local file.
    pub file: String,
    /// The object it becomes (`PREFIX/APP/FILE`).
    pub object: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// The uploads at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UploadsSnapshot {
    /// Files uploaded since prism started.
    pub uploaded: u64,
    /// Attempts that failed since prism started.
    pub failed_attempts: u64,
    /// Files waiting (the first [`MAX_LISTED`]), the one being sent first.
    pub pending: Vec<PendingUpload>,
    /// How many files wait.
    pub pending_count: usize,
}

#[derive(Debug)]
struct Job {
    file: PathBuf,
    object: object_store::path::Path,
    attempts: u32,
    last_error: Option<String>,
    backoff: Backoff,
    not_before: Instant,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Job>,
    uploaded: u64,
    failed_attempts: u64,
}

/// The journal of files not uploaded yet, in `[record] dir`: one `OBJECT<TAB>FILE`
/// line each, rewritten atomically whenever the queue changes, read at start, so
/// recordings left by a shutdown or a crash are uploaded by the next run.
pub const JOURNAL: &str = ".prism-uploads-pending";

/// The uploader: a queue and the task that works through it.
#[derive(Debug)]
pub struct Uploader {
    journal: PathBuf,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    delete_after_upload: bool,
    retry: BackoffPolicy,
    state: Mutex<State>,
    wake: Notify,
}

impl Uploader {
    /// Sets up the store for `config` with `tls` (the client configuration
    /// outbound RTMPS uses: ring, the same trusted roots), and queues again the
    /// files the journal in `dir` lists that are still there.
    pub fn new(
        config: &UploadConfig,
        tls: rustls::ClientConfig,
        dir: &std::path::Path,
    ) -> Result<Self, UploadSetupError> {
        let rest = config
            .url
            .strip_prefix("s3://")
            .ok_or(UploadSetupError::Url)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(UploadSetupError::Url);
        }
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("prism/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UploadSetupError::Store(e.without_url().to_string()))?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&config.region)
            .with_http_connector(Connector(client))
            .with_client_options(ClientOptions::new().with_timeout(Duration::from_secs(120)))
            // A few quick retries of one request (a dropped connection); a store
            // that stays down is this uploader's to wait for, file by file, with
            // its own backoff and visibly.
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(30),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder
            .build()
            .map_err(|e| UploadSetupError::Store(e.to_string()))?;
        let uploader = Self {
            journal: dir.join(JOURNAL),
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_owned(),
            delete_after_upload: config.delete_after_upload,
            retry: BackoffPolicy {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(config.retry_max_secs.max(1)),
                ..BackoffPolicy::default()
            },
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        };
        uploader.restore();
        Ok(uploader)
    }

    /// Queues the files the journal lists that still exist.
    fn restore(&self) {
        let Ok(text) = std::fs::read_to_string(&self.journal) else {
            return;
        };
        let mut restored = 0;
        {
            let mut state = self.lock();
            for line in text.lines() {
                let Some((object, file)) = line.split_once('\t') else {
                    continue;
                };
                let file = PathBuf::from(file);
                if file.is_file() {
                    state.queue.push_back(self.job(file, object.into()));
                    restored += 1;
                }
            }
            self.save(&state);
        }
        if restored > 0 {
            tracing::info!(
                files = restored,
                "recordings left by the last run queued for upload again"
            );
        }
    }

    /// Rewrites the journal from the queue (logged when it cannot be written:
    /// uploading goes on, only a restart would forget those files).
    fn save(&self, state: &State) {
        let text: String = state
            .queue
            .iter()
            .map(|job| format!("{}\t{}\n", job.object, job.file.display()))
            .collect();
        if let Some(parent) = self.journal.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if let Err(err) = crate::atomic_file::write_atomically(&self.journal, &text) {
            tracing::warn!(journal = %self.journal.display(), "uploads journal not written: {err}");
        }
    }

    fn job(&self, file: PathBuf, object: object_store::path::Path) -> Job {
        Job {
            file,
            object,
            attempts: 0,
            last_error: None,
            backoff: Backoff::new(self.retry),
            not_before: Instant::now(),
        }
    }

    /// Queues `file` (a complete recording of `app`) for upload.
    pub fn enqueue(&self, file: PathBuf, app: &str) {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let object = [self.prefix.as_str(), app, &name]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        let job = self.job(file, object_store::path::Path::from(object));
        {
            let mut state = self.lock();
            state.queue.push_back(job);
            self.save(&state);
        }
        self.wake.notify_one();
    }

    /// The queue and the counts now.
    pub fn snapshot(&self) -> UploadsSnapshot {
        let state = self.lock();
        UploadsSnapshot {
            uploaded: state.uploaded,
            failed_attempts: state.failed_attempts,
            pending_count: state.queue.len(),
            pending: state
                .queue
                .iter()
                .take(MAX_LISTED)
                .map(|job| PendingUpload {
                    file: job.file.display().to_string(),
                    object: job.object.to_string(),
                    attempts: job.attempts,
                    last_error: job.last_error.clone(),
                })
                .collect(),
        }
    }

    /// Starts the task that uploads, in `tracker`, until `shutdown` (files still
    /// waiting then stay on disk, in the journal, for the next run).
    pub fn spawn(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        let this = Arc::clone(self);
        tracker.spawn(async move {
            tokio::select! {
                () = this.run() => {}
                () = shutdown.cancelled() => {}
            }
            let left = this.lock().queue.len();
            if left > 0 {
                tracing::warn!(
                    files = left,
                    "recordings not uploaded before shutdown stay on disk; the next start uploads them"
                );
            }
        });
    }

    async fn run(&self) {
        loop {
            // The job whose time has come first; a new one wakes the wait.
            let next = {
                let state = self.lock();
                state
                    .queue
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, job)| job.not_before)
                    .map(|(at, job)| (at, job.file.clone(), job.object.clone(), job.not_before))
            };
            let Some((at, file, object, not_before)) = next else {
                self.wake.notified().await;
                continue;
            };
            if not_before > Instant::now() {
                tokio::select! {
                    () = tokio::time::sleep_until(not_before.into()) => {}
                    () = self.wake.notified() => {}
                }
                continue;
            }
            // Its own task: whatever goes wrong in one upload (even a panic in a
            // library) is that file's failed attempt, not the end of uploading.
            let store = Arc::clone(&self.store);
            let (source, target) = (file.clone(), object.clone());
            let result = tokio::spawn(async move { upload(store, &source, &target).await })
                .await
                .unwrap_or_else(|e| Err(format!("the upload task failed: {e}")));
            // Only this task removes jobs, so `at` still names this one.
            {
                let mut state = self.lock();
                match &result {
                    Ok(_) => {
                        state.queue.remove(at);
                        state.uploaded += 1;
                        self.save(&state);
                    }
                    Err(err) => {
                        state.failed_attempts += 1;
                        if let Some(job) = state.queue.get_mut(at) {
                            job.attempts += 1;
                            let delay = job.backoff.next_delay();
                            job.not_before = Instant::now() + delay;
                            job.last_error = Some(err.clone());
                            tracing::warn!(file = %file.display(), attempts = job.attempts, retry_in = ?delay, "recording upload failed: {err}");
                        }
                    }
                }
            };
            if let Ok(bytes) = result {
                tracing::info!(file = %file.display(), %object, bytes, "recording uploaded");
                if self.delete_after_upload
                    && let Err(err) = tokio::fs::remove_file(&file).await
                {
                    tracing::warn!(file = %file.display(), "uploaded recording not deleted: {err}");
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sends `file` as `object` (multipart above [`PART_BYTES`]) and checks that
/// the store holds as many bytes as the file; returns them.
async fn upload(
    store: Arc<dyn ObjectStore>,
    file: &std::path::Path,
    object: &object_store::path::Path,
) -> Result<u64, String> {
    let mut input = tokio::fs::File::open(file)
        .await
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let mut writer = BufWriter::with_capacity(Arc::clone(&store), object.clone(), PART_BYTES);
    let mut sent = 0u64;
    loop {
        let mut part = Vec::with_capacity(PART_BYTES);
        let read = (&mut input)
            .take(PART_BYTES as u64)
            .read_to_end(&mut part)
            .await
            .map_err(|e| format!("{}: {e}", file.display()));
        let read = match read {
            Ok(read) => read,
            Err(err) => {
                let _ = writer.abort().await;
                return Err(err);
            }
        };
        if read == 0 {
            break;
        }
        sent += read as u64;
        if let Err(err) = writer.put(Bytes::from(part)).await {
            let _ = writer.abort().await;
            return Err(err.to_string());
        }
    }
    // A failed completion is not aborted (the writer may not be aborted once
    // shut down): the store's lifecycle rules clean up an unfinished
    // multipart upload, and the next attempt starts a new one.
    tokio::io::AsyncWriteExt::shutdown(&mut writer)
        .await
        .map_err(|e| e.to_string())?;
    let stored = store.head(object).await.map_err(|e| e.to_string())?.size;
    if stored != sent {
        return Err(format!("the store holds {stored} bytes of {sent}"));
    }
    Ok(sent)
}

/// Hands `object_store` prism's own HTTP client (ring-based TLS with prism's
/// trusted roots) rather than letting it build one with another TLS stack.
#[derive(Debug)]
struct Connector(reqwest::Client);

impl object_store::client::HttpConnector for Connector {
    fn connect(
        &self,
        _options: &ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        Ok(object_store::client::HttpClient::new(self.0.clone()))
    }
}
