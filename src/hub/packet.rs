//! The unit the hub moves: one RTMP media or data message, shared by reference.

use bytes::Bytes;

use super::arena::PayloadArena;

use crate::rtmp::message::type_id;
use crate::timestamp::{Rebaser, Track};

/// Payloads up to this long that share their buffer are copied into one of their own
/// when they enter the hub (see [`Packet::own_small_payload`]). Above it a payload is
/// at least a quarter of the 64 KiB blocks connections read into, so the block it may
/// share costs at most a few times its size, and those blocks are in practice full
/// of other payloads the hub keeps too; below it the copy is cheap.
pub const SHARED_PAYLOAD_COPY_MAX: usize = 16 * 1024;

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
    /// An audio or video sequence header (the decoder configuration: AVC/HEVC/AV1
    /// configuration record, AAC AudioSpecificConfig) rather than a frame.
    pub sequence_header: bool,
}

/// An FLV tag's header and trailer, to write around a packet's shared payload.
pub type FlvFraming = (
    [u8; crate::flv::TAG_HEADER_LEN],
    [u8; crate::flv::PREV_TAG_SIZE_LEN],
);

impl Packet {
    /// A video message, classified by its FLV header; with it, whether it is a
    /// frame of a codec that needs a sequence header before it can be decoded.
    /// Only the default track (0) of an enhanced-RTMP multitrack stream counts as
    /// a keyframe or a sequence header: extra encodings on other tracks must not
    /// replace its configuration or restart its GOP.
    pub fn video(timestamp: u32, payload: Bytes) -> (Self, bool) {
        let (sequence_header, keyframe, needs_header) = match crate::flv::parse_video(&payload) {
            Ok(tag) if tag.track_id == 0 => (
                tag.kind == crate::flv::VideoPacketKind::SequenceHeader,
                tag.keyframe && tag.kind == crate::flv::VideoPacketKind::Frame,
                tag.kind == crate::flv::VideoPacketKind::Frame && tag.codec.needs_sequence_header(),
            ),
            _ => (false, false, false),
        };
        let packet = Self {
            kind: PacketKind::Video,
            timestamp,
            payload,
            keyframe,
            sequence_header,
        };
        (packet, needs_header)
    }

    /// An audio message, classified like [`Packet::video`].
    pub fn audio(timestamp: u32, payload: Bytes) -> (Self, bool) {
        let (sequence_header, needs_header) = match crate::flv::parse_audio(&payload) {
            Ok(tag) if tag.track_id == 0 => (
                tag.kind == crate::flv::AudioPacketKind::SequenceHeader,
                tag.kind == crate::flv::AudioPacketKind::Frame && tag.codec.needs_sequence_header(),
            ),
            _ => (false, false),
        };
        let packet = Self {
            kind: PacketKind::Audio,
            timestamp,
            payload,
            keyframe: false,
            sequence_header,
        };
        (packet, needs_header)
    }

