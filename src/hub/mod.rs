//! The hub: one entry per live stream, fanning the publisher's packets out to every
//! subscriber (players now, relay destinations later).
//!
//! Each stream keeps what a newcomer needs to start cleanly (metadata, the audio and
//! video sequence headers, the GOP cache) and a list of subscriber queues. The
//! publisher pushes each packet once; subscribers get `Bytes` handles to the same
//! payload. A push never waits: a full queue makes that subscriber drop frames.

pub mod gop;
pub mod media_info;
pub mod packet;
pub mod queue;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::RefMut;

use crate::flv;
use crate::rtmp::amf0::{self, Amf0Value};
use crate::stream_name::StreamName;
pub use gop::GopCache;
pub use media_info::{AudioInfo, MediaInfo, VideoInfo};
pub use packet::{Packet, PacketKind};
pub use queue::{DirectSink, PushOutcome, QueueLimits, SubscriberQueue};

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

/// (app, bare name): what identifies a stream in the hub.
type StreamKey = (String, String);

/// The registry of streams.
#[derive(Debug)]
pub struct Hub {
    streams: DashMap<StreamKey, Arc<Stream>>,
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

/// One stream: its cached state and its subscribers.
#[derive(Debug)]
pub struct Stream {
    app: String,
    name: String,
    state: Mutex<StreamState>,
}

#[derive(Debug)]
struct StreamState {
    /// The current publisher's id; `None` while no one publishes.
    publisher: Option<u64>,
    /// The publisher dropped and may come back: subscribers are kept, waiting.
    in_grace: bool,
    /// When the publisher of a stream in its grace period dropped.
    dropped_at: Option<SystemTime>,
    /// The query string the current publisher connected with (destination keys).
    query: String,
    since: Option<Instant>,
    metadata: Option<Packet>,
    video_config: Option<Packet>,
    audio_config: Option<Packet>,
    /// Bumped whenever metadata or a sequence header changes.
    config_generation: u64,
    has_video: bool,
    gop: GopCache,
    subscribers: Vec<Arc<SubscriberQueue>>,
    packets_in: u64,
    bytes_in: u64,
    /// Times any subscriber started dropping frames for being slow.
    drop_episodes: u64,
    /// The publisher's address.
    peer: Option<SocketAddr>,
    /// When publishing started, as wall-clock time for status.
    since_wall: Option<SystemTime>,
    /// Codecs, sizes, rates and input bitrate.
    media: MediaInfo,
    /// Players attached (subscribers that are not relay destinations or encoders).
    players: usize,
    /// Timestamp of the first audio frame of a stream whose metadata announced video
    /// that has not arrived yet; see [`StreamState::audio_starts_here`].
    audio_waits_since: Option<u32>,
    /// Frames dropped because they came before the sequence header their decoder
    /// needs, since the stream entry was created.
    early_frames: u64,
}

/// How long (in the publisher's audio timestamps) audio waits for the video that the
/// metadata announced before audio alone may start a subscriber.
const VIDEO_ANNOUNCED_WAIT_MS: u32 = 3_000;

impl StreamState {
    /// Whether an audio frame stamped `timestamp` is a place where a subscriber may
    /// start. Only in a stream without video: when video is known (a sequence header
    /// or a keyframe arrived), subscribers start on a video keyframe. When the
    /// metadata announced video that has not arrived yet, audio waits for it a little
    /// (an encoder may send its first audio ahead of its first picture), so that a
    /// destination starts with the video's sequence header and keyframe rather than
    /// with audio.
    fn audio_starts_here(&mut self, timestamp: u32) -> bool {
        if self.has_video {
            return false;
        }
        if self.media.video.is_none() {
            return true;
        }
        let since = *self.audio_waits_since.get_or_insert(timestamp);
        timestamp.wrapping_sub(since) >= VIDEO_ANNOUNCED_WAIT_MS
            && timestamp.wrapping_sub(since) < u32::MAX / 2
    }
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

    fn key(app: &str, name: &str) -> StreamKey {
        (app.to_owned(), name.to_owned())
    }

