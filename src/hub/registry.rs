//! The registry of streams: one entry per (app, name), live or awaited by players,
//! and the limits on how many of each there may be.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::RefMut;

use super::directory::{AppAndName, Directory};
use super::inputs::InputRole;
use super::limits::{HubError, HubLimits};
use super::publisher::Publisher;
use super::status::StreamInfo;
use super::stream::Stream;
use super::subscriber::{Subscriber, SubscriberKind};
use crate::stream_name::StreamName;

/// The registry of streams.
#[derive(Debug)]
pub struct Hub {
    directory: Arc<Directory>,
    limits: HubLimits,
    next_id: AtomicU64,
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
            directory: Arc::default(),
            limits,
            next_id: AtomicU64::new(1),
            admission: Mutex::new(()),
        })
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
        let key = Directory::app_and_name(app, name);
        if let Entry::Occupied(entry) = self.directory.streams.entry(key.clone()) {
            return Ok(entry.into_ref());
        }
        if for_publisher {
            return Ok(self
                .directory
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
            .directory
            .streams
            .len()
            .saturating_sub(self.directory.live.load(Ordering::Acquire));
        if !self.directory.streams.contains_key(&key) && awaited >= self.limits.max_awaited_streams
        {
            return Err(HubError::TooManyAwaited(self.limits.max_awaited_streams));
        }
        Ok(self
            .directory
            .streams
            .entry(key)
            .or_insert_with(|| self.new_stream(app, name)))
    }

    /// Takes a live slot for a stream that goes live, if `max_streams` allows.
    fn admit_live(&self) -> Result<(), HubError> {
        let max = self.limits.max_streams;
        self.directory
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < max).then_some(live + 1)
            })
            .map(|_| ())
            .map_err(|_| HubError::TooManyStreams(max))
    }

    /// Streams live now (published, or within a dropped publisher's grace period).
    pub fn live_count(&self) -> usize {
        self.directory.live.load(Ordering::Acquire)
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
                self.directory.remove_if_idle(&stream);
                return Err(err);
            }
            state.start_publishing(id, &name.query);
        }
        drop(entry);
        Ok(Publisher::new(
            Arc::clone(&self.directory),
            stream,
            id,
            InputRole::Primary,
        ))
    }

    /// Claims `name` for a backup publisher: accepted while the stream is live (its
    /// publisher is connected or within its grace period) and has no backup yet.
    /// Its packets go out only while the publisher is away (see [`InputRole`]).
    pub fn publish_backup(self: &Arc<Self>, name: &StreamName) -> Result<Publisher, HubError> {
        let stream = self
            .stream(&name.app, &name.name)
            .ok_or(HubError::NoPrimary)?;
        {
            let mut state = stream.lock();
            if state.publisher.is_none() && !state.in_grace {
                return Err(HubError::NoPrimary);
            }
            if state.inputs.has(InputRole::Backup) {
                return Err(HubError::AlreadyPublishing);
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            state.inputs.join(InputRole::Backup, id);
            drop(state);
            Ok(Publisher::new(
                Arc::clone(&self.directory),
                stream,
                id,
                InputRole::Backup,
            ))
        }
    }

    /// The standby input of `app/name`, for the slate that plays while no
    /// publisher is connected; `None` when the stream has no entry or already has a
    /// standby input.
    pub fn standby(self: &Arc<Self>, app: &str, name: &str) -> Option<Publisher> {
        let stream = self.stream(app, name)?;
        let mut state = stream.lock();
        if state.inputs.has(InputRole::Standby) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        state.inputs.join(InputRole::Standby, id);
        drop(state);
        Some(Publisher::new(
            Arc::clone(&self.directory),
            stream,
            id,
            InputRole::Standby,
        ))
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
        Ok(Subscriber::new(
            Arc::clone(&self.directory),
            stream,
            queue,
            kind,
        ))
    }

    /// The stream entry for `app/name`, live or awaited by players.
    pub fn stream(&self, app: &str, name: &str) -> Option<Arc<Stream>> {
        self.directory
            .streams
            .get(&Directory::app_and_name(app, name))
            .map(|entry| Arc::clone(entry.value()))
    }

    /// Whether someone publishes `app/name` right now, or its publisher dropped and
    /// is within its grace period.
    pub fn is_live(&self, app: &str, name: &str) -> bool {
        self.directory
            .streams
            .get(&Directory::app_and_name(app, name))
            .is_some_and(|s| {
                let state = s.lock();
                state.publisher.is_some() || state.in_grace
            })
    }

    /// A snapshot of every live stream.
    pub fn live_streams(&self) -> Vec<StreamInfo> {
        self.directory
            .streams
            .iter()
            .filter_map(|entry| entry.value().snapshot())
            .collect()
    }

    /// Number of entries (live streams plus streams players wait for).
    pub fn len(&self) -> usize {
        self.directory.streams.len()
    }

    /// Whether the hub holds no stream at all.
    pub fn is_empty(&self) -> bool {
        self.directory.streams.is_empty()
    }
}
