//! A frame rate as an exact fraction, snapped from what publishers put in their
//! metadata (a float such as 29.97 or 29.970_029_970_03).
//!
//! A slate must run at exactly the live stream's rate: the platform sees one stream,
//! and a rate that is off by 0.03 fps makes its timestamps drift against the frame
//! count. Encoders write the NTSC rates as rounded floats, so the float is snapped to
//! the broadcast fraction it stands for.

use std::fmt;

use serde::Serialize;

/// Frames per second as `num / den` (30/1, 30000/1001...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FrameRate {
    /// Numerator.
    pub num: u32,
    /// Denominator (never 0).
    pub den: u32,
}

/// The rates cameras, encoders and platforms use; a metadata float within 0.1 % of one
/// of them is that one.
const STANDARD: [(u32, u32); 15] = [
    (24000, 1001),
    (24, 1),
    (25, 1),
    (30000, 1001),
    (30, 1),
    (48000, 1001),
    (48, 1),
    (50, 1),
    (60000, 1001),
    (60, 1),
    (100, 1),
    (120000, 1001),
    (120, 1),
    (15, 1),
    (12, 1),
];

/// The slowest and fastest rates a slate is rendered at.
const MIN_FPS: f64 = 1.0;
const MAX_FPS: f64 = 240.0;

impl FrameRate {
    /// 30 frames per second.
    pub const THIRTY: Self = Self { num: 30, den: 1 };

    /// The exact rate a metadata float stands for: a standard rate within 0.1 %, else a
    /// whole number within 0.01 fps, else the float in thousandths. `None` outside
    /// 1..=240 fps or for a value that is not a number.
    pub fn snap(fps: f64) -> Option<Self> {
        if !fps.is_finite() || !(MIN_FPS..=MAX_FPS).contains(&fps) {
            return None;
        }
        let closest = STANDARD
            .iter()
            .map(|&(num, den)| (num, den, (fps - f64::from(num) / f64::from(den)).abs()))
            .min_by(|a, b| a.2.total_cmp(&b.2))?;
        if closest.2 <= fps * 0.001 {
            return Some(Self::reduced(closest.0, closest.1));
        }
        if (fps - fps.round()).abs() < 0.01 {
            return Some(Self::reduced(fps.round() as u32, 1));
        }
        Some(Self::reduced((fps * 1000.0).round() as u32, 1000))
    }

    fn reduced(num: u32, den: u32) -> Self {
        let gcd = gcd(num, den).max(1);
        Self {
            num: num / gcd,
            den: den / gcd,
        }
    }

    /// Frames per second as a float.
    pub fn fps(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }

    /// The length of `frames` frames in ms, rounded to the nearest ms.
    pub fn frames_ms(self, frames: u32) -> u32 {
        let exact = u64::from(frames) * u64::from(self.den) * 1000;
        let num = u64::from(self.num);
        u32::try_from((exact + num / 2) / num).unwrap_or(u32::MAX)
    }

    /// Whole frames in `secs` seconds (at least one): the keyframe interval in frames.
    pub fn frames_in(self, secs: u32) -> u32 {
        ((f64::from(secs) * self.fps()).round() as u32).max(1)
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl fmt::Display for FrameRate {
    /// `60`, `29.97`, `23.976`: what people call these rates.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            let fps = self.fps();
            let text = format!("{fps:.3}");
            f.write_str(text.trim_end_matches('0').trim_end_matches('.'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(num: u32, den: u32) -> Option<FrameRate> {
        Some(FrameRate { num, den })
    }

    #[test]
    fn metadata_floats_snap_to_the_rate_they_stand_for() {
        assert_eq!(FrameRate::snap(30.0), rate(30, 1));
        assert_eq!(FrameRate::snap(29.97), rate(30000, 1001));
        assert_eq!(FrameRate::snap(29.970_029_970_03), rate(30000, 1001));
        assert_eq!(FrameRate::snap(59.94), rate(60000, 1001));
        assert_eq!(FrameRate::snap(23.976), rate(24000, 1001));
        assert_eq!(FrameRate::snap(25.0), rate(25, 1));
        assert_eq!(FrameRate::snap(50.0), rate(50, 1));
        assert_eq!(FrameRate::snap(60.0), rate(60, 1));
        assert_eq!(FrameRate::snap(60.001), rate(60, 1));
        // Not standard: whole numbers stay whole, others keep their thousandths.
        assert_eq!(FrameRate::snap(20.0), rate(20, 1));
        assert_eq!(FrameRate::snap(7.5), rate(15, 2));
        assert_eq!(FrameRate::snap(0.5), None);
        assert_eq!(FrameRate::snap(1000.0), None);
        assert_eq!(FrameRate::snap(f64::NAN), None);
    }

    #[test]
    fn loop_lengths_are_whole_frames() {
        let ntsc = FrameRate::snap(29.97).unwrap();
        assert_eq!(ntsc.frames_in(2), 60);
        assert_eq!(ntsc.frames_ms(120), 4004);
        assert_eq!(FrameRate::snap(60.0).unwrap().frames_ms(240), 4000);
        assert_eq!(FrameRate::snap(23.976).unwrap().frames_ms(96), 4004);
        assert_eq!(ntsc.to_string(), "29.97");
        assert_eq!(FrameRate::snap(23.976).unwrap().to_string(), "23.976");
        assert_eq!(FrameRate::THIRTY.to_string(), "30");
    }
}