    fn new_stream(&self, app: &str, name: &str) -> Arc<Stream> {
        Arc::new(Stream {
            app: app.to_owned(),
            name: name.to_owned(),
            state: Mutex::new(StreamState {
                publisher: None,
                in_grace: false,
                dropped_at: None,
                query: String::new(),
                since: None,
                metadata: None,
                video_config: None,
                audio_config: None,
                config_generation: 0,
                has_video: false,
                gop: GopCache::new(self.limits.gop_max_bytes, self.limits.gop_max_packets),
                subscribers: Vec::new(),
                packets_in: 0,
                bytes_in: 0,
                drop_episodes: 0,
                peer: None,
                since_wall: None,
                media: MediaInfo::default(),
                players: 0,
                audio_waits_since: None,
                early_frames: 0,
            }),
        })
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
    ) -> Result<RefMut<'_, StreamKey, Arc<Stream>>, HubError> {
        let key = Self::key(app, name);
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
    fn release_live(&self) {
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
            // A publisher coming back within its grace period takes over the
            // stream: subscribers carry on with the new packets.
            state.in_grace = false;
            state.dropped_at = None;
            state.publisher = Some(id);
            state.query = name.query.clone();
            state.since = Some(Instant::now());
            state.since_wall = Some(SystemTime::now());
            state.media = MediaInfo::default();
            state.bytes_in = 0;
            state.packets_in = 0;
        }
        drop(entry);
        Ok(Publisher {
            hub: Arc::clone(self),
            stream,
            id,
        })
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
        let queue = {
            let mut state = stream.lock();
            let has_gop = state.gop.packets().len() > 0;
            let queue = Arc::new(SubscriberQueue::new(
                self.limits.queue,
                !has_gop,
                state.config_generation,
            ));
            queue.push_initial(
                [&state.metadata, &state.video_config, &state.audio_config]
                    .into_iter()
                    .flatten()
                    .chain(state.gop.packets()),
            );
            state.subscribers.push(Arc::clone(&queue));
            if kind == SubscriberKind::Player {
                state.players += 1;
            }
            queue
        };
        drop(entry);
        Ok(Subscriber {
            hub: Arc::clone(self),
            stream,
            queue,
            kind,
        })
    }

    /// The stream entry for `app/name`, live or awaited by players.
    pub fn stream(&self, app: &str, name: &str) -> Option<Arc<Stream>> {
        self.streams
            .get(&Self::key(app, name))
            .map(|entry| Arc::clone(entry.value()))
    }

    /// Whether someone publishes `app/name` right now, or its publisher dropped and
    /// is within its grace period.
    pub fn is_live(&self, app: &str, name: &str) -> bool {
        self.streams.get(&Self::key(app, name)).is_some_and(|s| {
            let state = s.lock();
            state.publisher.is_some() || state.in_grace
        })
    }

    /// A snapshot of every live stream.
    pub fn live_streams(&self) -> Vec<StreamInfo> {
        self.streams
            .iter()
            .filter_map(|entry| entry.value().info())
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

    fn remove_if_idle(&self, stream: &Arc<Stream>) {
        let key = Self::key(&stream.app, &stream.name);
        self.streams.remove_if(&key, |_, current| {
            Arc::ptr_eq(current, stream) && {
                let state = current.lock();
                state.publisher.is_none() && !state.in_grace && state.subscribers.is_empty()
            }
        });
    }
}

/// Who reads a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberKind {
    /// A local player (counted as audience).
    Player,
    /// A relay destination or an encoder.
    Relay,
}

/// What the status of a live stream looks like from the outside.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// The app.
    pub app: String,
    /// The bare stream name (a stream key: mask it before showing it).
    pub name: String,
    /// When publishing started.
    pub since: Instant,
    /// When publishing started, wall clock.
    pub since_wall: SystemTime,
    /// The publisher's address.
    pub peer: Option<SocketAddr>,
    /// Subscribers attached (players, destinations, encoders).
    pub subscribers: usize,
    /// Players attached.
    pub players: usize,
    /// Media and data packets received.
    pub packets_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Input bitrate in bits per second.
    pub bitrate_bps: u64,
    /// The video track.
    pub video: Option<VideoInfo>,
    /// The audio track.
    pub audio: Option<AudioInfo>,
}

impl Stream {
    fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn info(&self) -> Option<StreamInfo> {
        let state = self.lock();
        state.publisher?;
        Some(StreamInfo {
            app: self.app.clone(),
            name: self.name.clone(),
            since: state.since?,
            since_wall: state.since_wall?,
            peer: state.peer,
            subscribers: state.subscribers.len(),
            players: state.players,
            packets_in: state.packets_in,
            bytes_in: state.bytes_in,
            bitrate_bps: state.media.bitrate_bps(),
            video: state.media.video.clone(),
            audio: state.media.audio.clone(),
        })
    }

