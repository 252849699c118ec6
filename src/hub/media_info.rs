//! What a live stream carries, for status: codecs, picture size, frame rate,
//! measured keyframe interval, audio rate and channels, and its bitrate.
//!
//! Taken from the sequence headers (authoritative for codecs and AAC parameters),
//! the publisher's onMetaData (size, frame rate) and the keyframes themselves (the
//! interval platforms care about, measured rather than believed).

use std::time::Instant;

use serde::Serialize;

use crate::flv;
use crate::rate::RateMeter;
use crate::rtmp::amf0::Amf0Value;

/// The video track as published.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VideoInfo {
    /// `h264`, `hevc`, `av1`...
    pub codec: Option<String>,
    /// Picture width from metadata.
    pub width: Option<u32>,
    /// Picture height from metadata.
    pub height: Option<u32>,
    /// Frames per second from metadata.
    pub frame_rate: Option<f64>,
    /// Seconds between the last two keyframes.
    pub keyframe_interval_secs: Option<f64>,
}

/// The audio track as published.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AudioInfo {
    /// `aac`, `opus`, `mp3`...
    pub codec: Option<String>,
    /// Samples per second.
    pub sample_rate: Option<u32>,
    /// Channel count.
    pub channels: Option<u8>,
}

/// Accumulates [`VideoInfo`], [`AudioInfo`] and the input bitrate.
#[derive(Debug, Clone)]
pub struct MediaInfo {
    /// The video track, once seen.
    pub video: Option<VideoInfo>,
    /// The audio track, once seen.
    pub audio: Option<AudioInfo>,
    last_keyframe_ms: Option<u32>,
    rate: RateMeter,
}

impl Default for MediaInfo {
    fn default() -> Self {
        Self {
            video: None,
            audio: None,
            last_keyframe_ms: None,
            rate: RateMeter::new(Instant::now()),
        }
    }
}

fn number(metadata: &Amf0Value, key: &str) -> Option<f64> {
    metadata
        .get(key)
        .and_then(Amf0Value::as_f64)
        .filter(|v| v.is_finite() && *v > 0.0)
}

impl MediaInfo {
    /// Counts payload bytes for the bitrate.
    pub fn count(&mut self, bytes: usize) {
        self.rate.add(bytes as u64, Instant::now());
    }

    /// The input bitrate in bits per second.
    pub fn bitrate_bps(&self) -> u64 {
        self.rate.bits_per_second(Instant::now())
    }

    /// Takes size and frame rate from onMetaData.
    pub fn on_metadata(&mut self, metadata: &Amf0Value) {
        if metadata.get("width").is_some() || metadata.get("videocodecid").is_some() {
            let video = self.video.get_or_insert_with(VideoInfo::default);
            video.width = number(metadata, "width").map(|v| v as u32);
            video.height = number(metadata, "height").map(|v| v as u32);
            video.frame_rate = number(metadata, "framerate").or_else(|| number(metadata, "fps"));
        }
    }

    /// Takes the codec from a video sequence header, and the keyframe interval from
    /// keyframe timestamps.
    pub fn on_video(
        &mut self,
        payload: &[u8],
        timestamp: u32,
        sequence_header: bool,
        keyframe: bool,
    ) {
        if sequence_header {
            if let Ok(tag) = flv::parse_video(payload) {
                self.video.get_or_insert_with(VideoInfo::default).codec =
                    Some(tag.codec.as_str().to_owned());
            }
        } else if keyframe {
            if let Some(last) = self.last_keyframe_ms {
                let interval = timestamp.wrapping_sub(last);
                // A jump (publisher restart) is not an interval.
                if interval > 0 && interval < 60_000 {
                    self.video
                        .get_or_insert_with(VideoInfo::default)
                        .keyframe_interval_secs = Some(f64::from(interval) / 1000.0);
                }
            }
            self.last_keyframe_ms = Some(timestamp);
        }
    }

    /// Takes codec, rate and channels from an audio sequence header (AAC's
    /// AudioSpecificConfig is authoritative: the FLV header flags are nominal).
    pub fn on_audio_header(&mut self, payload: &[u8]) {
        let Ok(tag) = flv::parse_audio(payload) else {
            return;
        };
        let audio = self.audio.get_or_insert_with(AudioInfo::default);
        audio.codec = Some(tag.codec.as_str().to_owned());
        let aac = (tag.codec == flv::AudioCodec::Aac)
            .then(|| payload.get(2..).and_then(flv::aac_config))
            .flatten();
        match aac {
            Some((rate, channels)) => {
                audio.sample_rate = Some(rate);
                audio.channels = Some(channels);
            }
            None => {
                audio.sample_rate = tag.sample_rate;
                audio.channels = tag.channels;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_sizes_and_keyframe_interval() {
        let mut info = MediaInfo::default();
        info.on_metadata(&Amf0Value::EcmaArray(vec![
            ("width".into(), 1920.0.into()),
            ("height".into(), 1080.0.into()),
            ("framerate".into(), 30.0.into()),
        ]));
        info.on_video(&[0x17, 0, 0, 0, 0, 1], 0, true, false);
        info.on_video(&[0x17, 1, 0, 0, 0], 1000, false, true);
        info.on_video(&[0x17, 1, 0, 0, 0], 3000, false, true);
        info.on_audio_header(&[0xAF, 0x00, 0x11, 0x90]);
        let video = info.video.clone().unwrap();
        assert_eq!(video.codec.as_deref(), Some("h264"));
        assert_eq!(
            (video.width, video.height, video.frame_rate),
            (Some(1920), Some(1080), Some(30.0))
        );
        assert_eq!(video.keyframe_interval_secs, Some(2.0));
        let audio = info.audio.unwrap();
        assert_eq!(audio.codec.as_deref(), Some("aac"));
        assert_eq!((audio.sample_rate, audio.channels), (Some(48_000), Some(2)));
    }
}
