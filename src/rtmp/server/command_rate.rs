//! How fast a connection sends commands: the session counts them (with every other message
//! that is not media: protocol control, user control such as pings) and measures their rate
//! on the read times the driver gives it.
//!
//! An encoder sends a handful of commands when it starts (connect, releaseStream,
//! FCPublish, createStream, publish) and hardly any afterwards; a player even fewer.
//! Each command costs a decode, often an answer, sometimes a hub lookup, so a peer
//! sending millions of them keeps a thread busy for as long as it likes. A limit
//! orders of magnitude above any real client's rate closes such a peer within a
//! second and never touches an honest one.

use std::time::{Duration, Instant};

use super::SessionError;

/// The measuring window.
const WINDOW: Duration = Duration::from_secs(1);

/// Counts commands per one-second window.
#[derive(Debug)]
pub(super) struct CommandRate {
    limit: u32,
    window_start: Instant,
    /// The session's total at the start of the window.
    at_window_start: u64,
    /// The session's total at the last check.
    last_total: u64,
}

impl CommandRate {
    /// A window starting `now`, allowing `limit` commands per second.
    pub(super) fn new(limit: u32, now: Instant) -> Self {
        Self {
            limit,
            window_start: now,
            at_window_start: 0,
            last_total: 0,
        }
    }

    /// Checks the session's running total of commands, `total`, after a read at `now`.
    /// The commands since the last check arrived with that read, so they count in the
    /// window that holds `now`; an error when the window holds more than the limit.
    pub(super) fn check(&mut self, total: u64, now: Instant) -> Result<(), SessionError> {
        if now.saturating_duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.at_window_start = self.last_total;
        }
        self.last_total = total;
        let count = total.saturating_sub(self.at_window_start);
        if count > u64::from(self.limit) {
            return Err(SessionError::CommandFlood {
                count,
                limit: self.limit,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_within_the_limit_pass_in_every_window() {
        let start = Instant::now();
        let mut rate = CommandRate::new(10, start);
        let mut total = 0;
        for tick in 0..50u32 {
            // 10 per second, in reads 100 ms apart: one per read.
            total += 1;
            let now = start + Duration::from_millis(100) * tick;
            assert!(rate.check(total, now).is_ok(), "tick {tick}");
        }
    }

    #[test]
    fn more_than_the_limit_within_a_second_is_a_flood() {
        let start = Instant::now();
        let mut rate = CommandRate::new(10, start);
        assert!(rate.check(6, start).is_ok());
        let error = rate
            .check(11, start + Duration::from_millis(900))
            .unwrap_err();
        assert!(matches!(
            error,
            SessionError::CommandFlood {
                count: 11,
                limit: 10
            }
        ));
        assert_eq!(
            error.to_string(),
            "11 commands within a second, over the limit of 10 per second \
             (an encoder sends a handful)"
        );
    }

    #[test]
    fn one_read_of_too_many_commands_is_a_flood_whenever_it_comes() {
        let start = Instant::now();
        let mut rate = CommandRate::new(10, start);
        assert!(rate.check(5, start).is_ok());
        // Silence for a minute, then one read with 11 commands: they all arrived now,
        // so the quiet minute does not water them down.
        let now = start + Duration::from_secs(60);
        assert!(rate.check(16, now).is_err());
    }

    #[test]
    fn a_new_window_starts_from_the_previous_total() {
        let start = Instant::now();
        let mut rate = CommandRate::new(10, start);
        assert!(rate.check(10, start).is_ok());
        // A second later: the 10 belong to the old window; 10 more are fine.
        assert!(rate.check(20, start + WINDOW).is_ok());
        assert!(
            rate.check(21, start + WINDOW + Duration::from_millis(1))
                .is_err()
        );
    }
}