    /// How many times a subscriber of this stream started dropping frames because
    /// it was too slow (since the stream entry was created).
    pub fn drop_episodes(&self) -> u64 {
        self.lock().drop_episodes
    }

    /// A snapshot of this stream, if live.
    pub fn snapshot(&self) -> Option<StreamInfo> {
        self.info()
    }

    /// When the publisher dropped, while the stream waits for it to come back
    /// (its grace period); `None` when live or ended.
    pub fn reconnecting_since(&self) -> Option<SystemTime> {
        let state = self.lock();
        if state.publisher.is_some() || !state.in_grace {
            return None;
        }
        state.dropped_at
    }

    /// Frames dropped because they arrived before their track's sequence header.
    pub fn early_frames(&self) -> u64 {
        self.lock().early_frames
    }

    /// Local players attached right now.
    pub fn players(&self) -> usize {
        self.lock().players
    }

    /// Subscribers attached right now.
    pub fn subscriber_count(&self) -> usize {
        self.lock().subscribers.len()
    }

    /// The query string the current publisher connected with.
    pub fn query(&self) -> String {
        self.lock().query.clone()
    }
}

/// The publishing side of a stream. Dropping it ends the stream for its subscribers.
#[derive(Debug)]
pub struct Publisher {
    hub: Arc<Hub>,
    stream: Arc<Stream>,
    id: u64,
}

impl Publisher {
    /// The stream this publisher feeds.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Records the publisher's address for status.
    pub fn set_peer(&self, peer: SocketAddr) {
        self.stream.lock().peer = Some(peer);
    }

    /// Replaces the stream's metadata and sends it to subscribers.
    pub fn set_metadata(&self, metadata: &Amf0Value, timestamp: u32) {
        self.stream.lock().media.on_metadata(metadata);
        let mut body = BytesMut::with_capacity(256);
        amf0::encode(&Amf0Value::from("onMetaData"), &mut body);
        amf0::encode(metadata, &mut body);
        self.push(Packet {
            kind: PacketKind::Metadata,
            timestamp,
            payload: body.freeze(),
            keyframe: false,
            config: false,
        });
    }

    /// Classifies and pushes an audio message. A frame whose codec needs a sequence
    /// header (AAC, Opus, FLAC) that has not arrived yet is dropped: no decoder can
    /// use it, and a platform that gets raw AAC before its configuration may show the
    /// stream as live without media.
    pub fn push_audio(&self, timestamp: u32, payload: Bytes) {
        let (config, needs_header) = match flv::parse_audio(&payload) {
            Ok(tag) if tag.track_id == 0 => (
                tag.kind == flv::AudioPacketKind::SequenceHeader,
                tag.kind == flv::AudioPacketKind::Frame && tag.codec.needs_sequence_header(),
            ),
            _ => (false, false),
        };
        self.push_checked(
            Packet {
                kind: PacketKind::Audio,
                timestamp,
                payload,
                keyframe: false,
                config,
            },
            needs_header,
        );
    }

    /// Classifies and pushes a video message. Only the default track (0) of an
    /// enhanced-RTMP multitrack stream drives the caches: extra encodings on other
    /// tracks must not replace its sequence header or restart its GOP.
    pub fn push_video(&self, timestamp: u32, payload: Bytes) {
        let (config, keyframe, needs_header) = match flv::parse_video(&payload) {
            Ok(tag) if tag.track_id == 0 => (
                tag.kind == flv::VideoPacketKind::SequenceHeader,
                tag.keyframe && tag.kind == flv::VideoPacketKind::Frame,
                tag.kind == flv::VideoPacketKind::Frame && tag.codec.needs_sequence_header(),
            ),
            _ => (false, false, false),
        };
        self.push_checked(
            Packet {
                kind: PacketKind::Video,
                timestamp,
                payload,
                keyframe,
                config,
            },
            needs_header,
        );
    }

    /// Pushes another data message (cue points, captions) as is.
    pub fn push_data(&self, timestamp: u32, payload: Bytes) {
        self.push(Packet {
            kind: PacketKind::Data,
            timestamp,
            payload,
            keyframe: false,
            config: false,
        });
    }

