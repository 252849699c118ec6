//! One stream's state: what a newcomer needs to start cleanly (metadata, sequence
//! headers, the GOP cache), its subscribers' queues, and its counters.
//!
//! Everything here sits behind the stream's one lock; the publisher, its
//! subscribers, the grace period and the status readers all take it, briefly, and
//! never while they write to a socket (see `subscriber_list`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use super::gop::GopCache;
use super::inputs::{InputRole, Inputs};
use super::limits::HubLimits;
use super::media_info::MediaInfo;
use super::packet::{Packet, PacketKind};
use super::queue::{QueueLimits, SubscriberQueue};
use super::subscriber_list::{SubscriberKind, SubscriberList};
use super::tracks::{self, AudioSpan, Tracks};

/// One stream: its cached state and its subscribers.
#[derive(Debug)]
pub struct Stream {
    pub(super) app: String,
    pub(super) name: String,
    pub(super) state: Mutex<StreamState>,
}

/// What a stream holds under its lock.
#[derive(Debug)]
pub(super) struct StreamState {
    /// The current publisher's id; `None` while no one publishes.
    pub(super) publisher: Option<u64>,
    /// The inputs (publisher, backup, standby slate) and which one is on air.
    pub(super) inputs: Inputs,
    /// The publisher dropped and may come back: subscribers are kept, waiting.
    pub(super) in_grace: bool,
    /// When the publisher of a stream in its grace period dropped.
    pub(super) dropped_at: Option<SystemTime>,
    /// The query string the current publisher connected with (destination keys).
    pub(super) query: String,
    pub(super) since: Option<Instant>,
    /// The latest onMetaData, for joiners.
    pub(super) metadata: Option<Packet>,
    /// The latest video sequence header (decoder configuration), for joiners.
    pub(super) video_header: Option<Packet>,
    /// The latest audio sequence header, for joiners.
    pub(super) audio_header: Option<Packet>,
    /// Bumped whenever metadata or a sequence header changes.
    pub(super) config_generation: u64,
    pub(super) has_video: bool,
    pub(super) gop: GopCache,
    pub(super) subscribers: SubscriberList,
    pub(super) packets_in: u64,
    pub(super) bytes_in: u64,
    /// Times any subscriber started dropping frames for being slow (status shows it).
    pub(super) drop_episodes: u64,
    /// The publisher's address.
    pub(super) peer: Option<SocketAddr>,
    /// When publishing started, as wall-clock time for status.
    pub(super) since_wall: Option<SystemTime>,
    /// Codecs, sizes, rates and input bitrate.
    pub(super) media: MediaInfo,
    /// Players attached (subscribers that are not relay destinations or encoders).
    pub(super) players: usize,
    /// Timestamp of the first audio frame of a stream whose metadata announced video
    /// that has not arrived yet; see [`StreamState::audio_starts_here`].
    pub(super) audio_waits_since: Option<u32>,
    /// The audio frames received from this input, for [`super::Tracks`].
    pub(super) audio_span: AudioSpan,
    /// Frames dropped because they came before the sequence header their decoder
    /// needs, since the stream entry was created.
    pub(super) early_frames: u64,
    /// Why the standby slate cannot play for this stream, when it cannot.
    pub(super) standby_unavailable: Option<String>,
}

/// How long (in the publisher's audio timestamps) audio waits for the video that the
/// metadata announced before audio alone may start a subscriber.
const VIDEO_ANNOUNCED_WAIT_MS: u32 = 3_000;

impl Stream {
    /// A stream nobody publishes yet, with empty caches bounded by `limits`.
    pub(super) fn new(app: &str, name: &str, limits: &HubLimits) -> Self {
        Self {
            app: app.to_owned(),
            name: name.to_owned(),
            state: Mutex::new(StreamState {
                publisher: None,
                inputs: Inputs::default(),
                in_grace: false,
                dropped_at: None,
                query: String::new(),
                since: None,
                metadata: None,
                video_header: None,
                audio_header: None,
                config_generation: 0,
                has_video: false,
                gop: GopCache::new(limits.gop_max_bytes, limits.gop_max_packets),
                subscribers: SubscriberList::default(),
                packets_in: 0,
                bytes_in: 0,
                drop_episodes: 0,
                peer: None,
                since_wall: None,
                media: MediaInfo::default(),
                players: 0,
                audio_waits_since: None,
                audio_span: AudioSpan::default(),
                early_frames: 0,
                standby_unavailable: None,
            }),
        }
    }

