//! [`SlateCache`]: rendered slates by (spec, source file), prepared in the
//! background when a stream goes live so that the switch to standby is instant.
//!
//! Rendering is ffmpeg CPU, so one render runs at a time (a stream going live on a
//! small machine must not starve the relay), every render is a task in the shutdown
//! tree, and a failure is remembered with its reason for a minute so that a stream
//! whose slate cannot be made does not run a failing ffmpeg on every drop. The cache
//! is bounded in entries and payload bytes; the least recently used slate goes first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::render::render;
use super::slate::Slate;
use super::spec::SlateSpec;

/// Entries kept (ready, failed and rendering).
pub const MAX_ENTRIES: usize = 16;
/// Payload bytes of ready slates kept.
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
/// How long a failed render is remembered before it may be tried again.
pub const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);

type Key = (SlateSpec, Option<PathBuf>);

enum State {
    Rendering,
    Ready(Arc<Slate>),
    Failed { reason: String, at: Instant },
}

struct Entry {
    state: State,
    /// The cache's clock when last asked for: the least recent goes first.
    used: u64,
    render_ms: Option<u64>,
}

/// Why `get` has no slate; its Display is the reason, for the stream's status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlateUnavailable {
    /// The render did not finish within the wait.
    #[error("the standby slate is still rendering")]
    Rendering,
    /// The render failed (remembered for a minute).
    #[error("{0}")]
    Failed(String),
    /// prism is stopping.
    #[error("prism is shutting down")]
    ShuttingDown,
}

/// One entry of the cache, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachedSlate {
    /// The spec's summary (`h264 high 1920x1080@60 aac 48000Hz 2ch`).
    pub spec: String,
    /// The title drawn on the card.
    pub title: String,
    /// The operator's file, if any.
    pub source: Option<String>,
    /// `ready`, `rendering` or `failed`.
    pub state: &'static str,
    /// Why it failed.
    pub reason: Option<String>,
    /// Payload bytes held.
    pub bytes: usize,
    /// The loop's length.
    pub loop_ms: Option<u32>,
    /// Wall time of its render.
    pub render_ms: Option<u64>,
}

/// Rendered slates, shared by every stream (see the module doc).
pub struct SlateCache {
    ffmpeg: PathBuf,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    entries: Mutex<HashMap<Key, Entry>>,
    /// One render at a time.
    slots: Semaphore,
    /// Woken whenever a render ends.
    done: Notify,
    clock: AtomicU64,
    renders: AtomicU64,
}

