//! What a stream looks like from the outside: the snapshot the status API and the
//! metrics read, and the counters they show.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use std::time::Duration;

use bytes::Bytes;

use super::inputs::InputRole;
use super::media_info::{AudioInfo, MediaInfo, VideoInfo};
use super::stream::Stream;

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
    /// Times a subscriber (player, destination or encoder) fell behind and started
    /// dropping frames until the next keyframe, since the stream appeared.
    pub drop_episodes: u64,
    /// The video track.
    pub video: Option<VideoInfo>,
    /// The audio track.
    pub audio: Option<AudioInfo>,
    /// The input on air: the publisher, its backup or the standby slate (`None`
    /// between a switch away and the next input's keyframe).
    pub on_air: Option<InputRole>,
    /// Whether a backup publisher is connected.
    pub backup_connected: bool,
    /// Total time the standby slate was on air.
    pub standby: Duration,
    /// Why the standby slate cannot play for this stream, when it cannot.
    pub standby_unavailable: Option<String>,
}

impl Stream {
    /// A snapshot of this stream, if live.
    pub fn snapshot(&self) -> Option<StreamInfo> {
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
            drop_episodes: state.drop_episodes,
            video: state.media.video.clone(),
            audio: state.media.audio.clone(),
            on_air: state.inputs.on_air(),
            backup_connected: state.inputs.has(InputRole::Backup),
            standby: state.inputs.standby_time(None),
            standby_unavailable: state.standby_unavailable.clone(),
        })
    }

    /// The stream's app.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The stream's bare name (a stream key: mask it before showing it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a publisher (or its backup) publishes the stream, or it is within
    /// a dropped publisher's grace period: a player's wait for it is over.
    pub fn is_live(&self) -> bool {
        let state = self.lock();
        state.publisher.is_some() || state.in_grace
    }

    /// The input on air now (see [`StreamInfo::on_air`]).
    pub fn on_air(&self) -> Option<InputRole> {
        self.lock().inputs.on_air()
    }

    /// Whether a backup publisher is connected.
    pub fn backup_connected(&self) -> bool {
        self.lock().inputs.has(InputRole::Backup)
    }

    /// Time the standby slate was on air since `since` (in all with `None`): what
    /// a destination connected since then received of it.
    pub fn standby_time(&self, since: Option<std::time::Instant>) -> Duration {
        self.lock().inputs.standby_time(since)
    }

    /// Packets the publisher (`id`) pushed so far, while it is the stream's
    /// publisher: the silence watchdog compares two readings.
    pub fn primary_heard(&self, id: u64) -> Option<u64> {
        let state = self.lock();
        (state.publisher == Some(id)).then(|| state.inputs.primary_heard())
    }

    /// The publisher `id` is connected but silent: its backup or the slate go on
    /// air until it sends again.
    pub fn set_primary_silent(&self, id: u64) {
        self.lock().inputs.set_primary_silent(id);
    }

    /// Why the standby slate cannot play for this stream, when it cannot.
    pub fn standby_unavailable(&self) -> Option<String> {
        self.lock().standby_unavailable.clone()
    }

    /// Records why the standby slate cannot play for this stream (`None`: it can).
    pub fn set_standby_unavailable(&self, reason: Option<String>) {
        self.lock().standby_unavailable = reason;
    }

    /// What the slate must match: the video and audio sequence headers on air and
    /// what the stream carries (size and frame rate from its metadata).
    pub fn decoder_config(&self) -> (Option<Bytes>, Option<Bytes>, MediaInfo) {
        let state = self.lock();
        (
            state.video_header.as_ref().map(|p| p.payload.clone()),
            state.audio_header.as_ref().map(|p| p.payload.clone()),
            state.media.clone(),
        )
    }

    /// Whether the stream carries video, as far as it has shown: a destination
    /// that needs video asks before it starts (see [`super::tracks`]).
    pub fn tracks(&self) -> super::Tracks {
        self.lock().tracks()
    }

    /// How many times a subscriber of this stream started dropping frames because
    /// it was too slow (since the stream entry was created, so across a publisher's
    /// reconnect within its grace period). Shown as `drop_episodes` in the status
    /// API and `prism_stream_drop_episodes_total` in the metrics.
    pub fn drop_episodes(&self) -> u64 {
        self.lock().drop_episodes
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
