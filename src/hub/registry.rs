//! The registry of streams: one entry per (app, name), live or awaited by players,
//! and the limits on how many of each there may be.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::RefMut;

use super::publisher::Publisher;
use super::queue::QueueLimits;
use super::status::StreamInfo;
use super::stream::Stream;
use super::subscriber::{Subscriber, SubscriberKind};
use crate::stream_name::StreamName;

/// Hub-wide bounds.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Largest GOP kept for joiners, in payload bytes.
    pub gop_max_bytes: usize,
    /// Largest GOP kept for joiners, in packets.
    pub gop_max_packets: usize,
    /// Each subscriber's queue bounds.
    pub queue: QueueLimits,
    /// How many streams may be live at once (published, or waiting for a dropped
    /// publisher within its grace period).
    pub max_streams: usize,
    /// How many streams that are not live may be awaited by players at once. Counted
    /// apart from `max_streams`, so players waiting for names nobody publishes can
    /// never keep a publisher out.
    pub max_awaited_streams: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        Self {
            gop_max_bytes: 16 << 20,
            gop_max_packets: 4096,
            queue: QueueLimits {
                max_bytes: 16 << 20,
                max_packets: 4096,
            },
            max_streams: 10_000,
            max_awaited_streams: 10_000,
        }
    }
}

/// Why the hub refused something.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    /// Someone already publishes under this name.
    #[error("stream is already being published")]
    AlreadyPublishing,
    /// The configured stream limit is reached.
    #[error("too many streams ({0})")]
    TooManyStreams(usize),
    /// Players already wait for as many streams that are not live as allowed.
    #[error("too many streams awaited by players ({0})")]
    TooManyAwaited(usize),
}

/// (app, bare name): what identifies a stream in the hub. Not a "stream key": that
/// name is kept for the secret a publisher sends (the bare name may be one, and is
/// masked wherever it is shown); nor a "stream path", which the HTTP API uses for
/// the way its URLs name a stream.
type AppAndName = (String, String);

/// The registry of streams.
#[derive(Debug)]
pub struct Hub {
    streams: DashMap<AppAndName, Arc<Stream>>,
    limits: HubLimits,
    next_id: AtomicU64,
    /// Streams that are live: a publisher, or a dropped one's grace period. Taken
    /// with a compare-and-swap before a stream goes live, given back when it ends.
    live: AtomicUsize,
    /// Held while a new entry for players is checked against
    /// `max_awaited_streams` and inserted: the map is sharded, so its length and an
    /// insert into another shard are not one atomic step, and a flood of concurrent
    /// plays would overshoot the limit.
    admission: Mutex<()>,
}

impl Hub {
    /// An empty hub.
    pub fn new(limits: HubLimits) -> Arc<Self> {
        Arc::new(Self {
            streams: DashMap::new(),
            limits,
            next_id: AtomicU64::new(1),
            live: AtomicUsize::new(0),
            admission: Mutex::new(()),
        })
    }

    fn app_and_name(app: &str, name: &str) -> AppAndName {
        (app.to_owned(), name.to_owned())
    }

    fn new_stream(&self, app: &str, name: &str) -> Arc<Stream> {
        Arc::new(Stream::new(app, name, &self.limits))
    }

