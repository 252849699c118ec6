//! What an encoder reports about itself: its process, restarts, progress and last
//! failure. The destination that owns the encoder shows it in its own status; the
//! encoder knows nothing of destinations, which is what lets the relay sit above
//! transcoding rather than beside it.

use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use crate::event_log::EventLog;

/// The re-encoding side of a destination, for status.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EncoderSnapshot {
    /// The running ffmpeg's process id.
    pub pid: Option<u32>,
    /// How many times ffmpeg was (re)started after the first.
    pub restarts: u64,
    /// Frames encoded per second.
    pub fps: Option<f64>,
    /// Encoding speed relative to real time.
    pub speed: Option<f64>,
    /// Encoder output bitrate in kbit/s.
    pub bitrate_kbps: Option<f64>,
}

/// The live status of one encoder, shared by its task and its destination.
#[derive(Debug, Default)]
pub struct EncoderStatus {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    snapshot: EncoderSnapshot,
    last_error: Option<(String, SystemTime)>,
    cannot_start: bool,
    events: EventLog,
}

impl EncoderStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Updates the process and progress figures.
    pub fn update(&self, update: impl FnOnce(&mut EncoderSnapshot)) {
        update(&mut self.lock().snapshot);
    }

    /// Records why a run failed. `cannot_start`: ffmpeg could not even be started
    /// and nothing was ever encoded, so the destination has nothing to send until
    /// that is fixed (a missing binary, no permission); a later start clears it.
    pub fn record_failure(&self, error: String, cannot_start: bool) {
        let mut inner = self.lock();
        inner.events.push("encoder_failed", Some(error.clone()));
        inner.last_error = Some((error, SystemTime::now()));
        inner.cannot_start = cannot_start;
    }

    /// ffmpeg started: whatever kept it from starting is gone.
    pub fn started(&self, pid: Option<u32>) {
        let mut inner = self.lock();
        let restart = inner.snapshot.restarts > 0 || inner.last_error.is_some();
        let event = if restart {
            "encoder_restarted"
        } else {
            "encoder_started"
        };
        inner
            .events
            .push(event, pid.map(|pid| format!("pid {pid}")));
        inner.snapshot.pid = pid;
        inner.cannot_start = false;
    }

    /// Whether ffmpeg could not be started and nothing was encoded yet.
    pub fn cannot_start(&self) -> bool {
        self.lock().cannot_start
    }

    /// The last failure and when it happened.
    pub fn last_error(&self) -> Option<(String, SystemTime)> {
        self.lock().last_error.clone()
    }

    /// Its history: starts, restarts and failures.
    pub fn events(&self) -> EventLog {
        self.lock().events.clone()
    }

    /// A copy of the figures.
    pub fn snapshot(&self) -> EncoderSnapshot {
        self.lock().snapshot.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_history_names_starts_failures_and_restarts() {
        let status = EncoderStatus::default();
        status.started(Some(10));
        status.record_failure("ffmpeg exited with 1".into(), false);
        status.started(Some(11));
        let events: Vec<_> = status
            .events()
            .events()
            .map(|e| (e.event, e.detail.clone().unwrap_or_default()))
            .collect();
        assert_eq!(
            events,
            vec![
                ("encoder_started", "pid 10".to_owned()),
                ("encoder_failed", "ffmpeg exited with 1".to_owned()),
                ("encoder_restarted", "pid 11".to_owned()),
            ]
        );
    }

    #[test]
    fn a_start_clears_what_kept_ffmpeg_from_starting() {
        let status = EncoderStatus::default();
        status.record_failure("cannot start ffmpeg".into(), true);
        assert!(status.cannot_start());
        status.started(Some(42));
        assert!(!status.cannot_start());
        assert_eq!(status.snapshot().pid, Some(42));
        assert_eq!(status.last_error().unwrap().0, "cannot start ffmpeg");
    }
}
