//! Classification of RTMP video message payloads (FLV VIDEODATA), legacy
//! and Enhanced RTMP.
//!
//! Layouts handled (E-RTMP v2 spec, FFmpeg flvenc, OBS flv-mux):
//! - legacy: byte 0 = FrameType(4) | CodecID(4); for AVC (and the
//!   non-standard but widespread HEVC CodecID 12) byte 1 = AVCPacketType
//!   (0 sequence header, 1 NALUs, 2 end of sequence) and bytes 2..5 the SI24
//!   composition time; FrameType 5 is a command frame with no picture.
//! - enhanced: byte 0 = IsExHeader(1) | FrameType(3) | VideoPacketType(4),
//!   then ModEx blocks, then either a command byte (command frames), a
//!   Multitrack prefix, or the FourCC.

use super::FlvError;
use super::wire::{Cursor, fourcc, read_track_prefix, skip_mod_ex};

/// Video codec named by a legacy CodecID or an E-RTMP FourCC.
///
/// `Copy` and allocation-free so the hub can keep it per stream and the
/// status API can report it without touching the payload again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// Sorenson H.263 (legacy CodecID 2).
    H263,
    /// Screen video (legacy CodecID 3).
    ScreenVideo,
    /// On2 VP6 (legacy CodecID 4).
    Vp6,
    /// On2 VP6 with alpha channel (legacy CodecID 5).
    Vp6Alpha,
    /// Screen video version 2 (legacy CodecID 6).
    ScreenVideo2,
    /// H.264 (legacy CodecID 7, FourCC `avc1`).
    Avc,
    /// H.265 (FourCC `hvc1`; also the non-standard legacy CodecID 12 that
    /// some Chinese CDN encoders and SRS use).
    Hevc,
    /// AV1 (FourCC `av01`).
    Av1,
    /// VP9 (FourCC `vp09`).
    Vp9,
    /// VP8 (FourCC `vp08`).
    Vp8,
    /// H.266 (FourCC `vvc1`).
    Vvc,
    /// The packet names no codec: an E-RTMP command frame carries a command
    /// byte where the FourCC would be.
    Unspecified,
    /// Any other codec: the legacy CodecID (0..=15) when the tag is legacy,
    /// the big-endian FourCC when it is enhanced (see [`VideoTag::enhanced`]).
    Other(u32),
}

impl VideoCodec {
    /// Maps a legacy FLV CodecID (low nibble of byte 0); also what a numeric
    /// `videocodecid` in onMetaData means when it is below 16.
    pub fn from_legacy_id(id: u8) -> Self {
        match id {
            2 => Self::H263,
            3 => Self::ScreenVideo,
            4 => Self::Vp6,
            5 => Self::Vp6Alpha,
            6 => Self::ScreenVideo2,
            7 => Self::Avc,
            LEGACY_HEVC_ID => Self::Hevc,
            other => Self::Other(u32::from(other)),
        }
    }

    /// Maps an E-RTMP video FourCC (big-endian `u32`, as on the wire and as
    /// onMetaData's numeric `videocodecid`, e.g. av01 = 1635135537).
    pub fn from_fourcc(code: u32) -> Self {
        match code {
            FOURCC_AVC1 => Self::Avc,
            FOURCC_HVC1 => Self::Hevc,
            FOURCC_AV01 => Self::Av1,
            FOURCC_VP09 => Self::Vp9,
            FOURCC_VP08 => Self::Vp8,
            FOURCC_VVC1 => Self::Vvc,
            other => Self::Other(other),
        }
    }

    /// Whether a decoder needs this codec's sequence header (the AVC/HEVC/VVC
    /// decoder configuration record, AV1's and VP9's codec configuration) before
    /// its first frame: frames sent earlier are useless to it.
    pub fn needs_sequence_header(self) -> bool {
        matches!(
            self,
            Self::Avc | Self::Hevc | Self::Av1 | Self::Vp9 | Self::Vvc
        )
    }

    /// Short lowercase name for logs and the status API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::H263 => "h263",
            Self::ScreenVideo => "screen",
            Self::Vp6 => "vp6",
            Self::Vp6Alpha => "vp6a",
            Self::ScreenVideo2 => "screen2",
            Self::Avc => "h264",
            Self::Hevc => "hevc",
            Self::Av1 => "av1",
            Self::Vp9 => "vp9",
            Self::Vp8 => "vp8",
            Self::Vvc => "vvc",
            Self::Unspecified => "unspecified",
            Self::Other(_) => "other",
        }
    }

    /// Codecs whose coded frames carry an SI24 composition offset (they have
    /// B-frames and an AVCC-style sample layout).
    fn has_composition_time(self) -> bool {
        matches!(self, Self::Avc | Self::Hevc | Self::Vvc)
    }
}

