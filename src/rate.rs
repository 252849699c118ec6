//! A bitrate meter: bytes counted as they pass, reported as bits per second over
//! the last full window, and as 0 once traffic stops (a destination "streaming at
//! 0 kbit/s for hours" must show as 0, not as its last good value). And the
//! token bucket that limits how often something may happen (log lines per
//! client, cue points per stream).

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

/// A bitrate worked out when it is read, from a byte counter kept elsewhere (an atomic the
/// hot path only adds to): what a counter written from many places per packet, and read a
/// few times a second at most, needs. The rate is the average between the last two reads
/// that were at least a [`WINDOW`] apart, so it too falls to 0 once traffic stops.
#[derive(Debug, Clone)]
pub struct SampledRate {
    sampled_at: Instant,
    sampled_total: u64,
    last_bps: u64,
}

impl SampledRate {
    /// A rate whose first window starts now, at counter value `total`.
    pub fn new(total: u64, now: Instant) -> Self {
        Self {
            sampled_at: now,
            sampled_total: total,
            last_bps: 0,
        }
    }

    /// The rate at `now`, given the counter's current `total`.
    pub fn bits_per_second(&mut self, total: u64, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.sampled_at);
        if elapsed >= WINDOW {
            let bytes = total.saturating_sub(self.sampled_total);
            self.last_bps = (bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
            self.sampled_at = now;
            self.sampled_total = total;
        }
        self.last_bps
    }
}

/// A token bucket: up to `burst` at once, then `per_sec` on average. The caller
/// passes the burst and rate each time, so one table of buckets can follow a
/// configuration that changes.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A bucket holding `burst` tokens at `now`.
    pub fn full(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            updated: now,
        }
    }

    /// Adds what `per_sec` earned since the last refill, up to `burst`.
    pub fn refill(&mut self, burst: u32, per_sec: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(burst));
        self.updated = now;
    }

    /// Whether a token is there to take.
    pub fn has_one(&self) -> bool {
        self.tokens >= 1.0
    }

    /// Takes a token (see [`has_one`](Self::has_one)).
    pub fn take(&mut self) {
        self.tokens -= 1.0;
    }

    /// Whether the bucket is full: nothing was taken for a while.
    pub fn is_full(&self, burst: u32) -> bool {
        self.tokens >= f64::from(burst)
    }

    /// Refills, then takes a token if there is one; the time until the next
    /// one otherwise.
    pub fn try_take(&mut self, burst: u32, per_sec: f64, now: Instant) -> Result<(), Duration> {
        self.refill(burst, per_sec, now);
        if self.has_one() {
            self.take();
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_sec))
        }
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

    #[test]
    fn a_sampled_rate_is_the_average_between_reads_a_window_apart() {
        let t0 = Instant::now();
        let mut rate = SampledRate::new(0, t0);
        // Read too early: no window yet.
        assert_eq!(
            rate.bits_per_second(50_000, t0 + Duration::from_millis(400)),
            0
        );
        assert_eq!(
            rate.bits_per_second(250_000, t0 + Duration::from_secs(2)),
            1_000_000
        );
        // Within the next window the last figure stands.
        assert_eq!(
            rate.bits_per_second(260_000, t0 + Duration::from_millis(2_500)),
            1_000_000
        );
        // Nothing flowed for a window: 0.
        assert_eq!(
            rate.bits_per_second(250_000, t0 + Duration::from_secs(4)),
            0
        );
    }
}