impl std::fmt::Debug for SlateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlateCache")
            .field("ffmpeg", &self.ffmpeg)
            .field("entries", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl SlateCache {
    /// A cache rendering with `ffmpeg`, its renders tasks of `tracker`, cancelled by
    /// `shutdown`.
    pub fn new(ffmpeg: PathBuf, tracker: TaskTracker, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            ffmpeg,
            tracker,
            shutdown,
            entries: Mutex::new(HashMap::new()),
            slots: Semaphore::new(1),
            done: Notify::new(),
            clock: AtomicU64::new(0),
            renders: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    /// Renders started so far (a failed one remembered is not started again).
    pub fn renders(&self) -> u64 {
        self.renders.load(Ordering::Relaxed)
    }

    /// Starts rendering `spec` in the background (a task in `tracker`) unless it is
    /// cached or rendering already. Cheap to call again.
    pub fn prepare(self: &Arc<Self>, spec: SlateSpec, source: Option<PathBuf>) {
        let key = (spec, source);
        let mut entries = self.lock();
        self.start_if_needed(&mut entries, &key);
    }

    /// Starts a render of `key` unless it is ready, rendering or failed recently.
    fn start_if_needed(self: &Arc<Self>, entries: &mut HashMap<Key, Entry>, key: &Key) {
        let used = self.tick();
        if let Some(entry) = entries.get_mut(key) {
            entry.used = used;
            match &entry.state {
                State::Ready(_) | State::Rendering => return,
                State::Failed { at, .. } if at.elapsed() < RETRY_FAILED_AFTER => return,
                State::Failed { .. } => {}
            }
        }
        if self.shutdown.is_cancelled() {
            return;
        }
        entries.insert(
            key.clone(),
            Entry {
                state: State::Rendering,
                used,
                render_ms: None,
            },
        );
        let cache = Arc::clone(self);
        let key = key.clone();
        self.tracker
            .spawn(async move { cache.render_task(key).await });
    }

    async fn render_task(self: Arc<Self>, key: Key) {
        let permit = tokio::select! {
            permit = self.slots.acquire() => permit.ok(),
            () = self.shutdown.cancelled() => None,
        };
        let state = match permit {
            None => None,
            Some(_permit) => {
                self.renders.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let result = render(&self.ffmpeg, &key.0, key.1.as_deref(), &self.shutdown).await;
                let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                match result {
                    Ok(slate) => {
                        tracing::info!(
                            render_ms = ms,
                            bytes = slate.bytes,
                            loop_ms = slate.loop_ms,
                            notes = ?slate.notes,
                            "standby slate rendered: {}",
                            key.0
                        );
                        Some((State::Ready(Arc::new(slate)), ms))
                    }
                    Err(super::error::RenderError::Cancelled) => None,
                    Err(err) => {
                        tracing::warn!(render_ms = ms, "standby slate for {} failed: {err}", key.0);
                        Some((
                            State::Failed {
                                reason: err.to_string(),
                                at: Instant::now(),
                            },
                            ms,
                        ))
                    }
                }
            }
        };
        {
            let mut entries = self.lock();
            match state {
                Some((state, ms)) => {
                    if let Some(entry) = entries.get_mut(&key) {
                        entry.state = state;
                        entry.render_ms = Some(ms);
                    }
                    self.evict(&mut entries, &key);
                }
                None => {
                    entries.remove(&key);
                }
            }
        }
        self.done.notify_waiters();
    }

    /// Drops the least recently used finished entries (never `keep`) until the cache
    /// is within its bounds.
    fn evict(&self, entries: &mut HashMap<Key, Entry>, keep: &Key) {
        loop {
            let bytes: usize = entries
                .values()
                .map(|e| match &e.state {
                    State::Ready(slate) => slate.bytes,
                    _ => 0,
                })
                .sum();
            if entries.len() <= MAX_ENTRIES && bytes <= MAX_BYTES {
                return;
            }
            let oldest = entries
                .iter()
                .filter(|(k, e)| *k != keep && !matches!(e.state, State::Rendering))
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(key) => {
                    entries.remove(&key);
                }
                None => return,
            }
        }
    }

    /// The slate, waiting at most `wait` for a render in progress (starting one if
    /// none).
    ///
    /// # Errors
    /// [`SlateUnavailable`], whose Display is the reason for the stream's status.
    pub async fn get(
        self: &Arc<Self>,
        spec: &SlateSpec,
        source: Option<&Path>,
        wait: Duration,
    ) -> Result<Arc<Slate>, SlateUnavailable> {
        let key = (spec.clone(), source.map(Path::to_owned));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut entries = self.lock();
                self.start_if_needed(&mut entries, &key);
                match entries.get(&key).map(|e| &e.state) {
                    Some(State::Ready(slate)) => return Ok(Arc::clone(slate)),
                    Some(State::Failed { reason, .. }) => {
                        return Err(SlateUnavailable::Failed(reason.clone()));
                    }
                    Some(State::Rendering) => {}
                    None => return Err(SlateUnavailable::ShuttingDown),
                }
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => return Err(SlateUnavailable::Rendering),
                () = self.shutdown.cancelled() => return Err(SlateUnavailable::ShuttingDown),
            }
        }
    }

    /// Ready slates and failures, for status and metrics.
    pub fn snapshot(&self) -> Vec<CachedSlate> {
        let entries = self.lock();
        let mut list: Vec<(u64, CachedSlate)> = entries
            .iter()
            .map(|((spec, source), entry)| {
                let (state, reason, bytes, loop_ms) = match &entry.state {
                    State::Rendering => ("rendering", None, 0, None),
                    State::Ready(slate) => ("ready", None, slate.bytes, Some(slate.loop_ms)),
                    State::Failed { reason, .. } => ("failed", Some(reason.clone()), 0, None),
                };
                let summary = CachedSlate {
                    spec: spec.to_string(),
                    title: spec.title.clone(),
                    source: source.as_ref().map(|p| p.display().to_string()),
                    state,
                    reason,
                    bytes,
                    loop_ms,
                    render_ms: entry.render_ms,
                };
                (entry.used, summary)
            })
            .collect();
        // Most recently used first.
        list.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        list.into_iter().map(|(_, s)| s).collect()
    }
}
