//! What a stream looks like from the outside: the snapshot the status API and the
//! metrics read, and the counters they show.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use super::media_info::{AudioInfo, VideoInfo};
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
        })
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