    /// Delivers what was pushed since the last flush to every subscriber (see
    /// [`SubscriberQueue::flush`]). The publisher's connection calls it once per
    /// batch it read, so a subscriber is woken, or written to, once per batch
    /// rather than once per packet. Never waits on a subscriber.
    pub fn flush(&self) {
        let state = self.stream.lock();
        if state.publisher != Some(self.id) {
            return;
        }
        for queue in &state.subscribers {
            queue.flush();
        }
    }

    /// Queues one packet for every subscriber; [`flush`](Self::flush) delivers it.
    /// Never waits on a subscriber.
    pub fn push(&self, packet: Packet) {
        self.push_checked(packet, false);
    }

    /// [`push`](Self::push) for a frame that, when `needs_header`, is dropped while
    /// its track has no sequence header yet (see [`push_audio`](Self::push_audio)).
    fn push_checked(&self, mut packet: Packet, needs_header: bool) {
        let mut guard = self.stream.lock();
        let state = &mut *guard;
        if needs_header {
            let header = match packet.kind {
                PacketKind::Audio => &state.audio_config,
                _ => &state.video_config,
            };
            if header.is_none() {
                state.early_frames += 1;
                if state.early_frames == 1 {
                    tracing::warn!(
                        stream = %crate::mask::Masked(&self.stream.name),
                        track = ?packet.track(),
                        "a frame arrived before its track's sequence header; such frames \
                         are dropped (no decoder can use them)"
                    );
                }
                return;
            }
        }
        state.packets_in += 1;
        state.bytes_in += packet.len() as u64;
        state.media.count(packet.len());
        match packet.kind {
            PacketKind::Video => state.media.on_video(
                &packet.payload,
                packet.timestamp,
                packet.config,
                packet.keyframe,
            ),
            PacketKind::Audio if packet.config => state.media.on_audio_config(&packet.payload),
            _ => {}
        }
        match (packet.kind, packet.config) {
            (PacketKind::Metadata, _) => {
                state.metadata = Some(packet.clone());
                state.config_generation += 1;
            }
            (PacketKind::Video, true) => {
                state.has_video = true;
                state.video_config = Some(packet.clone());
                state.config_generation += 1;
            }
            (PacketKind::Audio, true) => {
                state.audio_config = Some(packet.clone());
                state.config_generation += 1;
            }
            (PacketKind::Video, false) => {
                state.has_video |= packet.keyframe;
                state.gop.push(&packet);
            }
            (PacketKind::Audio, false) => {
                packet.keyframe = state.audio_starts_here(packet.timestamp);
                state.gop.push(&packet);
            }
            (PacketKind::Data, _) => state.gop.push(&packet),
        }
        let generation = state.config_generation;
        let configs = [
            state.metadata.as_ref(),
            state.video_config.as_ref(),
            state.audio_config.as_ref(),
        ];
        let mut episodes = 0;
        state.subscribers.retain(
            |queue| match queue.push(&packet, || (generation, configs)) {
                PushOutcome::Closed => false,
                PushOutcome::StartedDropping => {
                    episodes += 1;
                    tracing::warn!(
                        stream = %crate::mask::Masked(&self.stream.name),
                        "subscriber too slow: dropping frames until the next keyframe"
                    );
                    true
                }
                PushOutcome::Queued | PushOutcome::Dropped => true,
            },
        );
        state.drop_episodes += episodes;
    }
}

impl Publisher {
    /// Lets go of the stream without ending it: subscribers stay attached, waiting
    /// for the same name to be published again (the publisher's connection dropped
    /// and the encoder is expected back). The stream ends when the returned guard is
    /// dropped, unless a new publisher took over by then.
    pub fn detach(self) -> Orphan {
        self.flush();
        {
            let mut state = self.stream.lock();
            if state.publisher == Some(self.id) {
                state.publisher = None;
                state.in_grace = true;
                state.dropped_at = Some(SystemTime::now());
                reset_media(&mut state);
            }
        }
        Orphan {
            hub: Arc::clone(&self.hub),
            stream: Arc::clone(&self.stream),
        }
        // `self` drops here and finds no publisher of its own: nothing is closed.
    }
}

