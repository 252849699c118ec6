//! Why a slate could not be rendered: the message goes to the stream's status, so
//! each says what to do about it (which encoder is missing, what ffmpeg printed).

use super::encoders::EncoderError;
use crate::flv::FlvError;

/// Why rendering a slate failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The configured ffmpeg lacks an encoder, or could not be asked.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// The spec asks for something no slate is rendered with.
    #[error("cannot render a slate for {0}")]
    Unsupported(String),
    /// ffmpeg did not start.
    #[error("cannot start ffmpeg `{ffmpeg}`: {reason}")]
    Spawn {
        /// The binary.
        ffmpeg: String,
        /// Why.
        reason: String,
    },
    /// ffmpeg failed; its last lines of stderr say why (for HEVC or AV1 with an
    /// ffmpeg older than 6.1: "Video codec hevc not compatible with flv").
    #[error("ffmpeg failed to render the slate ({status}): {stderr}")]
    Failed {
        /// How it exited.
        status: String,
        /// Its last lines of stderr.
        stderr: String,
    },
    /// ffmpeg ran longer than allowed.
    #[error("ffmpeg took longer than {0} s to render the slate; killed")]
    Timeout(u64),
    /// prism is stopping.
    #[error("rendering cancelled")]
    Cancelled,
    /// ffmpeg's output was not readable FLV, or too large.
    #[error("ffmpeg's output is not a usable FLV stream: {0}")]
    Output(String),
    /// The rendered slate does not match its spec (never served).
    #[error("the rendered slate does not match the stream: {0}")]
    Mismatch(String),
}

impl From<FlvError> for RenderError {
    fn from(err: FlvError) -> Self {
        Self::Output(err.to_string())
    }
}
