//! Cue points an operator inserts into a live stream (`POST
//! /api/v1/streams/{id}/cue`): one `onCuePoint` data message at the stream's
//! current timestamp, to every destination, player, recording and HLS
//! rendition, and to the output of each of the stream's encodes (ffmpeg does not
//! carry data messages through), each at its own current timestamp. Limited
//! per stream, so that no caller can flood every destination's connection.

use std::time::Instant;

use crate::rate::TokenBucket;
use crate::rtmp::cue::CuePoint;

use super::Relay;
use super::control::ControlError;
use super::stream::StreamRelay;

/// Cues a stream takes at once.
pub const CUE_BURST: u32 = 5;
/// Cues per second a stream takes after its burst.
pub const CUES_PER_SEC: f64 = 1.0;

/// A new stream's cue budget: full.
pub(super) fn budget() -> std::sync::Mutex<TokenBucket> {
    std::sync::Mutex::new(TokenBucket::full(CUE_BURST, Instant::now()))
}

impl Relay {
    /// Inserts `cue` into `stream`; returns the timestamp (ms on the stream's
    /// timeline) it was given. Refused when the stream has sent nothing yet (no
    /// moment to mark) or the stream's cue budget is spent.
    pub fn cue(&self, stream: &StreamRelay, cue: &CuePoint) -> Result<u32, ControlError> {
        {
            let mut bucket = stream.cues.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(wait) = bucket.try_take(CUE_BURST, CUES_PER_SEC, Instant::now()) {
                return Err(ControlError::TooSoon {
                    message: format!(
                        "at most {CUE_BURST} cues at once and {CUES_PER_SEC} per second after"
                    ),
                    retry_after_secs: wait.as_secs() + 1,
                });
            }
        }
        let (app, key) = (stream.app(), stream.key());
        let timestamp = self
            .ctx
            .hub
            .stream(app, key)
            .and_then(|s| s.insert_data(|at| cue.encode(at)))
            .ok_or_else(|| {
                ControlError::Conflict(
                    "the stream has no media on air yet: nothing to mark".to_owned(),
                )
            })?;
        let shared = self.shared_encoders();
        let outputs = shared.outputs_of(app, key);
        for output in &outputs {
            if let Some(encoded) = shared.output_hub().stream(&output.app, &output.name) {
                encoded.insert_data(|at| cue.encode(at));
            }
        }
        tracing::info!(
            stream = %stream.name.masked(),
            stream_id = %stream.id,
            cue = cue.name(),
            timestamp,
            encodes = outputs.len(),
            "cue point inserted"
        );
        Ok(timestamp)
    }
}
