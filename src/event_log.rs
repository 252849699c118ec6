//! A short history of what happened to something (a destination, an encoder):
//! the last [`EVENTS_KEPT`] events with their time, so that a streamer who looks
//! after the fact sees what happened (connected, dropped and why, backed off,
//! refused), not only the last error.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde::Serialize;

/// Events kept; older ones are forgotten.
pub const EVENTS_KEPT: usize = 50;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When.
    pub at: SystemTime,
    /// What, as a short stable word (`live`, `dropped`, `backoff`...).
    pub event: &'static str,
    /// Why, or a figure, when there is one (never a key: callers pass masked text).
    pub detail: Option<String>,
}

/// The last [`EVENTS_KEPT`] events, oldest first.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    events: VecDeque<Event>,
}

impl EventLog {
    /// Records `event` now.
    pub fn push(&mut self, event: &'static str, detail: Option<String>) {
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            at: SystemTime::now(),
            event,
            detail,
        });
    }

    /// The events, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// `a` and `b` merged by time, the last [`EVENTS_KEPT`] of them.
    pub fn merged(a: &EventLog, b: &EventLog) -> Vec<Event> {
        let mut all: Vec<Event> = a.events().chain(b.events()).cloned().collect();
        all.sort_by_key(|e| e.at);
        let skip = all.len().saturating_sub(EVENTS_KEPT);
        all.split_off(skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_events_in_order_and_merges_by_time() {
        let mut log = EventLog::default();
        for _ in 0..EVENTS_KEPT + 5 {
            log.push("live", None);
        }
        assert_eq!(log.events().count(), EVENTS_KEPT);
        let mut other = EventLog::default();
        other.push("encoder_started", Some("pid 7".into()));
        let merged = EventLog::merged(&log, &other);
        assert_eq!(merged.len(), EVENTS_KEPT);
        assert_eq!(merged.last().unwrap().event, "encoder_started");
        assert!(merged.windows(2).all(|w| w[0].at <= w[1].at));
    }
}