/// Non-standard legacy CodecID for HEVC (SRS, ksvc/Chinese CDN FFmpeg
/// forks). Same AVCPacketType layout as AVC, so classifying it keeps GOP
/// caching working for those publishers.
const LEGACY_HEVC_ID: u8 = 12;
const FOURCC_AVC1: u32 = fourcc(b"avc1");
const FOURCC_HVC1: u32 = fourcc(b"hvc1");
const FOURCC_AV01: u32 = fourcc(b"av01");
const FOURCC_VP09: u32 = fourcc(b"vp09");
const FOURCC_VP08: u32 = fourcc(b"vp08");
const FOURCC_VVC1: u32 = fourcc(b"vvc1");

/// The FLV/E-RTMP VideoFrameType, kept so a slow-subscriber policy can drop
/// disposable frames before ordinary inter frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoFrameType {
    /// 1: a keyframe (seekable frame).
    Key,
    /// 2: an inter frame.
    Inter,
    /// 3: a disposable inter frame (H.263 only in practice).
    DisposableInter,
    /// 4: a generated keyframe (reserved for server use by the FLV spec).
    GeneratedKey,
    /// 5: a command/info frame: no picture follows.
    Command,
    /// 0, 6 or 7: reserved values.
    Reserved(u8),
}

impl VideoFrameType {
    fn from_bits(value: u8) -> Self {
        match value {
            1 => Self::Key,
            2 => Self::Inter,
            3 => Self::DisposableInter,
            4 => Self::GeneratedKey,
            5 => Self::Command,
            other => Self::Reserved(other),
        }
    }
}

/// What a video packet carries, as far as a relay cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoPacketKind {
    /// Decoder configuration (AVC sequence header, E-RTMP SequenceStart or
    /// MPEG2TSSequenceStart): cache it, replace the cache on every new one,
    /// replay it to late joiners.
    SequenceHeader,
    /// Coded picture data (AVC NALUs, E-RTMP CodedFrames/CodedFramesX).
    Frame,
    /// End of sequence: must not be cached as a sequence header nor start a GOP.
    EndOfSequence,
    /// E-RTMP Metadata (AMF `colorInfo` HDR object): sent before the
    /// sequence header by OBS for HDR; worth replaying with it.
    Metadata,
    /// Command/info frame (FrameType 5): no picture.
    Command,
    /// A reserved or unknown packet type: forward as-is.
    Other,
}

/// Classification of one video payload. `Copy`, no borrowed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoTag {
    /// Codec of the packet (of its first track when multitrack).
    pub codec: VideoCodec,
    /// What the packet carries.
    pub kind: VideoPacketKind,
    /// True only for a coded frame whose FrameType is keyframe (1): the
    /// point where a GOP starts. Sequence headers, end-of-sequence and
    /// metadata packets are sent with FrameType 1 by encoders but are *not*
    /// keyframes here, so a GOP cache never restarts on them.
    pub keyframe: bool,
    /// The raw frame type, for drop priorities.
    pub frame_type: VideoFrameType,
    /// True when the E-RTMP ExHeader (IsExHeader bit) was used.
    pub enhanced: bool,
    /// True when the E-RTMP Multitrack wrapper was used; the other fields
    /// then describe the first track only.
    pub multitrack: bool,
    /// Track id of the (first) track: 0, the default track, unless
    /// multitrack. OBS sends extra encodings on tracks >= 1, so a hub must
    /// key its sequence-header cache by track or ignore tracks != 0.
    pub track_id: u8,
    /// Composition offset (pts - dts) in ms; 0 when absent.
    pub composition_time: i32,
}

/// Classifies an RTMP video message payload.
///
/// # Errors
/// [`FlvError::EmptyPayload`] for an empty payload, [`FlvError::Truncated`]
/// when the header stops early, [`FlvError::UnknownMultitrackType`] for a
/// reserved multitrack layout. Callers forward such packets as opaque data.
pub fn parse_video(payload: &[u8]) -> Result<VideoTag, FlvError> {
    let (&first, rest) = payload.split_first().ok_or(FlvError::EmptyPayload)?;
    let mut cur = Cursor::new(rest);
    if first & IS_EX_HEADER != 0 {
        parse_enhanced(first, &mut cur)
    } else {
        parse_legacy(first, &mut cur)
    }
}

/// True when the payload is a coded keyframe (see [`VideoTag::keyframe`]);
/// false for anything else, including unparsable payloads.
pub fn is_video_keyframe(payload: &[u8]) -> bool {
    parse_video(payload).is_ok_and(|tag| tag.keyframe)
}

/// True when the payload is a video sequence header of any track (see
/// [`VideoTag::track_id`] for why a multitrack-aware hub should call
/// [`parse_video`] instead); false for unparsable payloads.
pub fn is_video_sequence_header(payload: &[u8]) -> bool {
    parse_video(payload).is_ok_and(|tag| tag.kind == VideoPacketKind::SequenceHeader)
}

