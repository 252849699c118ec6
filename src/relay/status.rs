//! What each destination is doing, held where the status API can read it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::event_log::{Event, EventLog};
use crate::hub::SubscriberQueue;
use crate::rate::SampledRate;
use crate::transcode::{EncoderSnapshot, EncoderStatus, generated};

/// A destination's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Connecting, handshaking or waiting for NetStream.Publish.Start.
    Connecting,
    /// Publishing.
    Live,
    /// Waiting before the next attempt after a failure.
    Backoff,
    /// Refused for a reason retrying will not fix soon (bad key); retried slowly.
    Failed,
    /// Ended: the stream stopped or prism is shutting down.
    Stopped,
    /// Re-encoded destination waiting for its encoder (a free slot, or its first
    /// output) before it connects.
    WaitingForEncoder,
}

impl State {
    /// The event a move to this state is recorded as.
    fn event(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Live => "live",
            State::Backoff => "backoff",
            State::Failed => "refused",
            State::Stopped => "stopped",
            State::WaitingForEncoder => "waiting_for_encoder",
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: State,
    state_since: SystemTime,
    connected_since: Option<SystemTime>,
    connected_at: Option<Instant>,
    last_error: Option<(String, SystemTime)>,
    reconnects: u64,
    rate: SampledRate,
    events: EventLog,
}

/// The live status of one destination.
#[derive(Debug)]
pub struct DestinationStatus {
    /// The destination id within its stream.
    pub id: String,
    /// The preset it came from.
    pub preset: Option<String>,
    /// Its URL with the key masked.
    pub url: String,
    /// Its re-encode profile.
    pub profile: Option<String>,
    inner: Mutex<Inner>,
    bytes_out: AtomicU64,
    /// Frames dropped by connections that have ended.
    dropped_before: AtomicU64,
    /// The current connection's queue, whose drop counter is read live: drops
    /// matter most while the destination is stalled and its task is blocked.
    queue: Mutex<Option<Arc<SubscriberQueue>>>,
    /// The encoder's own status, for a re-encoded destination.
    encoder: Option<Arc<EncoderStatus>>,
    /// The status of the encode that gives an audio-only stream a picture for
    /// this destination, once it found the stream has no video.
    generated: OnceLock<Arc<EncoderStatus>>,
}

/// A consistent copy of a destination's status.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationSnapshot {
    /// The destination id within its stream.
    pub id: String,
    /// The preset it came from.
    pub preset: Option<String>,
    /// Its URL with the key masked.
    pub url: String,
    /// Its re-encode profile.
    pub profile: Option<String>,
    /// What it is doing.
    pub state: State,
    /// When it entered that state.
    pub state_since: SystemTime,
    /// When the current connection went live.
    pub connected_since: Option<SystemTime>,
    /// Bytes written to the ingest, all connections together.
    pub bytes_out: u64,
    /// Current output bitrate in bits per second (0 when nothing flows).
    pub bitrate_bps: u64,
    /// Seconds the current connection has been live.
    pub uptime_secs: Option<u64>,
    /// Frames skipped because the ingest was too slow.
    pub dropped_frames: u64,
    /// Connections after the first.
    pub reconnects: u64,
    /// The last error, masked, and when it happened.
    pub last_error: Option<String>,
    /// When the last error happened.
    pub last_error_at: Option<SystemTime>,
    /// The encoder of a re-encoded destination.
    pub encoder: Option<EncoderSnapshot>,
    /// What happened to it lately, oldest first (its encoder's starts and
    /// failures included).
    pub events: Vec<Event>,
}