    /// The stream's state. A panic while it was held cannot leave it in a state
    /// that matters more than the stream; carry on rather than cascade.
    pub(super) fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl StreamState {
    /// Hands the stream to publisher `id`. A publisher coming back within its grace
    /// period takes over the stream: subscribers carry on with the new packets.
    pub(super) fn start_publishing(&mut self, id: u64, query: &str) {
        if !self.in_grace && self.inputs.on_air() == Some(InputRole::Standby) {
            // The title card that players waited with: off air at once, and out of
            // the caches, so that the destinations starting now begin with this
            // publisher's first keyframe, not with the card.
            self.inputs.off_air();
            self.reset_media();
        }
        self.in_grace = false;
        self.dropped_at = None;
        self.publisher = Some(id);
        self.inputs.join(InputRole::Primary, id);
        self.query = query.to_owned();
        self.since = Some(Instant::now());
        self.since_wall = Some(SystemTime::now());
        self.media = MediaInfo::default();
        self.bytes_in = 0;
        self.packets_in = 0;
    }

    /// A new subscriber's queue, holding what it needs to start: the metadata, the
    /// sequence headers and the GOP cache, so its first frame is a keyframe.
    pub(super) fn add_subscriber(
        &mut self,
        limits: QueueLimits,
        kind: SubscriberKind,
    ) -> Arc<SubscriberQueue> {
        let has_gop = self.gop.packets().len() > 0;
        let from_the_first = kind == SubscriberKind::Recorder && self.packets_in == 0;
        let queue = Arc::new(SubscriberQueue::new(
            limits,
            !has_gop && !from_the_first,
            self.config_generation,
        ));
        queue.push_initial(
            [&self.metadata, &self.video_header, &self.audio_header]
                .into_iter()
                .flatten()
                .chain(self.gop.packets()),
        );
        self.subscribers.add(Arc::clone(&queue));
        if kind == SubscriberKind::Player {
            self.players += 1;
        }
        queue
    }

    /// Counts a packet the publisher sent and keeps what joiners will need of it:
    /// metadata and sequence headers replace the cached ones, media goes into the
    /// GOP cache (other data messages do not). Decides whether an audio frame is a place to start (see
    /// [`audio_starts_here`](Self::audio_starts_here)).
    pub(super) fn record(&mut self, packet: &mut Packet) {
        self.packets_in += 1;
        self.bytes_in += packet.len() as u64;
        self.media.count(packet.len());
        match packet.kind {
            PacketKind::Video => self.media.on_video(
                &packet.payload,
                packet.timestamp,
                packet.sequence_header,
                packet.keyframe,
            ),
            PacketKind::Audio if packet.sequence_header => {
                self.media.on_audio_header(&packet.payload)
            }
            _ => {}
        }
        match (packet.kind, packet.sequence_header) {
            (PacketKind::Metadata, _) => {
                self.metadata = Some(packet.clone());
                self.config_generation += 1;
            }
            (PacketKind::Video, true) => {
                self.has_video = true;
                self.video_header = Some(packet.clone());
                self.config_generation += 1;
            }
            (PacketKind::Audio, true) => {
                self.audio_header = Some(packet.clone());
                self.config_generation += 1;
            }
            (PacketKind::Video, false) => {
                self.has_video |= packet.keyframe;
                self.gop.push(packet);
            }
            (PacketKind::Audio, false) => {
                self.audio_span.add(packet.timestamp);
                packet.keyframe = self.audio_starts_here(packet.timestamp);
                self.gop.push(packet);
            }
            // A data message (a cue point, a caption) means "now": one replayed
            // to a joiner from the cache would fire an ad break twice.
            (PacketKind::Data, _) => {}
        }
    }

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

    /// Whether the stream carries video, as far as it has shown (see
    /// [`super::tracks`]).
    pub(super) fn tracks(&self) -> Tracks {
        let metadata = self.metadata.as_ref().map(|_| self.media.video.is_some());
        tracks::classify(
            self.has_video || self.video_header.is_some(),
            metadata,
            self.audio_span,
            VIDEO_ANNOUNCED_WAIT_MS,
        )
    }

    /// Forgets what the last publisher sent: a new one sends its own metadata and
    /// sequence headers, and its first keyframe starts a new GOP.
    pub(super) fn reset_media(&mut self) {
        self.query.clear();
        self.since = None;
        self.since_wall = None;
        self.peer = None;
        self.metadata = None;
        self.video_header = None;
        self.audio_header = None;
        self.has_video = false;
        self.audio_waits_since = None;
        self.audio_span = AudioSpan::default();
        self.gop.reset();
    }

    /// Ends the stream for its subscribers: they drain what is queued, then see the
    /// end.
    pub(super) fn end(&mut self) {
        self.reset_media();
        self.inputs.reset();
        self.in_grace = false;
        self.dropped_at = None;
        self.subscribers.close_all();
    }
}
