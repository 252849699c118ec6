//! The warnings the status API shows for a stream: its publish's problems, then the
//! platform constraints it breaks.

use crate::hub::{AudioInfo, VideoInfo};

use super::Relay;
use super::stream::StreamRelay;

/// Shown when a publisher came back within its grace period with a publish URL
/// whose query string differs from the first publish's. Quotes neither: both
/// carry keys.
pub const OTHER_QUERY_IGNORED: &str = "the publisher came back within its grace period \
     with another query string in its publish URL, which was not applied: the destinations \
     of the first publish continue (to change them, publish again once the stream has \
     ended, or use the API)";

impl Relay {
    /// What the status API shows as the stream's warnings: the problems of its
    /// publish (destinations refused, parameters ignored, a returning
    /// publisher's other query string), then the platform
    /// constraints the stream breaks, per passthrough destination (known once
    /// the publisher's `video` and `audio` are).
    pub fn warnings(
        &self,
        stream: &StreamRelay,
        video: Option<&VideoInfo>,
        audio: Option<&AudioInfo>,
    ) -> Vec<String> {
        let list = stream.lock();
        let mut warnings = stream.problems.clone();
        if stream
            .other_query_ignored
            .load(std::sync::atomic::Ordering::Acquire)
        {
            warnings.push(OTHER_QUERY_IGNORED.to_owned());
        }
        for entry in list.iter().filter(|e| e.spec.profile.is_none()) {
            let c = &entry.spec.constraints;
            let id = &entry.spec.id;
            if let Some(codec) = video.and_then(|v| v.codec.as_deref())
                && !c.video_codecs.is_empty()
                && !c.video_codecs.iter().any(|ok| ok == codec)
            {
                warnings.push(format!(
                    "{id}: video codec {codec} is not accepted ({}); add a profile such as h264",
                    c.video_codecs.join(", ")
                ));
            }
            if let Some(codec) = audio.and_then(|a| a.codec.as_deref())
                && !c.audio_codecs.is_empty()
                && !c.audio_codecs.iter().any(|ok| ok == codec)
            {
                warnings.push(format!(
                    "{id}: audio codec {codec} is not accepted ({})",
                    c.audio_codecs.join(", ")
                ));
            }
            if let (Some(interval), Some(max)) = (
                video.and_then(|v| v.keyframe_interval_secs),
                c.keyframe_interval_max_secs,
            ) && interval > max + 0.1
            {
                warnings.push(format!(
                    "{id}: keyframe interval {interval:.1} s is over the platform's {max} s"
                ));
            }
        }
        warnings
    }
}