/// Forgets what the last publisher sent: a new one sends its own metadata and
/// sequence headers, and its first keyframe starts a new GOP.
fn reset_media(state: &mut StreamState) {
    state.query.clear();
    state.since = None;
    state.since_wall = None;
    state.peer = None;
    state.metadata = None;
    state.video_config = None;
    state.audio_config = None;
    state.has_video = false;
    state.audio_waits_since = None;
    state.gop.reset();
}

fn end_stream(state: &mut StreamState) {
    reset_media(state);
    state.in_grace = false;
    state.dropped_at = None;
    for queue in state.subscribers.drain(..) {
        queue.close();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.flush();
        {
            let mut state = self.stream.lock();
            if state.publisher != Some(self.id) {
                return;
            }
            state.publisher = None;
            end_stream(&mut state);
        }
        self.hub.release_live();
        self.hub.remove_if_idle(&self.stream);
    }
}

/// A stream whose publisher dropped, held open for its grace period.
#[derive(Debug)]
pub struct Orphan {
    hub: Arc<Hub>,
    stream: Arc<Stream>,
}

impl Orphan {
    /// Whether a new publisher took the stream over.
    pub fn taken_over(&self) -> bool {
        self.stream.lock().publisher.is_some()
    }
}

impl Drop for Orphan {
    fn drop(&mut self) {
        {
            let mut state = self.stream.lock();
            if state.publisher.is_some() || !state.in_grace {
                return;
            }
            end_stream(&mut state);
        }
        self.hub.release_live();
        self.hub.remove_if_idle(&self.stream);
    }
}

/// The receiving side: a player or a relay destination.
#[derive(Debug)]
pub struct Subscriber {
    hub: Arc<Hub>,
    stream: Arc<Stream>,
    queue: Arc<SubscriberQueue>,
    kind: SubscriberKind,
}

impl Subscriber {
    /// Waits for packets and moves them all into `out`; false when the stream ended.
    pub async fn recv_batch(&self, out: &mut Vec<Packet>) -> bool {
        self.queue.recv_batch(out).await
    }

    /// Frames this subscriber dropped for being slow.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }

    /// Its queue, for reading counters without the subscriber (status).
    pub fn queue(&self) -> Arc<SubscriberQueue> {
        Arc::clone(&self.queue)
    }

