//! What the configured ffmpeg can do for a slate: its encoders (`-encoders`) and
//! whether it has the `drawtext` filter (`-filters`), asked once per binary.
//!
//! A slate must be in the live stream's codec, so a codec without an encoder is a
//! clear answer ("this ffmpeg cannot encode hevc...") that the stream's status shows,
//! and the stream keeps today's grace behaviour instead of a slate.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::Command;

use super::spec::{SlateAudioCodec, SlateVideoCodec};

/// How long `ffmpeg -encoders` may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the capabilities of an ffmpeg are unknown, or a codec has no encoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncoderError {
    /// ffmpeg did not run or did not answer.
    #[error("cannot ask ffmpeg `{ffmpeg}` for its encoders: {reason}")]
    Probe {
        /// The binary.
        ffmpeg: String,
        /// What went wrong.
        reason: String,
    },
    /// No encoder for the stream's codec.
    #[error(
        "this ffmpeg cannot encode {codec}: no {wanted}; the stream falls back to the grace period"
    )]
    Missing {
        /// The codec.
        codec: &'static str,
        /// The encoders looked for.
        wanted: &'static str,
    },
}

/// The encoders and filters of one ffmpeg binary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    encoders: BTreeSet<String>,
    /// Whether `drawtext` (libfreetype) is built in.
    pub drawtext: bool,
}

/// AV1 encoders in order of preference: SVT-AV1 is by far the fastest.
const AV1_ENCODERS: [&str; 3] = ["libsvtav1", "libaom-av1", "librav1e"];

impl Capabilities {
    /// Reads the output of `ffmpeg -encoders` and `ffmpeg -filters`.
    pub fn parse(encoders: &str, filters: &str) -> Self {
        Self {
            encoders: listed_names(encoders),
            drawtext: listed_names(filters).contains("drawtext"),
        }
    }

    /// Whether the named encoder is built in.
    pub fn has(&self, encoder: &str) -> bool {
        self.encoders.contains(encoder)
    }

    /// The encoder for a slate's video codec.
    pub fn video_encoder(&self, codec: SlateVideoCodec) -> Result<&'static str, EncoderError> {
        let (candidates, wanted): (&[&'static str], _) = match codec {
            SlateVideoCodec::H264 => (&["libx264"], "libx264"),
            SlateVideoCodec::Hevc => (&["libx265"], "libx265"),
            SlateVideoCodec::Av1 => (&AV1_ENCODERS, "libsvtav1, libaom-av1 or librav1e"),
        };
        self.first_of(candidates).ok_or(EncoderError::Missing {
            codec: codec.as_str(),
            wanted,
        })
    }

    /// The encoder for a slate's audio codec. HE-AAC needs libfdk_aac; without it the
    /// native `aac` encoder makes AAC-LC at the same output rate (see
    /// [`super::command`]).
    pub fn audio_encoder(&self, codec: SlateAudioCodec) -> Result<&'static str, EncoderError> {
        let (candidates, name, wanted): (&[&'static str], _, _) = match codec {
            SlateAudioCodec::Aac {
                object_type: 5 | 29,
            } => (&["libfdk_aac", "aac"], "aac", "aac encoder"),
            SlateAudioCodec::Aac { .. } => (&["aac"], "aac", "aac encoder"),
            SlateAudioCodec::Mp3 => (&["libmp3lame"], "mp3", "libmp3lame"),
            SlateAudioCodec::Opus => (&["libopus"], "opus", "libopus"),
        };
        self.first_of(candidates).ok_or(EncoderError::Missing {
            codec: name,
            wanted,
        })
    }

    fn first_of(&self, candidates: &[&'static str]) -> Option<&'static str> {
        candidates.iter().copied().find(|name| self.has(name))
    }

    /// Asks `ffmpeg` once per process and binary (a failure is asked again next time).
    pub async fn of(ffmpeg: &Path) -> Result<Arc<Self>, EncoderError> {
        static KNOWN: Mutex<Option<HashMap<PathBuf, Arc<Capabilities>>>> = Mutex::new(None);
        let cached = KNOWN
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|known| known.get(ffmpeg).cloned());
        if let Some(found) = cached {
            return Ok(found);
        }
        let encoders = list(ffmpeg, "-encoders").await?;
        let filters = list(ffmpeg, "-filters").await?;
        let found = Arc::new(Self::parse(&encoders, &filters));
        KNOWN
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(ffmpeg.to_owned(), Arc::clone(&found));
        Ok(found)
    }
}

/// The second column of ffmpeg's `-encoders`/`-filters` tables: the lines after the
/// legend, whose first word is a column of capability flags.
fn listed_names(listing: &str) -> BTreeSet<String> {
    listing
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let flags = words.next()?;
            let name = words.next()?;
            let is_flags = (2..=6).contains(&flags.len())
                && flags
                    .chars()
                    .all(|c| c == '.' || c == '|' || c.is_ascii_uppercase())
                && !flags.chars().all(|c| c == '=');
            (is_flags && !name.contains('=')).then(|| name.to_owned())
        })
        .collect()
}

async fn list(ffmpeg: &Path, what: &str) -> Result<String, EncoderError> {
    let probe = |reason: String| EncoderError::Probe {
        ffmpeg: ffmpeg.display().to_string(),
        reason,
    };
    let child = Command::new(ffmpeg)
        .args(["-hide_banner", what])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| probe(e.to_string()))?;
    let out = tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| probe(format!("no answer to {what} within {PROBE_TIMEOUT:?}")))?
        .map_err(|e| probe(e.to_string()))?;
    if !out.status.success() {
        return Err(probe(format!("{what} exited with {}", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENCODERS: &str = "Encoders:
 V..... = Video
 A..... = Audio
 ------
 V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC (codec h264)
 V....D libaom-av1           libaom AV1 (codec av1)
 V....D librav1e             librav1e AV1 (codec av1)
 A..... aac                  AAC (Advanced Audio Coding)
 A....D libopus              libopus Opus (codec opus)
";
    const FILTERS: &str = "Filters:
  T.. = Timeline support
  ------
 ... anullsrc          |->A       Null audio source, return empty audio frames.
 T.C drawtext          V->V       Draw text on top of video frames.
";

    #[test]
    fn picks_the_encoder_per_codec_and_says_which_is_missing() {
        let caps = Capabilities::parse(ENCODERS, FILTERS);
        assert!(caps.drawtext);
        assert_eq!(caps.video_encoder(SlateVideoCodec::H264), Ok("libx264"));
        // No SVT-AV1: libaom comes next.
        assert_eq!(caps.video_encoder(SlateVideoCodec::Av1), Ok("libaom-av1"));
        let missing = caps.video_encoder(SlateVideoCodec::Hevc).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "this ffmpeg cannot encode hevc: no libx265; the stream falls back to the grace period"
        );
        assert_eq!(
            caps.audio_encoder(SlateAudioCodec::Aac { object_type: 5 }),
            Ok("aac")
        );
        assert_eq!(caps.audio_encoder(SlateAudioCodec::Opus), Ok("libopus"));
        assert!(caps.audio_encoder(SlateAudioCodec::Mp3).is_err());
        assert!(!caps.has("Video") && !caps.has("="));
        assert!(!Capabilities::parse(ENCODERS, "").drawtext);
    }
}
