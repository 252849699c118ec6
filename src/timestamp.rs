//! Per-subscriber timestamp rebasing.
//!
//! Each player or destination sees timestamps that start at 0 when it joins and only
//! move forward per track, whatever the publisher does: start at hours, jump when
//! it reconnects, or wrap the 32-bit millisecond counter after 49.7 days. Platforms
//! and players break on backward or huge jumps, and an FLV recording assumes its
//! first tag near 0.
//!
//! The rebaser keeps a 64-bit running position advanced by the serial-number delta
//! between consecutive input timestamps (RFC 1982 style, as the RTMP spec suggests),
//! so a wrap is just another small step. A delta beyond the jump thresholds is
//! treated as a discontinuity and replaced by a small step.

/// A backward step larger than this is a discontinuity, not audio/video interleaving.
/// Muxers keep tracks within a few hundred ms of each other.
pub const MAX_BACKWARD_STEP_MS: i64 = 2_000;
/// A forward step larger than this is a discontinuity: frames and audio packets come
/// many times per second, so seconds of silence in the timestamps mean a jump.
pub const MAX_FORWARD_STEP_MS: i64 = 5_000;
/// The step that replaces a discontinuity: about one video frame.
pub const DISCONTINUITY_STEP_MS: i64 = 10;

/// Which monotonic lane a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// Audio messages.
    Audio = 0,
    /// Video messages.
    Video = 1,
    /// Data messages (metadata, cue points).
    Data = 2,
}

/// Maps one stream's input timestamps to a subscriber's output timestamps.
#[derive(Debug, Clone, Default)]
pub struct Rebaser {
    last_in: Option<u32>,
    position: i64,
    last_out: [Option<i64>; 3],
}

impl Rebaser {
    /// A rebaser whose first message will come out at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The output timestamp for a message stamped `input` on `track`.
    pub fn rebase(&mut self, track: Track, input: u32) -> u32 {
        if let Some(last) = self.last_in {
            let delta = i64::from(input.wrapping_sub(last) as i32);
            let delta = if (-MAX_BACKWARD_STEP_MS..=MAX_FORWARD_STEP_MS).contains(&delta) {
                delta
            } else {
                DISCONTINUITY_STEP_MS
            };
            self.position += delta;
        }
        self.last_in = Some(input);
        let lane = &mut self.last_out[track as usize];
        let out = self.position.max(0).max(lane.unwrap_or(0));
        *lane = Some(out);
        out as u32
    }

    /// The output timestamp for a decoder configuration message (sequence header,
    /// metadata) stamped `input` on `track`, without moving the stream's position:
    /// such a message may be a cached copy sent on join, carrying the timestamp of the
    /// stream's start, or arrive late, after other tracks' frames have moved the
    /// position on. Before any media it is stamped at the start (0); later at its
    /// own timestamp relative to the position when that is a plausible step, else at
    /// the position. Never earlier than its track's last output, so a header that
    /// arrives late cannot make its track go back, and the frames that follow it
    /// are stamped no earlier than it.
    pub fn stamp_config(&mut self, track: Track, input: u32) -> u32 {
        let at = match self.last_in {
            None => 0,
            Some(last) => {
                let delta = i64::from(input.wrapping_sub(last) as i32);
                if (-MAX_BACKWARD_STEP_MS..=MAX_FORWARD_STEP_MS).contains(&delta) {
                    self.position + delta
                } else {
                    self.position
                }
            }
        };
        let lane = &mut self.last_out[track as usize];
        let out = at.max(0).max(lane.unwrap_or(0));
        *lane = Some(out);
        out as u32
    }

