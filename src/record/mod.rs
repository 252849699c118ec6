//! Recording: every broadcast written to disk as it went out, losslessly.
//!
//! A recorder subscribes to a live stream like a player and writes every packet
//! it gets as an FLV tag (the payload's bytes untouched, enhanced RTMP included)
//! into files under `[record] dir`, named by the stream's public name (the user's
//! name, or the stream id; never the key) and the broadcast's start in UTC. A file
//! is cut at a keyframe once it is `segment_secs` long or `max_bytes` big, and
//! every file starts with the stream's metadata and sequence headers, so each
//! plays on its own. A stream the slate or a backup fed while its publisher was
//! away is recorded as it went out, in the same file.
//!
//! One file per concern: [`naming`] (file names), [`segmenter`] (when to cut and
//! what a new file starts with, sans-I/O), [`recorder`] (the task that writes),
//! [`hook`] (the command run when a file is complete), [`upload`] (complete
//! files to S3-compatible storage), [`status`] (what the API and metrics show). A failed write (disk full, a directory that cannot be
//! written) ends that recording with the error in its status; the stream, its
//! destinations and its players never notice.

pub mod hook;
pub mod mp4_file;
pub mod naming;
pub mod recorder;
pub mod segmenter;
pub mod status;
pub mod upload;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use recorder::{RecordContext, Recording};
pub use status::{RecordingSnapshot, RecordingStatus};

/// `[record]`: whether and how broadcasts are recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// Record every broadcast (a user file's `[record] enabled` overrides it).
    pub enabled: bool,
    /// Where recordings go (created when missing); one subdirectory per app.
    pub dir: PathBuf,
    /// The container: `flv` (every tag as received) or `mp4` (fragmented).
    pub format: RecordFormat,
    /// Cut a file at the first keyframe after this many seconds (0: never).
    pub segment_secs: u64,
    /// Cut a file at the first keyframe after this many bytes (0: never).
    pub max_bytes: u64,
    /// A command run (no shell) when a file is complete: the program and its
    /// arguments, in which `{path}`, `{filename}`, `{app}` and `{name}` are
    /// replaced; empty for none.
    #[serde(default)]
    pub on_record_done: Vec<String>,
    /// Upload complete files to S3-compatible object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<upload::UploadConfig>,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            dir: PathBuf::from("recordings"),
            format: RecordFormat::Flv,
            segment_secs: 0,
            max_bytes: 0,
            on_record_done: Vec::new(),
            upload: None,
        }
    }
}

/// A recording's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// FLV: the RTMP messages' bodies as tags, byte for byte.
    Flv,
    /// Fragmented MP4: the same frames as samples (H.264, HEVC, AAC); a file
    /// cut short plays up to its last fragment.
    Mp4,
}

impl RecordFormat {
    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Flv => "flv",
            Self::Mp4 => "mp4",
        }
    }
}

/// A user file's `[record]`, over `[record]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// Overrides `record.enabled`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Overrides `record.dir`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
}