/// The decoder configuration record a video sequence header carries (AVC/HEVC
/// configuration record, AV1 codec configuration record), with its codec: the bytes
/// after the legacy or enhanced tag header, for a track-0 sequence header (legacy
/// AVCPacketType 0, E-RTMP SequenceStart, through ModEx and Multitrack); `None` for
/// any other packet. For whoever must know what the stream *is* (the standby slate
/// matches its profile and size), not for the hot path.
///
/// # Errors
/// As [`parse_video`], for a payload whose header is cut short.
pub fn video_configuration(payload: &[u8]) -> Result<Option<(VideoCodec, &[u8])>, FlvError> {
    let (&first, rest) = payload.split_first().ok_or(FlvError::EmptyPayload)?;
    let mut cur = Cursor::new(rest);
    if first & IS_EX_HEADER == 0 {
        let codec = VideoCodec::from_legacy_id(first & 0x0F);
        if !matches!(codec, VideoCodec::Avc | VideoCodec::Hevc) || cur.u8("AVCPacketType")? != 0 {
            return Ok(None);
        }
        cur.skip(3, "AVC composition time")?;
        return Ok(Some((codec, cur.rest())));
    }
    let packet_type = skip_mod_ex(&mut cur, first & 0x0F)?;
    let track = read_track_prefix(&mut cur, packet_type, PACKET_MULTITRACK)?;
    Ok(
        (track.packet_type == PACKET_SEQUENCE_START && track.track_id == 0)
            .then(|| (VideoCodec::from_fourcc(track.fourcc), cur.rest())),
    )
}

const IS_EX_HEADER: u8 = 0x80;

/// E-RTMP VideoPacketType values used below (5 MPEG2TSSequenceStart is
/// mapped in `enhanced_kind`).
const PACKET_SEQUENCE_START: u8 = 0;
const PACKET_CODED_FRAMES: u8 = 1;
const PACKET_METADATA: u8 = 4;
const PACKET_MULTITRACK: u8 = 6;

fn parse_legacy(first: u8, cur: &mut Cursor<'_>) -> Result<VideoTag, FlvError> {
    let frame_type = VideoFrameType::from_bits(first >> 4);
    let codec = VideoCodec::from_legacy_id(first & 0x0F);
    let (kind, composition_time) = if frame_type == VideoFrameType::Command {
        // The body is a one-byte command, not a picture; no need to read it.
        (VideoPacketKind::Command, 0)
    } else if matches!(codec, VideoCodec::Avc | VideoCodec::Hevc) {
        legacy_avc_packet(cur)?
    } else {
        // Pre-AVC codecs have no packet type: every tag is a picture.
        (VideoPacketKind::Frame, 0)
    };
    Ok(VideoTag {
        codec,
        kind,
        keyframe: is_keyframe(frame_type, kind),
        frame_type,
        enhanced: false,
        multitrack: false,
        track_id: 0,
        composition_time,
    })
}

/// Reads AVCPacketType and, for NALU packets, the composition time.
fn legacy_avc_packet(cur: &mut Cursor<'_>) -> Result<(VideoPacketKind, i32), FlvError> {
    match cur.u8("AVCPacketType")? {
        0 => Ok((VideoPacketKind::SequenceHeader, 0)),
        1 => Ok((VideoPacketKind::Frame, cur.si24("AVC composition time")?)),
        2 => Ok((VideoPacketKind::EndOfSequence, 0)),
        _ => Ok((VideoPacketKind::Other, 0)),
    }
}

fn parse_enhanced(first: u8, cur: &mut Cursor<'_>) -> Result<VideoTag, FlvError> {
    let frame_type = VideoFrameType::from_bits((first >> 4) & 0x07);
    let packet_type = skip_mod_ex(cur, first & 0x0F)?;
    if frame_type == VideoFrameType::Command && packet_type != PACKET_METADATA {
        // The spec puts a VideoCommand byte here instead of a FourCC.
        return Ok(VideoTag {
            codec: VideoCodec::Unspecified,
            kind: VideoPacketKind::Command,
            keyframe: false,
            frame_type,
            enhanced: true,
            multitrack: false,
            track_id: 0,
            composition_time: 0,
        });
    }
    let track = read_track_prefix(cur, packet_type, PACKET_MULTITRACK)?;
    let codec = VideoCodec::from_fourcc(track.fourcc);
    let kind = enhanced_kind(track.packet_type);
    let composition_time =
        if track.packet_type == PACKET_CODED_FRAMES && codec.has_composition_time() {
            cur.si24("E-RTMP composition time")?
        } else {
            0
        };
    Ok(VideoTag {
        codec,
        kind,
        keyframe: is_keyframe(frame_type, kind),
        frame_type,
        enhanced: true,
        multitrack: track.multitrack,
        track_id: track.track_id,
        composition_time,
    })
}

/// Maps a resolved E-RTMP VideoPacketType. Multitrack (6) or ModEx (7) here
/// would be nested wrappers, which the spec does not define: `Other`.
fn enhanced_kind(packet_type: u8) -> VideoPacketKind {
    match packet_type {
        0 | 5 => VideoPacketKind::SequenceHeader,
        1 | 3 => VideoPacketKind::Frame,
        2 => VideoPacketKind::EndOfSequence,
        4 => VideoPacketKind::Metadata,
        _ => VideoPacketKind::Other,
    }
}

fn is_keyframe(frame_type: VideoFrameType, kind: VideoPacketKind) -> bool {
    frame_type == VideoFrameType::Key && kind == VideoPacketKind::Frame
}

#[cfg(test)]
mod tests;
