//! One live stream's relay (its destinations, its id, the publisher's kick
//! switch) and the publisher's handle on it, which ends the destinations when the
//! publisher leaves. Keeping them for a publisher coming back within its grace
//! period is [`super::grace`]'s.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::mask::Masked;
use crate::record::RecordingStatus;
use crate::stream_name::StreamName;

use super::destination::DestinationSpec;
use super::status::{DestinationSnapshot, DestinationStatus};
use super::{ControlError, Relay};

/// One destination of a live stream, with what it takes to stop it.
pub(super) struct DestinationEntry {
    pub(super) spec: DestinationSpec,
    pub(super) status: Arc<DestinationStatus>,
    pub(super) stop: CancellationToken,
}

/// A live stream's identity in the API and metrics: 128 bits from a CSPRNG,
/// as 32 lowercase hex digits. Unlike the masked key it is neither derived from
/// the key nor short enough to collide, and it lives as long as the stream's relay
/// (so a publisher that comes back within its grace period keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamId(String);

impl StreamId {
    /// A fresh id from `rng`, which must be cryptographically secure: an id must
    /// not be predictable from the ids seen before it.
    pub fn random<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for StreamId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which publisher's handle owns a stream's relay, and whether the stream waits
/// for its publisher to come back. Only [`super::grace`] moves it (orphan, adopt,
/// release), the grace period's one home on the relay's side.
#[derive(Debug, Default)]
pub(super) struct Ownership {
    /// Bumped when a returning publisher adopts the stream, so that the old
    /// publisher's handle no longer owns it.
    pub(super) generation: AtomicU64,
    /// The publisher dropped and its grace period runs.
    pub(super) orphaned: AtomicBool,
}

/// The relay side of one live stream.
pub struct StreamRelay {
    /// Its id in the API and metrics.
    pub(super) id: StreamId,
    pub(super) name: StreamName,
    pub(super) user: Option<String>,
    pub(super) stop: CancellationToken,
    pub(super) ended: CancellationToken,
    /// Cancels the current publisher's connection.
    pub(super) kick: Mutex<CancellationToken>,
    /// Which publisher's handle owns the stream, and whether it waits for its
    /// publisher to come back (see [`super::grace`]).
    pub(super) ownership: Ownership,
    /// What was wrong with the publish's destinations (refused keys, unknown
    /// parameters...), key-free and bounded: shown for as long as the stream
    /// lives, since the log line alone is easily missed.
    pub(super) problems: Vec<String>,
    /// A publisher came back within the grace period with another query string
    /// than the first publish's: its destinations were not applied (the stream
    /// carries on with the first publish's), which must not be silent.
    pub(super) other_query_ignored: AtomicBool,
    pub(super) destinations: Mutex<Vec<DestinationEntry>>,
    /// Its recording, when it is recorded (set once, right after it starts).
    pub(super) recording: std::sync::OnceLock<Arc<RecordingStatus>>,
    /// How many cue points the API may still insert (see `relay::cue`).
    pub(super) cues: Mutex<crate::rate::TokenBucket>,
}

impl StreamRelay {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Vec<DestinationEntry>> {
        self.destinations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stream's id: what the API and metrics identify it by.
    pub fn id(&self) -> &StreamId {
        &self.id
    }

    /// The app.
    pub fn app(&self) -> &str {
        &self.name.app
    }

    /// Its recording's status, when it is recorded.
    pub fn recording(&self) -> Option<&Arc<RecordingStatus>> {
        self.recording.get()
    }

    /// The stream key. Secret: for looking the stream up in the hub, never for display.
    pub fn key(&self) -> &str {
        &self.name.name
    }

    /// The user who publishes, if users are configured.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// What status shows as the stream's name: its user's name, or its masked key.
    pub fn display_name(&self) -> String {
        match &self.user {
            Some(user) => user.clone(),
            None => crate::mask::Masked(&self.name.name).to_string(),
        }
    }

    /// Takes destination `id` out of the stream and stops it (clean unpublish).
    pub(super) fn stop_destination(&self, id: &str) -> Result<DestinationEntry, ControlError> {
        let entry = {
            let mut list = self.lock();
            let index = list
                .iter()
                .position(|e| e.spec.id == id)
                .ok_or_else(|| ControlError::NotFound(format!("no destination `{id}`")))?;
            list.remove(index)
        };
        entry.stop.cancel();
        Ok(entry)
    }

    /// Every destination's status.
    pub fn snapshots(&self) -> Vec<DestinationSnapshot> {
        self.lock().iter().map(|e| e.status.snapshot()).collect()
    }
}

/// Stops a stream's destinations when dropped (the publisher left).
pub struct RelayHandle {
    pub(super) relay: Arc<Relay>,
    pub(super) key: (String, String),
    pub(super) stream: Arc<StreamRelay>,
    pub(super) generation: u64,
}

impl RelayHandle {
    /// The id of the stream this handle keeps relaying.
    pub fn stream_id(&self) -> &StreamId {
        self.stream.id()
    }
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RelayHandle({}/{} {})",
            self.key.0,
            Masked(&self.key.1),
            self.stream.id
        )
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if !self.stream.ownership.release(self.generation) {
            // A returning publisher adopted the stream.
            return;
        }
        // The hub already ended the destinations' queues (the publisher handle is
        // dropped first), so live ones drain and unpublish; this ends the ones that
        // are connecting or waiting to retry.
        self.stream.ended.cancel();
        self.relay
            .streams
            .remove_if(&self.key, |_, current| Arc::ptr_eq(current, &self.stream));
        self.relay.by_id.remove_if(self.stream.id(), |_, current| {
            Arc::ptr_eq(current, &self.stream)
        });
    }
}
