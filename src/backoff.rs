//! Jittered exponential backoff for reconnecting destinations.
//!
//! The first retry comes quickly (a dropped TCP connection often recovers at
//! once), later ones spread out up to a cap so a dead ingest is not hammered, and
//! jitter keeps many destinations that failed together from retrying in lockstep.

use std::time::Duration;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay, jitter included: the operator's `backoff_max_secs` is a
    /// promise about how long a destination can stay down before its next try.
    pub max: Duration,
    /// Each failure multiplies the delay by this.
    pub multiplier: f64,
    /// Random spread: a delay d becomes d * (1 ± jitter).
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

/// The delay sequence of one destination.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    /// A fresh sequence.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            failures: 0,
        }
    }

    /// The delay before the next attempt; `unit` in [0, 1) is the random draw
    /// (a parameter so that tests are deterministic).
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let exponent = self.failures.min(32) as i32;
        self.failures = self.failures.saturating_add(1);
        let base = self.policy.initial.as_secs_f64() * self.policy.multiplier.powi(exponent);
        let max = self.policy.max.as_secs_f64();
        let spread = 1.0 + self.policy.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        // Jitter first, then the cap: jittering a capped delay would reach 1.2 x max.
        Duration::from_secs_f64((base.min(max) * spread).clamp(0.0, max))
    }

    /// The delay before the next attempt, with random jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::random::<f64>())
    }

    /// Back to the first delay, after a connection stayed up long enough.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay_with(0.5).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay_with(0.5), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let mut low = Backoff::new(BackoffPolicy::default());
        let mut high = Backoff::new(BackoffPolicy::default());
        assert_eq!(low.next_delay_with(0.0), Duration::from_millis(800));
        assert_eq!(high.next_delay_with(1.0), Duration::from_millis(1200));
        let mut random = Backoff::new(BackoffPolicy::default());
        for _ in 0..100 {
            let d = random.next_delay();
            assert!(d <= Duration::from_secs(30), "never past the cap: {d:?}");
        }
        // At the cap, jitter still spreads retries, downwards only.
        let mut capped = Backoff::new(BackoffPolicy::default());
        for _ in 0..6 {
            capped.next_delay_with(0.5);
        }
        assert_eq!(capped.next_delay_with(1.0), Duration::from_secs(30));
        assert_eq!(capped.next_delay_with(0.0), Duration::from_secs(24));
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(BackoffPolicy::default());
        for _ in 0..10_000 {
            assert!(b.next_delay_with(0.5) <= Duration::from_secs(30));
        }
    }
}
