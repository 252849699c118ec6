//! A recording's state as the API and metrics show it.

use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

/// Where a recording is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    /// Writing.
    Recording,
    /// The stream ended and the last file was closed.
    Finished,
    /// A write failed (disk full, a directory that cannot be written): the
    /// recording stopped there; the stream goes on.
    Failed,
}

/// A recording's status at one moment.
#[derive(Debug, Clone)]
pub struct RecordingSnapshot {
    /// Where it is.
    pub state: RecordingState,
    /// The file being written (the last one once finished or failed).
    pub file: Option<String>,
    /// Files started so far.
    pub files: u32,
    /// Bytes written, every file together.
    pub bytes: u64,
    /// Frames the recorder missed because the disk could not keep up (it skipped
    /// to the next keyframe).
    pub dropped_frames: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// When the recording started.
    pub started_at: SystemTime,
}

/// A recording's status, shared by its task and the API.
#[derive(Debug)]
pub struct RecordingStatus {
    inner: Mutex<RecordingSnapshot>,
}

impl RecordingStatus {
    /// A recording starting now.
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(RecordingSnapshot {
                state: RecordingState::Recording,
                file: None,
                files: 0,
                bytes: 0,
                dropped_frames: 0,
                error: None,
                started_at: SystemTime::now(),
            }),
        }
    }

    /// The status now.
    pub fn snapshot(&self) -> RecordingSnapshot {
        self.lock().clone()
    }

    /// Changes it.
    pub fn update(&self, change: impl FnOnce(&mut RecordingSnapshot)) {
        change(&mut self.lock());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecordingSnapshot> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for RecordingStatus {
    fn default() -> Self {
        Self::new()
    }
}
