//! Why a benchmark run failed.

use std::path::{Path, PathBuf};

/// Why a run (or the whole benchmark) could not produce a trustworthy figure.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A program under test or a tool did not come up, or exited early.
    #[error("{0}")]
    Setup(String),
    /// The capture is not complete or not decodable: its figures would lie.
    #[error("capture: {0}")]
    Capture(String),
}

impl BenchError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}