    /// The packet as an FLV tag stamped `timestamp`: the tag header and the
    /// previous-tag-size trailer that go around its payload, which is written as
    /// it is (what an encoder's input and a recording both need).
    pub fn flv_framing(&self, timestamp: u32) -> Result<FlvFraming, crate::flv::FlvError> {
        let tag_type = match self.kind {
            PacketKind::Audio => crate::flv::TagType::Audio,
            PacketKind::Video => crate::flv::TagType::Video,
            PacketKind::Metadata | PacketKind::Data => crate::flv::TagType::Script,
        };
        let header = crate::flv::FlvWriter::tag_header(tag_type, timestamp, self.payload.len())?;
        Ok((
            header,
            crate::flv::FlvWriter::prev_tag_size(self.payload.len()),
        ))
    }

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
    /// carrying media. The one place this rule is written: timestamps
    /// ([`stamp`](Self::stamp)), the queue's drop counts and the resend of changed
    /// configuration all use it.
    pub fn is_config(&self) -> bool {
        self.sequence_header || self.kind == PacketKind::Metadata
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

    /// Gives a small payload a buffer of its own if it shares one, before the hub
    /// keeps it (GOP cache, cached headers, subscriber queues).
    ///
    /// A message that arrived in one chunk is a slice of the 64 KiB block its
    /// connection read it into (an FLV tag from an encoder's output, or a message of
    /// an aggregate, likewise): kept, that slice would keep the whole block alive,
    /// and `hub.gop_cache_max_bytes`/`hub.queue_max_bytes`, which count payload
    /// bytes, would bound far less than the memory held (about twice the payload for
    /// a stream of multi-chunk video with single-chunk audio between the frames, and
    /// more for a publisher that pads its blocks with data the hub drops). Copied once
    /// here, the payload holds only its own bytes, and the connection reuses its
    /// block. A payload that owns its buffer (a message reassembled from several
    /// chunks) is not copied. This is once per packet on the publisher's side; what
    /// each subscriber gets is still a shared handle.
    ///
    /// Media is copied into the publisher's `arena` (no allocation per packet);
    /// configuration, which the stream may keep for as long as it lives, into a
    /// buffer of its own, so that it never holds an arena block alone.
    pub fn own_small_payload(&mut self, arena: &mut PayloadArena) {
        if self.payload.len() <= SHARED_PAYLOAD_COPY_MAX && !self.payload.is_unique() {
            self.payload = if self.is_config() {
                Bytes::copy_from_slice(&self.payload)
            } else {
                arena.copy(&self.payload)
            };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: PacketKind, timestamp: u32, sequence_header: bool) -> Packet {
        Packet {
            kind,
            timestamp,
            payload: Bytes::new(),
            keyframe: false,
            sequence_header,
        }
    }

    #[test]
    fn metadata_and_sequence_headers_configure_frames_and_data_do_not() {
        assert!(packet(PacketKind::Metadata, 0, false).is_config());
        assert!(packet(PacketKind::Video, 0, true).is_config());
        assert!(packet(PacketKind::Audio, 0, true).is_config());
        assert!(!packet(PacketKind::Video, 0, false).is_config());
        assert!(!packet(PacketKind::Audio, 0, false).is_config());
        assert!(!packet(PacketKind::Data, 0, false).is_config());
    }

    #[test]
    fn a_joiner_gets_its_cached_configuration_at_zero_and_media_from_there() {
        // What a player joining an hour in receives: the cached metadata and headers
        // carry the stream's start, the GOP carries the hour.
        let mut rebaser = Rebaser::new();
        let joined = [
            packet(PacketKind::Metadata, 0, false),
            packet(PacketKind::Video, 0, true),
            packet(PacketKind::Audio, 0, true),
            packet(PacketKind::Video, 3_600_000, false),
            packet(PacketKind::Audio, 3_600_010, false),
            packet(PacketKind::Data, 3_600_020, false),
            packet(PacketKind::Video, 3_600_033, false),
        ];
        let stamped: Vec<u32> = joined.iter().map(|p| p.stamp(&mut rebaser)).collect();
        assert_eq!(stamped, vec![0, 0, 0, 0, 10, 20, 33]);
    }

    #[test]
    fn a_configuration_change_is_placed_on_the_timeline_without_moving_it() {
        let mut rebaser = Rebaser::new();
        for ts in [5_000, 5_033, 5_066] {
            packet(PacketKind::Video, ts, false).stamp(&mut rebaser);
        }
        // A new video sequence header mid-stream (an encoder restarted its codec),
        // then the keyframe it configures.
        assert_eq!(
            packet(PacketKind::Video, 5_100, true).stamp(&mut rebaser),
            100
        );
        assert_eq!(
            packet(PacketKind::Video, 5_100, false).stamp(&mut rebaser),
            100
        );
        // Metadata stamped from another clock lands where the stream is.
        assert_eq!(
            packet(PacketKind::Metadata, 0, false).stamp(&mut rebaser),
            100
        );
        assert_eq!(
            packet(PacketKind::Video, 5_133, false).stamp(&mut rebaser),
            133
        );
    }
}
