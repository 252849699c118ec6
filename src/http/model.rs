//! The JSON the status API returns. Field names are a stable interface (harnesses
//! outside the repository read `streams[].app`, `streams[].name`, `streams[].id`,
//! `streams[].destinations[].id`, `.state`, `.bytes_out`, `.reconnects`,
//! `.last_error`); the OpenAPI document in `openapi.json` describes all of them.
//! No field ever carries a stream key.

use std::time::SystemTime;

use serde::Serialize;

use crate::hub::{AudioInfo, StreamInfo, VideoInfo};
use crate::relay::StreamRelay;
use crate::relay::status::{DestinationSnapshot, State};
use crate::transcode::EncoderSnapshot;

/// `GET /api/v1/streams`.
#[derive(Debug, Serialize)]
pub struct StreamList {
    /// Every live stream.
    pub streams: Vec<StreamJson>,
}

/// Whether a stream has its publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    /// The publisher is connected.
    Live,
    /// The publisher's connection dropped; its destinations stay connected for
    /// `relay.publisher_grace_secs`, waiting for it to come back.
    Reconnecting,
}

/// One live stream.
#[derive(Debug, Serialize)]
pub struct StreamJson {
    /// The stream's id (32 hex digits, random): unique among live streams, kept
    /// across a publisher's reconnect within its grace period. Use it in URLs.
    pub id: String,
    /// The RTMP app.
    pub app: String,
    /// The user's name, or the stream key masked (`****1a2b`). Two streams can
    /// show the same name (a mask is 16 bits; a user may have several keys).
    pub name: String,
    /// `live`, or `reconnecting` while the stream waits for its dropped publisher.
    pub state: StreamState,
    /// When the publisher dropped (RFC 3339), while reconnecting.
    pub reconnecting_since: Option<String>,
    /// The user publishing, when users are configured.
    pub user: Option<String>,
    /// The encoder connection; `null` while reconnecting.
    pub publisher: Option<PublisherJson>,
    /// Local players watching.
    pub players: usize,
    /// Times a subscriber of the stream (a player, a destination or an encoder)
    /// fell behind and started dropping frames until the next keyframe, since the
    /// stream appeared (kept across its publisher's reconnect). Which destination
    /// dropped how many frames is in `destinations[].dropped_frames`.
    pub drop_episodes: u64,
    /// What is wrong with the stream's destinations, for as long as it lives:
    /// destinations of its publish that were refused (a key that breaks the key
    /// rules, an unknown profile), query parameters ignored, duplicates started
    /// once, then platform constraints the stream breaks (codec, keyframe
    /// interval). Bounded; never quotes a key.
    pub warnings: Vec<String>,
    /// Where the stream goes.
    pub destinations: Vec<DestinationJson>,
}

/// The publishing encoder.
#[derive(Debug, Serialize)]
pub struct PublisherJson {
    /// Its address.
    pub remote_addr: Option<String>,
    /// When it started publishing (RFC 3339).
    pub connected_since: String,
    /// Seconds since then.
    pub uptime_secs: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Current input bitrate.
    pub bitrate_bps: u64,
    /// The video track.
    pub video: Option<VideoInfo>,
    /// The audio track.
    pub audio: Option<AudioInfo>,
}

/// One destination.
#[derive(Debug, Serialize)]
pub struct DestinationJson {
    /// Unique within the stream (`youtube`, `twitch-2`, `custom`).
    pub id: String,
    /// The preset it came from.
    pub preset: Option<String>,
    /// Its URL, key masked.
    pub url: String,
    /// connecting, live, backoff, failed, stopped or waiting_for_encoder.
    pub state: State,
    /// When the current connection went live (RFC 3339).
    pub connected_since: Option<String>,
    /// Seconds the current connection has been live.
    pub uptime_secs: Option<u64>,
    /// Bytes sent, all connections together.
    pub bytes_out: u64,
    /// Current output bitrate.
    pub bitrate_bps: u64,
    /// Frames skipped because the ingest was too slow.
    pub dropped_frames: u64,
    /// Reconnect attempts.
    pub reconnects: u64,
    /// The last error, masked.
    pub last_error: Option<String>,
    /// When it happened (RFC 3339).
    pub last_error_at: Option<String>,
    /// The re-encode profile.
    pub profile: Option<String>,
    /// The encoder of a re-encoded destination.
    pub encoder: Option<EncoderSnapshot>,
}

/// RFC 3339 in UTC, to the second.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

impl From<DestinationSnapshot> for DestinationJson {
    fn from(d: DestinationSnapshot) -> Self {
        Self {
            id: d.id,
            preset: d.preset,
            url: d.url,
            state: d.state,
            connected_since: d.connected_since.map(timestamp),
            uptime_secs: d.uptime_secs,
            bytes_out: d.bytes_out,
            bitrate_bps: d.bitrate_bps,
            dropped_frames: d.dropped_frames,
            reconnects: d.reconnects,
            last_error: d.last_error,
            last_error_at: d.last_error_at.map(timestamp),
            profile: d.profile,
            encoder: d.encoder,
        }
    }
}

impl StreamJson {
    /// Joins the hub's view of a stream with its relay.
    pub fn new(info: StreamInfo, relay: &StreamRelay, warnings: Vec<String>) -> Self {
        Self {
            id: relay.id().to_string(),
            app: info.app,
            name: relay.display_name(),
            state: StreamState::Live,
            reconnecting_since: None,
            user: relay.user().map(str::to_owned),
            publisher: Some(PublisherJson {
                remote_addr: info.peer.map(|p| p.to_string()),
                connected_since: timestamp(info.since_wall),
                uptime_secs: info.since.elapsed().as_secs(),
                bytes_in: info.bytes_in,
                bitrate_bps: info.bitrate_bps,
                video: info.video,
                audio: info.audio,
            }),
            players: info.players,
            drop_episodes: info.drop_episodes,
            warnings,
            destinations: relay.snapshots().into_iter().map(Into::into).collect(),
        }
    }

    /// A stream whose publisher dropped at `since` and may come back: no
    /// publisher, its destinations as they are (connected, waiting); `players` and
    /// `drop_episodes` from the hub.
    pub fn reconnecting(
        relay: &StreamRelay,
        since: SystemTime,
        players: usize,
        drop_episodes: u64,
        warnings: Vec<String>,
    ) -> Self {
        Self {
            id: relay.id().to_string(),
            app: relay.app().to_owned(),
            name: relay.display_name(),
            state: StreamState::Reconnecting,
            reconnecting_since: Some(timestamp(since)),
            user: relay.user().map(str::to_owned),
            publisher: None,
            players,
            drop_episodes,
            warnings,
            destinations: relay.snapshots().into_iter().map(Into::into).collect(),
        }
    }
}
