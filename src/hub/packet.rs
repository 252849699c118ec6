//! The unit the hub moves: one RTMP media or data message, shared by reference.

use bytes::Bytes;

use crate::rtmp::message::type_id;
use crate::timestamp::{Rebaser, Track};

/// What a packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// An FLV audio tag body.
    Audio,
    /// An FLV video tag body.
    Video,
    /// The stream's `onMetaData` (AMF0: "onMetaData", object).
    Metadata,
    /// Another AMF0 data message (cue points, captions), passed on as is.
    Data,
}

/// One message of a live stream. Cloning it clones a `Bytes` handle, never the payload.
#[derive(Debug, Clone)]
pub struct Packet {
    /// What it carries.
    pub kind: PacketKind,
    /// The publisher's timestamp in ms.
    pub timestamp: u32,
    /// The message body, shared by every subscriber.
    pub payload: Bytes,
    /// A point where a subscriber can start decoding: a video keyframe, or any audio
    /// packet of a stream without video.
    pub keyframe: bool,
    /// A sequence header (decoder configuration) rather than media.
    pub config: bool,
}

impl Packet {
    /// The RTMP message type to send it as.
    pub fn type_id(&self) -> u8 {
        match self.kind {
            PacketKind::Audio => type_id::AUDIO,
            PacketKind::Video => type_id::VIDEO,
            PacketKind::Metadata | PacketKind::Data => type_id::DATA_AMF0,
        }
    }

    /// The timestamp lane it belongs to.
    pub fn track(&self) -> Track {
        match self.kind {
            PacketKind::Audio => Track::Audio,
            PacketKind::Video => Track::Video,
            PacketKind::Metadata | PacketKind::Data => Track::Data,
        }
    }

    /// Whether it configures a decoder (metadata, a sequence header) rather than
    /// carrying media.
    pub fn is_config(&self) -> bool {
        self.config || self.kind == PacketKind::Metadata
    }

    /// Its timestamp for one subscriber, whose timeline `rebaser` keeps: media
    /// moves the timeline, configuration is placed on it (see
    /// [`Rebaser::stamp_config`]).
    pub fn stamp(&self, rebaser: &mut Rebaser) -> u32 {
        if self.is_config() {
            rebaser.stamp_config(self.track(), self.timestamp)
        } else {
            rebaser.rebase(self.track(), self.timestamp)
        }
    }

    /// Bytes it holds, for queue accounting.
    pub fn len(&self) -> usize {
        self.payload.len()
    }

    /// Whether its payload is empty (legacy audio "silence" messages are).
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }
}