    /// The entry of `app/name`, created if needed. A new entry for a publisher is
    /// checked against `max_streams` when it goes live; one for a subscriber (a
    /// player waiting for the name) against `max_awaited_streams` here. The guard
    /// locks the entry's shard.
    fn entry(
        &self,
        app: &str,
        name: &str,
        for_publisher: bool,
    ) -> Result<RefMut<'_, AppAndName, Arc<Stream>>, HubError> {
        let key = Self::app_and_name(app, name);
        if let Entry::Occupied(entry) = self.streams.entry(key.clone()) {
            return Ok(entry.into_ref());
        }
        if for_publisher {
            return Ok(self
                .streams
                .entry(key)
                .or_insert_with(|| self.new_stream(app, name)));
        }
        // The shard lock above is released: `len` locks every shard in turn. Lock
        // order: admission, then shard, then stream state.
        let _admission = self
            .admission
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let awaited = self
            .streams
            .len()
            .saturating_sub(self.live.load(Ordering::Acquire));
        if !self.streams.contains_key(&key) && awaited >= self.limits.max_awaited_streams {
            return Err(HubError::TooManyAwaited(self.limits.max_awaited_streams));
        }
        Ok(self
            .streams
            .entry(key)
            .or_insert_with(|| self.new_stream(app, name)))
    }

    /// Takes a live slot for a stream that goes live, if `max_streams` allows.
    fn admit_live(&self) -> Result<(), HubError> {
        let max = self.limits.max_streams;
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < max).then_some(live + 1)
            })
            .map(|_| ())
            .map_err(|_| HubError::TooManyStreams(max))
    }

    /// Gives back the live slot of a stream that ended.
    pub(super) fn release_live(&self) {
        let _ = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                Some(live.saturating_sub(1))
            });
    }

    /// Streams live now (published, or within a dropped publisher's grace period).
    pub fn live_count(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Claims `name` for a publisher. Players already waiting for it are kept.
    pub fn publish(self: &Arc<Self>, name: &StreamName) -> Result<Publisher, HubError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // The entry guard is held while the state is updated so that an idle stream
        // cannot be removed between lookup and claim (lock order: shard, then state).
        let entry = self.entry(&name.app, &name.name, true)?;
        let stream = Arc::clone(entry.value());
        {
            let mut state = stream.lock();
            if state.publisher.is_some() {
                return Err(HubError::AlreadyPublishing);
            }
            // A stream within its grace period is live already: its slot carries over.
            if !state.in_grace
                && let Err(err) = self.admit_live()
            {
                drop(state);
                drop(entry);
                self.remove_if_idle(&stream);
                return Err(err);
            }
            state.start_publishing(id, &name.query);
        }
        drop(entry);
        Ok(Publisher::new(Arc::clone(self), stream, id))
    }

    /// Subscribes a player to a stream, live or not yet live. The queue starts with
    /// the metadata, sequence headers and the GOP cache, so the first frame is a
    /// keyframe.
    pub fn subscribe(self: &Arc<Self>, app: &str, name: &str) -> Result<Subscriber, HubError> {
        self.subscribe_as(app, name, SubscriberKind::Player)
    }

    /// Subscribes as `kind`; only players count as the stream's audience.
    pub fn subscribe_as(
        self: &Arc<Self>,
        app: &str,
        name: &str,
        kind: SubscriberKind,
    ) -> Result<Subscriber, HubError> {
        let entry = self.entry(app, name, false)?;
        let stream = Arc::clone(entry.value());
        let queue = stream.lock().add_subscriber(self.limits.queue, kind);
        drop(entry);
        Ok(Subscriber::new(Arc::clone(self), stream, queue, kind))
    }

    /// The stream entry for `app/name`, live or awaited by players.
    pub fn stream(&self, app: &str, name: &str) -> Option<Arc<Stream>> {
        self.streams
            .get(&Self::app_and_name(app, name))
            .map(|entry| Arc::clone(entry.value()))
    }

    /// Whether someone publishes `app/name` right now, or its publisher dropped and
    /// is within its grace period.
    pub fn is_live(&self, app: &str, name: &str) -> bool {
        self.streams
            .get(&Self::app_and_name(app, name))
            .is_some_and(|s| {
                let state = s.lock();
                state.publisher.is_some() || state.in_grace
            })
    }

    /// A snapshot of every live stream.
    pub fn live_streams(&self) -> Vec<StreamInfo> {
        self.streams
            .iter()
            .filter_map(|entry| entry.value().snapshot())
            .collect()
    }

    /// Number of entries (live streams plus streams players wait for).
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether the hub holds no stream at all.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Removes `stream`'s entry once nothing holds it: no publisher, no grace
    /// period, no subscriber.
    pub(super) fn remove_if_idle(&self, stream: &Arc<Stream>) {
        let key = Self::app_and_name(&stream.app, &stream.name);
        self.streams.remove_if(&key, |_, current| {
            Arc::ptr_eq(current, stream) && {
                let state = current.lock();
                state.publisher.is_none() && !state.in_grace && state.subscribers.is_empty()
            }
        });
    }
}