    /// The stream subscribed to.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.queue.close();
        {
            let mut state = self.stream.lock();
            state
                .subscribers
                .retain(|queue| !Arc::ptr_eq(queue, &self.queue));
            if self.kind == SubscriberKind::Player {
                state.players = state.players.saturating_sub(1);
            }
        }
        self.hub.remove_if_idle(&self.stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(key: &str) -> StreamName {
        StreamName::parse("live", "", key).unwrap()
    }

    const AVC_SH: &[u8] = &[0x17, 0x00, 0, 0, 0, 1, 2, 3];
    const AVC_KEY: &[u8] = &[0x17, 0x01, 0, 0, 0, 9];
    const AVC_INTER: &[u8] = &[0x27, 0x01, 0, 0, 0, 8];
    const AAC_SH: &[u8] = &[0xAF, 0x00, 0x12, 0x10];
    const AAC_RAW: &[u8] = &[0xAF, 0x01, 7];

    #[test]
    fn a_second_publisher_is_refused_until_the_first_leaves() {
        let hub = Hub::new(HubLimits::default());
        let first = hub.publish(&name("k")).unwrap();
        assert_eq!(
            hub.publish(&name("k")).unwrap_err(),
            HubError::AlreadyPublishing
        );
        assert!(hub.is_live("live", "k"));
        drop(first);
        assert!(!hub.is_live("live", "k"));
        assert!(hub.is_empty(), "idle streams are removed");
        hub.publish(&name("k")).unwrap();
    }

    #[tokio::test]
    async fn a_late_joiner_gets_config_then_the_gop_from_its_keyframe() {
        let hub = Hub::new(HubLimits::default());
        let publisher = hub.publish(&name("k")).unwrap();
        publisher.set_metadata(&Amf0Value::EcmaArray(vec![]), 0);
        publisher.push_video(0, Bytes::from_static(AVC_SH));
        publisher.push_audio(0, Bytes::from_static(AAC_SH));
        publisher.push_video(0, Bytes::from_static(AVC_KEY));
        publisher.push_audio(10, Bytes::from_static(AAC_RAW));
        publisher.push_video(33, Bytes::from_static(AVC_INTER));
        publisher.push_video(66, Bytes::from_static(AVC_KEY));
        publisher.push_video(99, Bytes::from_static(AVC_INTER));

        let subscriber = hub.subscribe("live", "k").unwrap();
        let mut got = Vec::new();
        assert!(subscriber.recv_batch(&mut got).await);
        let kinds: Vec<_> = got
            .iter()
            .map(|p| (p.kind, p.config, p.keyframe, p.timestamp))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (PacketKind::Metadata, false, false, 0),
                (PacketKind::Video, true, false, 0),
                (PacketKind::Audio, true, false, 0),
                (PacketKind::Video, false, true, 66),
                (PacketKind::Video, false, false, 99),
            ]
        );
        // The payload is the publisher's buffer, not a copy.
        assert_eq!(got[3].payload.as_ptr(), AVC_KEY.as_ptr());
    }

    #[tokio::test]
    async fn a_waiting_player_gets_the_stream_when_it_starts_and_the_end_when_it_stops() {
        let hub = Hub::new(HubLimits::default());
        let subscriber = hub.subscribe("live", "k").unwrap();
        assert!(!hub.is_live("live", "k"));
        let publisher = hub.publish(&name("k?youtube=x")).unwrap();
        assert_eq!(publisher.stream().query(), "youtube=x");
        publisher.push_video(0, Bytes::from_static(AVC_SH));
        publisher.push_video(0, Bytes::from_static(AVC_INTER));
        publisher.push_video(5, Bytes::from_static(AVC_KEY));
        drop(publisher);
        let mut got = Vec::new();
        assert!(subscriber.recv_batch(&mut got).await);
        let ts: Vec<_> = got.iter().map(|p| (p.config, p.timestamp)).collect();
        assert_eq!(
            ts,
            vec![(true, 0), (false, 5)],
            "inter frame before the first keyframe dropped"
        );
        got.clear();
        assert!(!subscriber.recv_batch(&mut got).await, "stream ended");
        drop(subscriber);
        assert!(hub.is_empty());
    }

    #[tokio::test]
    async fn a_slow_subscriber_never_blocks_the_publisher_or_others() {
        let limits = HubLimits {
            queue: QueueLimits {
                max_bytes: 1 << 20,
                max_packets: 8,
            },
            ..HubLimits::default()
        };
        let hub = Hub::new(limits);
        let publisher = hub.publish(&name("k")).unwrap();
        publisher.push_video(0, Bytes::from_static(AVC_SH));
        let slow = hub.subscribe("live", "k").unwrap();
        let fast = hub.subscribe("live", "k").unwrap();
        let mut got = Vec::new();
        let mut fast_count = 0;
        for i in 0..100u32 {
            let payload = if i % 10 == 0 { AVC_KEY } else { AVC_INTER };
            publisher.push_video(i, Bytes::from_static(payload));
            got.clear();
            fast.recv_batch(&mut got).await;
            fast_count += got.iter().filter(|p| !p.config).count();
        }
        assert_eq!(fast_count, 100);
        assert!(slow.dropped() > 0);
        got.clear();
        slow.recv_batch(&mut got).await;
        let media: Vec<_> = got.iter().filter(|p| !p.config).collect();
        assert!(media.len() <= 8);
        assert!(media[0].keyframe);
    }

    #[tokio::test]
    async fn a_publisher_back_within_its_grace_period_takes_over() {
        let hub = Hub::new(HubLimits::default());
        let first = hub.publish(&name("k")).unwrap();
        let subscriber = hub.subscribe("live", "k").unwrap();
        first.push_video(0, Bytes::from_static(AVC_SH));
        first.push_video(0, Bytes::from_static(AVC_KEY));
        let stream = hub.stream("live", "k").unwrap();
        assert!(stream.reconnecting_since().is_none(), "live");
        let orphan = first.detach();
        assert!(
            hub.is_live("live", "k"),
            "still live during the grace period"
        );
        assert!(stream.reconnecting_since().is_some(), "waiting for it");
        assert!(stream.snapshot().is_none(), "no publisher to describe");
        let second = hub.publish(&name("k")).unwrap();
        assert!(orphan.taken_over());
        assert!(stream.reconnecting_since().is_none(), "live again");
        drop(orphan);
        second.push_video(0, Bytes::from_static(AVC_SH));
        second.push_video(0, Bytes::from_static(AVC_KEY));
        let mut got = Vec::new();
        assert!(subscriber.recv_batch(&mut got).await);
        assert_eq!(
            got.len(),
            4,
            "the first config and keyframe, then the new config and keyframe"
        );
        drop(second);
        got.clear();
        assert!(
            !subscriber.recv_batch(&mut got).await,
            "ended with the second publisher"
        );
    }

    #[tokio::test]
    async fn a_grace_period_that_expires_ends_the_stream() {
        let hub = Hub::new(HubLimits::default());
        let publisher = hub.publish(&name("k")).unwrap();
        let subscriber = hub.subscribe("live", "k").unwrap();
        let stream = hub.stream("live", "k").unwrap();
        let orphan = publisher.detach();
        drop(orphan);
        assert!(!hub.is_live("live", "k"));
        assert!(stream.reconnecting_since().is_none(), "ended");
        let mut got = Vec::new();
        assert!(!subscriber.recv_batch(&mut got).await);
    }

    #[test]
    fn audio_only_streams_start_anywhere() {
        let hub = Hub::new(HubLimits::default());
        let publisher = hub.publish(&name("k")).unwrap();
        publisher.push_audio(0, Bytes::from_static(AAC_SH));
        publisher.push_audio(1, Bytes::from_static(AAC_RAW));
        publisher.push_audio(2, Bytes::from_static(AAC_RAW));
        let state = publisher.stream.lock();
        assert_eq!(state.gop.packets().len(), 1, "last audio packet only");
    }

    #[test]
    fn the_stream_limit_is_enforced() {
        let hub = Hub::new(HubLimits {
            max_streams: 1,
            max_awaited_streams: 1,
            ..HubLimits::default()
        });
        let a = hub.publish(&name("a")).unwrap();
        assert_eq!(
            hub.publish(&name("b")).unwrap_err(),
            HubError::TooManyStreams(1)
        );
        assert_eq!(hub.len(), 1, "the refused publish left no entry");
        // Players waiting for names that are not live are held to their own limit...
        let _waiting = hub.subscribe("live", "c").unwrap();
        assert_eq!(
            hub.subscribe("live", "d").unwrap_err(),
            HubError::TooManyAwaited(1)
        );
        // ...and never keep a publisher out: when `a` ends, `c` may go live.
        drop(a);
        assert_eq!(hub.live_count(), 0);
        let _c = hub.publish(&name("c")).unwrap();
        assert_eq!(hub.live_count(), 1);
        assert_eq!(
            hub.publish(&name("e")).unwrap_err(),
            HubError::TooManyStreams(1)
        );
    }

    #[test]
    fn a_grace_period_keeps_its_live_slot() {
        let hub = Hub::new(HubLimits {
            max_streams: 1,
            max_awaited_streams: 1,
            ..HubLimits::default()
        });
        let orphan = hub.publish(&name("a")).unwrap().detach();
        assert_eq!(hub.live_count(), 1, "still live while it may come back");
        let back = hub.publish(&name("a")).unwrap();
        assert_eq!(
            hub.live_count(),
            1,
            "the returning publisher takes the same slot"
        );
        drop(orphan);
        drop(back);
        assert_eq!(hub.live_count(), 0);
        assert!(hub.is_empty());
    }

    #[test]
    fn the_stream_limit_holds_under_concurrent_publishes() {
        // Many threads creating distinct streams at once: the check against the
        // limit and the insert must be one step, or the hub overshoots.
        const LIMIT: usize = 16;
        const THREADS: usize = 8;
        for _ in 0..50 {
            let hub = Hub::new(HubLimits {
                max_streams: LIMIT,
                max_awaited_streams: LIMIT,
                ..HubLimits::default()
            });
            let start = Arc::new(std::sync::Barrier::new(THREADS));
            let threads: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (hub, start) = (Arc::clone(&hub), Arc::clone(&start));
                    std::thread::spawn(move || {
                        start.wait();
                        (0..LIMIT)
                            .filter_map(|i| hub.publish(&name(&format!("t{t}-{i}"))).ok())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let publishers: Vec<Publisher> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            assert!(
                publishers.len() <= LIMIT && hub.len() <= LIMIT,
                "{} publishers, {} streams, limit {LIMIT}",
                publishers.len(),
                hub.len()
            );
        }
    }
}
