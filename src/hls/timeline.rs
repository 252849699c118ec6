//! FLV timestamps on a 64-bit timeline, for the packagers' decode times.

/// FLV's 32-bit millisecond timestamps on a 64-bit timeline, past the wrap at
/// 49.7 days.
#[derive(Debug, Default)]
pub struct Timeline {
    last: Option<u32>,
    now: u64,
}

impl Timeline {
    /// `stamp` on the 64-bit timeline: a small step back stays a step back.
    pub fn extend(&mut self, stamp: u32) -> u64 {
        if let Some(last) = self.last {
            // The signed distance, so a small step back (audio and video
            // interleaved) stays a step back rather than a wrap.
            let step = i64::from(stamp.wrapping_sub(last) as i32);
            self.now = self.now.saturating_add_signed(step);
        } else {
            self.now = u64::from(stamp);
        }
        self.last = Some(stamp);
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_goes_past_the_wrap() {
        let mut timeline = Timeline::default();
        assert_eq!(timeline.extend(u32::MAX - 10), u64::from(u32::MAX - 10));
        assert_eq!(timeline.extend(u32::MAX - 20), u64::from(u32::MAX - 20));
        assert_eq!(timeline.extend(5), u64::from(u32::MAX) + 6);
    }
}
