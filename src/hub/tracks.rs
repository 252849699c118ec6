//! Whether a stream carries video: what a destination that needs video asks
//! before it starts, to know whether it must be given a generated picture.
//!
//! A stream announces nothing reliable up front (an encoder may send audio
//! first, or no metadata at all), so the answer comes from what arrived:
//! video as soon as a video sequence header or keyframe came; audio-only once
//! audio came and either the metadata (sent before the media by every encoder
//! that sends it) described no video, or audio has run for as long as the hub
//! lets audio wait for announced video before a subscriber may start on it.

/// What a stream carries, as far as is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracks {
    /// Not decided yet: no media, or audio too short to say.
    Unknown,
    /// It carries video.
    Video,
    /// It carries audio and no video.
    AudioOnly,
}

/// The audio frames a stream received so far: the first and latest timestamps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioSpan {
    first: Option<u32>,
    last: u32,
}

impl AudioSpan {
    /// Counts an audio frame stamped `timestamp`.
    pub fn add(&mut self, timestamp: u32) {
        self.first.get_or_insert(timestamp);
        self.last = timestamp;
    }

    /// How long the audio has run, in milliseconds (`None`: none came).
    pub fn millis(&self) -> Option<u32> {
        let first = self.first?;
        let span = self.last.wrapping_sub(first);
        // A timestamp going back (a new input) says nothing about length.
        Some(if span < u32::MAX / 2 { span } else { 0 })
    }
}

/// What the stream carries, from what it received: whether video came, whether
/// metadata came and described video, and its audio so far. Audio alone for
/// `wait_ms` decides even without metadata.
pub fn classify(
    video_came: bool,
    metadata: Option<bool>,
    audio: AudioSpan,
    wait_ms: u32,
) -> Tracks {
    if video_came {
        return Tracks::Video;
    }
    let Some(audio_ms) = audio.millis() else {
        return Tracks::Unknown;
    };
    if metadata == Some(false) || audio_ms >= wait_ms {
        Tracks::AudioOnly
    } else {
        Tracks::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(stamps: &[u32]) -> AudioSpan {
        let mut span = AudioSpan::default();
        for &t in stamps {
            span.add(t);
        }
        span
    }

    #[test]
    fn video_decides_at_once_and_audio_alone_waits_unless_metadata_says() {
        assert_eq!(classify(true, None, span(&[]), 3000), Tracks::Video);
        assert_eq!(classify(true, Some(false), span(&[0]), 3000), Tracks::Video);
        assert_eq!(classify(false, None, span(&[]), 3000), Tracks::Unknown);
        assert_eq!(
            classify(false, Some(false), span(&[]), 3000),
            Tracks::Unknown
        );
        // Metadata without video, then audio: audio-only at once.
        assert_eq!(
            classify(false, Some(false), span(&[0]), 3000),
            Tracks::AudioOnly
        );
        // Metadata announcing video, or none: audio must run the wait out.
        assert_eq!(
            classify(false, Some(true), span(&[0, 2999]), 3000),
            Tracks::Unknown
        );
        assert_eq!(
            classify(false, None, span(&[10, 3010]), 3000),
            Tracks::AudioOnly
        );
        assert_eq!(
            classify(false, Some(true), span(&[10, 3010]), 3000),
            Tracks::AudioOnly
        );
    }

    #[test]
    fn a_timestamp_going_back_is_no_length() {
        assert_eq!(span(&[5000, 10]).millis(), Some(0));
        assert_eq!(span(&[u32::MAX - 10, 20]).millis(), Some(31));
    }
}