impl DestinationStatus {
    /// A destination that is about to connect for the first time; a re-encoded
    /// one shows `encoder`, the status of the encoder it shares.
    pub fn new(
        id: String,
        preset: Option<String>,
        url: String,
        profile: Option<String>,
        encoder: Option<Arc<EncoderStatus>>,
    ) -> Self {
        Self {
            id,
            preset,
            url,
            profile,
            inner: Mutex::new(Inner {
                state: State::Connecting,
                state_since: SystemTime::now(),
                connected_since: None,
                connected_at: None,
                last_error: None,
                reconnects: 0,
                rate: SampledRate::new(0, Instant::now()),
                events: {
                    let mut events = EventLog::default();
                    events.push("connecting", None);
                    events
                },
            }),
            encoder,
            generated: OnceLock::new(),
            bytes_out: AtomicU64::new(0),
            dropped_before: AtomicU64::new(0),
            queue: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves to `state`.
    pub fn set_state(&self, state: State) {
        let mut inner = self.lock();
        if inner.state != state {
            inner.state = state;
            inner.state_since = SystemTime::now();
            let detail = match state {
                State::Backoff | State::Failed => inner.last_error.as_ref().map(|(e, _)| e.clone()),
                _ => None,
            };
            inner.events.push(state.event(), detail);
        }
        if state == State::Live {
            inner.connected_since = Some(SystemTime::now());
            inner.connected_at = Some(Instant::now());
        } else if state != State::Connecting {
            inner.connected_since = None;
            inner.connected_at = None;
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.lock().state
    }

    /// How long the current connection has been live.
    pub fn live_for(&self) -> Option<std::time::Duration> {
        self.lock().connected_at.map(|at| at.elapsed())
    }

    /// Records a failure (already masked) and counts the coming reconnect.
    pub fn record_failure(&self, error: String) {
        let mut inner = self.lock();
        let event = if inner.state == State::Live {
            "dropped"
        } else {
            "failed"
        };
        inner.events.push(event, Some(error.clone()));
        inner.last_error = Some((error, SystemTime::now()));
    }

    /// Bytes written to the ingest so far (all connections; the handshake not
    /// counted), so a caller can tell whether an attempt got past the handshake.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    /// Counts a reconnect attempt.
    pub fn count_reconnect(&self) {
        self.lock().reconnects += 1;
    }

    /// Adds written bytes.
    pub fn add_bytes_out(&self, n: u64) {
        // Called per write, possibly from the publisher's task: one atomic add, no
        // lock and no clock (the rate is worked out when status is read).
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// A connection attempt starts reading from `queue`.
    pub fn attach_queue(&self, queue: Arc<SubscriberQueue>) {
        self.end_connection_drops();
        *self.queue.lock().unwrap_or_else(|p| p.into_inner()) = Some(queue);
    }

    /// The current connection ended: its drops join the total.
    pub fn end_connection_drops(&self) {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(queue) = queue {
            self.dropped_before
                .fetch_add(queue.dropped(), Ordering::Relaxed);
        }
    }

    fn dropped_frames(&self) -> u64 {
        let current = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |q| q.dropped());
        self.dropped_before.load(Ordering::Relaxed) + current
    }

    /// The status of this destination's encoder, when it re-encodes (its
    /// profile's, or the generated picture's).
    pub fn encoder(&self) -> Option<Arc<EncoderStatus>> {
        self.encoder_status().cloned()
    }

    fn encoder_status(&self) -> Option<&Arc<EncoderStatus>> {
        self.encoder.as_ref().or_else(|| self.generated.get())
    }

    /// Shows `encoder` as the destination's encoder from now on: the stream
    /// turned out to be audio-only and the destination gets a generated
    /// picture. Its profile reads [`generated::PROFILE`].
    pub fn set_generated(&self, encoder: Arc<EncoderStatus>) {
        let _ = self.generated.set(encoder);
    }

    /// A copy for the status API.
    pub fn snapshot(&self) -> DestinationSnapshot {
        let encoder = self.encoder_status();
        // The newer of the connection's and the encoder's last failure.
        let encoder_error = encoder.and_then(|e| e.last_error());
        let mut inner = self.lock();
        let last_error = match (inner.last_error.clone(), encoder_error) {
            (Some(own), Some(encoder)) if encoder.1 > own.1 => Some(encoder),
            (None, encoder) => encoder,
            (own, _) => own,
        };
        let bytes_out = self.bytes_out.load(Ordering::Relaxed);
        let bitrate_bps = inner.rate.bits_per_second(bytes_out, Instant::now());
        DestinationSnapshot {
            id: self.id.clone(),
            preset: self.preset.clone(),
            url: self.url.clone(),
            profile: self
                .profile
                .clone()
                .or_else(|| self.generated.get().map(|_| generated::PROFILE.to_owned())),
            state: inner.state,
            state_since: inner.state_since,
            connected_since: inner.connected_since,
            bytes_out,
            bitrate_bps,
            uptime_secs: inner.connected_at.map(|at| at.elapsed().as_secs()),
            dropped_frames: self.dropped_frames(),
            reconnects: inner.reconnects,
            last_error: last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at: last_error.as_ref().map(|(_, at)| *at),
            encoder: encoder.map(|e| e.snapshot()),
            events: match encoder {
                Some(encoder) => EventLog::merged(&inner.events, &encoder.events()),
                None => inner.events.events().cloned().collect(),
            },
        }
    }
}
