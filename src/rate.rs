//! A bitrate meter: bytes counted as they pass, reported as bits per second over
//! the last full window, and as 0 once traffic stops (a destination "streaming at
//! 0 kbit/s for hours" must show as 0, not as its last good value).

use std::time::{Duration, Instant};

/// The measuring window.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Bits per second over the last completed window.
#[derive(Debug, Clone)]
pub struct RateMeter {
    window_start: Instant,
    window_bytes: u64,
    last_bps: u64,
    last_window_end: Instant,
}

impl RateMeter {
    /// A meter starting now.
    pub fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            window_bytes: 0,
            last_bps: 0,
            last_window_end: now,
        }
    }

    /// Counts `bytes` that passed at `now`.
    pub fn add(&mut self, bytes: u64, now: Instant) {
        self.roll(now);
        self.window_bytes += bytes;
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= WINDOW {
            self.last_bps = (self.window_bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
            self.window_bytes = 0;
            self.window_start = now;
            self.last_window_end = now;
        }
    }

    /// The rate at `now`: the last window's, or 0 when nothing passed for two windows.
    pub fn bits_per_second(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= 2 * WINDOW {
            // The current window is long and quiet: report what it holds so far.
            return (self.window_bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
        }
        self.last_bps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_over_one_second_windows() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new(t0);
        for i in 1..=10 {
            meter.add(12_500, t0 + Duration::from_millis(100 * i));
        }
        // 10 x 12.5 kB in the first second, rolled by the next add.
        meter.add(0, t0 + Duration::from_millis(1_000));
        assert_eq!(
            meter.bits_per_second(t0 + Duration::from_millis(1_100)),
            900_000
        );
    }

    #[test]
    fn falls_to_zero_when_traffic_stops() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new(t0);
        meter.add(125_000, t0 + Duration::from_millis(500));
        meter.add(0, t0 + Duration::from_secs(1));
        assert!(meter.bits_per_second(t0 + Duration::from_millis(1_500)) > 0);
        assert_eq!(meter.bits_per_second(t0 + Duration::from_secs(10)), 0);
    }
}