    /// The current output position.
    pub fn now(&self) -> u32 {
        self.position.max(0) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn starts_at_zero_and_keeps_spacing() {
        let mut r = Rebaser::new();
        assert_eq!(r.rebase(Track::Video, 3_600_000), 0);
        assert_eq!(r.rebase(Track::Audio, 3_600_023), 23);
        assert_eq!(r.rebase(Track::Video, 3_600_033), 33);
    }

    #[test]
    fn audio_slightly_before_the_first_keyframe_is_clamped_to_zero() {
        let mut r = Rebaser::new();
        assert_eq!(r.rebase(Track::Video, 10_000), 0);
        assert_eq!(r.rebase(Track::Audio, 9_980), 0);
        assert_eq!(r.rebase(Track::Audio, 10_003), 3);
    }

    #[test]
    fn crosses_the_32_bit_wrap_monotonically() {
        let mut r = Rebaser::new();
        let mut input = u32::MAX - 100;
        let mut last = r.rebase(Track::Video, input);
        for _ in 0..20 {
            input = input.wrapping_add(33);
            let out = r.rebase(Track::Video, input);
            assert_eq!(out, last + 33);
            last = out;
        }
    }

    #[test]
    fn a_publisher_restart_continues_from_where_it_was() {
        let mut r = Rebaser::new();
        r.rebase(Track::Video, 50_000);
        assert_eq!(r.rebase(Track::Video, 53_000), 3_000);
        // The publisher reconnected and starts again at 0.
        let out = r.rebase(Track::Video, 0);
        assert_eq!(out, 3_000 + DISCONTINUITY_STEP_MS as u32);
        assert_eq!(r.rebase(Track::Video, 33), out + 33);
    }

    #[test]
    fn configuration_before_any_media_is_stamped_at_the_start() {
        let mut r = Rebaser::new();
        // A joiner at one hour: cached metadata and headers carry the stream's start.
        assert_eq!(r.stamp_config(Track::Data, 0), 0);
        assert_eq!(r.stamp_config(Track::Video, 0), 0);
        assert_eq!(r.rebase(Track::Video, 3_600_000), 0);
        assert_eq!(r.rebase(Track::Video, 3_600_033), 33);
    }

    #[test]
    fn a_late_sequence_header_keeps_its_own_time_and_its_track_never_goes_back() {
        let mut r = Rebaser::new();
        for ts in (0..=967).step_by(33) {
            r.rebase(Track::Video, ts);
        }
        // The audio header arrives a second late, stamped at the start of its track.
        let header = r.stamp_config(Track::Audio, 0);
        assert_eq!(header, 0, "at its own time, not the video's 957");
        let first = r.rebase(Track::Audio, 0);
        let second = r.rebase(Track::Audio, 23);
        assert!(
            header <= first && first < second,
            "{header} {first} {second}"
        );
        // Stamped at its arrival instead, the frames after it are not earlier.
        let mut r = Rebaser::new();
        r.rebase(Track::Video, 0);
        r.rebase(Track::Video, 990);
        let header = r.stamp_config(Track::Audio, 990);
        assert_eq!(header, 990);
        assert!(r.rebase(Track::Audio, 990) >= header);
        // A header with a timestamp from another clock lands at the position.
        assert_eq!(r.stamp_config(Track::Video, 2_000_000_000), 990);
    }

    proptest! {
        #[test]
        fn every_track_is_monotonic_with_headers(inputs in proptest::collection::vec((0u8..3, any::<u32>(), any::<bool>()), 1..200)) {
            let mut r = Rebaser::new();
            let mut last = [0u32; 3];
            for (lane, ts, config) in inputs {
                let track = [Track::Audio, Track::Video, Track::Data][lane as usize];
                let out = if config { r.stamp_config(track, ts) } else { r.rebase(track, ts) };
                prop_assert!(out >= last[lane as usize]);
                last[lane as usize] = out;
            }
        }

        #[test]
        fn every_track_is_monotonic(inputs in proptest::collection::vec((0u8..3, any::<u32>()), 1..200)) {
            let mut r = Rebaser::new();
            let mut last = [0u32; 3];
            for (lane, ts) in inputs {
                let track = [Track::Audio, Track::Video, Track::Data][lane as usize];
                let out = r.rebase(track, ts);
                prop_assert!(out >= last[lane as usize]);
                last[lane as usize] = out;
            }
        }
    }
}
