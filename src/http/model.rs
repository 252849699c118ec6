//! The JSON the status API returns. Field names are a stable interface (harnesses
//! outside the repository read `streams[].app`, `streams[].name`, `streams[].id`,
//! `streams[].destinations[].id`, `.state`, `.bytes_out`, `.reconnects`,
//! `.last_error`); the OpenAPI document in `openapi.json` describes all of them.
//! No field ever carries a stream key.

use std::time::SystemTime;

use serde::Serialize;

use crate::hub::{AudioInfo, InputRole, Stream, StreamInfo, VideoInfo};
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
    /// The publisher is away and the destinations get the standby slate.
    Standby,
    /// The publisher is away and the destinations get its backup's stream.
    Backup,
}

impl StreamState {
    /// The state of a stream whose input on air is `on_air`; `publisher`: whether
    /// its publisher is connected.
    pub fn of(on_air: Option<InputRole>, publisher: bool) -> Self {
        match on_air {
            Some(InputRole::Standby) => Self::Standby,
            Some(InputRole::Backup) => Self::Backup,
            Some(InputRole::Primary) => Self::Live,
            None if publisher => Self::Live,
            None => Self::Reconnecting,
        }
    }

    /// Its name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Reconnecting => "reconnecting",
            Self::Standby => "standby",
            Self::Backup => "backup",
        }
    }
}

/// Which input is on air, and the slate's accounting.
#[derive(Debug, Serialize)]
pub struct InputsJson {
    /// `primary`, `backup` or `standby`; `null` between a switch away and the
    /// next input's keyframe, or while nothing is on air (reconnecting).
    pub on_air: Option<InputRole>,
    /// Whether a backup publisher (`?role=backup`) is connected.
    pub backup_connected: bool,
    /// Seconds the standby slate was on air, in all.
    pub standby_secs: u64,
    /// Why this stream cannot get the standby slate (an HEVC/AV1 stream and an
    /// ffmpeg that cannot encode it, say): it falls back to the grace period.
    pub standby_unavailable: Option<String>,
}

impl InputsJson {
    /// The inputs of `stream`.
    pub fn of(stream: &Stream) -> Self {
        Self {
            on_air: stream.on_air(),
            backup_connected: stream.backup_connected(),
            standby_secs: stream.standby_time(None).as_secs(),
            standby_unavailable: stream.standby_unavailable(),
        }
    }
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
    /// `live`; `standby` or `backup` while the publisher is away and the slate or
    /// the backup publisher is on air; `reconnecting` while the stream waits for
    /// its dropped publisher with nothing on air.
    pub state: StreamState,
    /// Which input is on air, and the standby slate's accounting.
    pub inputs: InputsJson,
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
    /// The stream's recording, when it is recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingJson>,
    /// The stream's HLS, unless `[hls] enabled = false`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hls: Option<crate::hls::status::HlsStatus>,
    /// The node that holds the stream (`[cluster] node_id`), in a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A stream's recording.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingJson {
    /// `recording`, `finished` or `failed`.
    pub state: crate::record::status::RecordingState,
    /// The file being written (the last one once finished or failed).
    pub file: Option<String>,
    /// Files started so far.
    pub files: u32,
    /// Bytes written.
    pub bytes: u64,
    /// Frames missed because the disk could not keep up.
    pub dropped_frames: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// When it started.
    pub started_at: String,
}

impl RecordingJson {
    fn of(relay: &StreamRelay) -> Option<Self> {
        let r = relay.recording()?.snapshot();
        Some(Self {
            state: r.state,
            file: r.file,
            files: r.files,
            bytes: r.bytes,
            dropped_frames: r.dropped_frames,
            error: r.error,
            started_at: timestamp(r.started_at),
        })
    }
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
    /// Seconds of standby slate this destination's current connection received.
    pub standby_secs: u64,
    /// What happened to it lately (at most 50 events, oldest first): connecting,
    /// live, dropped or failed (with the reason), backoff, refused, stopped, and a
    /// re-encoded destination's encoder_started/encoder_restarted/encoder_failed.
    pub events: Vec<EventJson>,
}

/// One event of a destination's history.
#[derive(Debug, Serialize)]
pub struct EventJson {
    /// When (RFC 3339, milliseconds).
    pub at: String,
    /// What.
    pub event: &'static str,
    /// Why, when there is a reason (keys masked).
    pub detail: Option<String>,
}

impl DestinationJson {
    /// The destination `d` of `stream`, with the slate time its connection saw.
    pub fn of(d: DestinationSnapshot, stream: &Stream) -> Self {
        let since = d.uptime_secs.and_then(|secs| {
            std::time::Instant::now().checked_sub(std::time::Duration::from_secs(secs))
        });
        let standby = since.map_or(0, |since| stream.standby_time(Some(since)).as_secs());
        Self {
            standby_secs: standby,
            ..d.into()
        }
    }
}

/// RFC 3339 in UTC, to the second.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

impl From<DestinationSnapshot> for DestinationJson {
    fn from(d: DestinationSnapshot) -> Self {
        Self {
            standby_secs: 0,
            events: d
                .events
                .into_iter()
                .map(|e| EventJson {
                    at: humantime::format_rfc3339_millis(e.at).to_string(),
                    event: e.event,
                    detail: e.detail,
                })
                .collect(),
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
    pub fn new(
        info: StreamInfo,
        stream: &Stream,
        relay: &StreamRelay,
        warnings: Vec<String>,
    ) -> Self {
        Self {
            id: relay.id().to_string(),
            app: info.app,
            name: relay.display_name(),
            state: StreamState::of(info.on_air, true),
            inputs: InputsJson::of(stream),
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
            destinations: relay
                .snapshots()
                .into_iter()
                .map(|d| DestinationJson::of(d, stream))
                .collect(),
            recording: RecordingJson::of(relay),
            hls: None,
            node: None,
        }
    }

    /// A stream whose publisher dropped at `since` and may come back: no
    /// publisher, its destinations as they are (connected, waiting); `players` and
    /// `drop_episodes` from the hub.
    pub fn reconnecting(
        stream: &Stream,
        relay: &StreamRelay,
        since: SystemTime,
        warnings: Vec<String>,
    ) -> Self {
        let (players, drop_episodes) = (stream.players(), stream.drop_episodes());
        Self {
            id: relay.id().to_string(),
            app: relay.app().to_owned(),
            name: relay.display_name(),
            state: StreamState::of(stream.on_air(), false),
            inputs: InputsJson::of(stream),
            reconnecting_since: Some(timestamp(since)),
            user: relay.user().map(str::to_owned),
            publisher: None,
            players,
            drop_episodes,
            warnings,
            destinations: relay
                .snapshots()
                .into_iter()
                .map(|d| DestinationJson::of(d, stream))
                .collect(),
            recording: RecordingJson::of(relay),
            hls: None,
            node: None,
        }
    }
}
