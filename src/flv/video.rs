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

const IS_EX_HEADER: u8 = 0x80;

/// E-RTMP VideoPacketType values used below (5 MPEG2TSSequenceStart is
/// mapped in `enhanced_kind`).
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(bytes: &[u8]) -> VideoTag {
        match parse_video(bytes) {
            Ok(tag) => tag,
            Err(err) => panic!("{bytes:02x?} should parse: {err}"),
        }
    }

    /// A legacy, single-track tag as most tests expect it.
    fn legacy(codec: VideoCodec, kind: VideoPacketKind, frame_type: VideoFrameType) -> VideoTag {
        VideoTag {
            codec,
            kind,
            keyframe: false,
            frame_type,
            enhanced: false,
            multitrack: false,
            track_id: 0,
            composition_time: 0,
        }
    }

    fn enhanced(codec: VideoCodec, kind: VideoPacketKind, frame_type: VideoFrameType) -> VideoTag {
        VideoTag {
            enhanced: true,
            ..legacy(codec, kind, frame_type)
        }
    }

    #[test]
    fn avc_sequence_header_is_not_a_keyframe() {
        let tag = parse(&[0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x64]);
        use VideoPacketKind::SequenceHeader;
        assert_eq!(
            tag,
            legacy(VideoCodec::Avc, SequenceHeader, VideoFrameType::Key)
        );
        assert!(is_video_sequence_header(&[0x17, 0x00, 0x00, 0x00, 0x00]));
        assert!(!is_video_keyframe(&[0x17, 0x00, 0x00, 0x00, 0x00]));
    }

    #[test]
    fn avc_keyframe_with_negative_composition_time() {
        let tag = parse(&[
            0x17, 0x01, 0xFF, 0xFF, 0xD8, 0x00, 0x00, 0x00, 0x02, 0x65, 0x88,
        ]);
        assert_eq!(tag.kind, VideoPacketKind::Frame);
        assert!(tag.keyframe);
        assert_eq!(tag.composition_time, -40);
        assert!(is_video_keyframe(&[0x17, 0x01, 0x00, 0x00, 0x00]));
    }

    #[test]
    fn avc_inter_frame() {
        let tag = parse(&[0x27, 0x01, 0x00, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x41]);
        assert_eq!(
            tag,
            VideoTag {
                composition_time: 80,
                ..legacy(
                    VideoCodec::Avc,
                    VideoPacketKind::Frame,
                    VideoFrameType::Inter
                )
            }
        );
        assert!(!is_video_keyframe(&[0x27, 0x01, 0x00, 0x00, 0x50]));
    }

    #[test]
    fn avc_end_of_sequence_is_neither_header_nor_keyframe() {
        for bytes in [&[0x17, 0x02][..], &[0x17, 0x02, 0x00, 0x00, 0x00]] {
            let tag = parse(bytes);
            assert_eq!(tag.kind, VideoPacketKind::EndOfSequence);
            assert!(!tag.keyframe);
            assert!(!is_video_sequence_header(bytes));
        }
    }

    #[test]
    fn avc_unknown_packet_type_is_other() {
        assert_eq!(parse(&[0x17, 0x03]).kind, VideoPacketKind::Other);
        assert!(!is_video_keyframe(&[0x17, 0x03, 0, 0, 0]));
    }

    #[test]
    fn legacy_command_frame() {
        for bytes in [&[0x57][..], &[0x57, 0x00], &[0x57, 0x01]] {
            let tag = parse(bytes);
            assert_eq!(
                tag,
                legacy(
                    VideoCodec::Avc,
                    VideoPacketKind::Command,
                    VideoFrameType::Command
                )
            );
        }
    }

    #[test]
    fn legacy_pre_avc_codecs_are_frames_without_packet_type() {
        let vp6 = parse(&[0x14, 0x00, 0x12]);
        assert_eq!(
            (vp6.codec, vp6.kind, vp6.keyframe),
            (VideoCodec::Vp6, VideoPacketKind::Frame, true)
        );
        let h263 = parse(&[0x22]);
        assert_eq!((h263.codec, h263.keyframe), (VideoCodec::H263, false));
        let disposable = parse(&[0x32, 0x00]);
        assert_eq!(disposable.frame_type, VideoFrameType::DisposableInter);
        assert_eq!(parse(&[0x13]).codec, VideoCodec::ScreenVideo);
        assert_eq!(parse(&[0x15]).codec, VideoCodec::Vp6Alpha);
        assert_eq!(parse(&[0x16]).codec, VideoCodec::ScreenVideo2);
        assert_eq!(parse(&[0x11]).codec, VideoCodec::Other(1));
        assert_eq!(parse(&[0x0F]).frame_type, VideoFrameType::Reserved(0));
    }

    #[test]
    fn legacy_hevc_codec_id_12_uses_avc_packet_types() {
        let tag = parse(&[0x1C, 0x00, 0x00, 0x00, 0x00]);
        assert_eq!(
            (tag.codec, tag.kind),
            (VideoCodec::Hevc, VideoPacketKind::SequenceHeader)
        );
        let frame = parse(&[0x2C, 0x01, 0x00, 0x00, 0x21]);
        assert_eq!(frame.composition_time, 33);
    }

    #[test]
    fn legacy_truncations_are_errors() {
        assert_eq!(parse_video(&[]), Err(FlvError::EmptyPayload));
        assert_eq!(
            parse_video(&[0x17]),
            Err(FlvError::Truncated("AVCPacketType"))
        );
        assert_eq!(
            parse_video(&[0x27, 0x01, 0x00, 0x00]),
            Err(FlvError::Truncated("AVC composition time"))
        );
        assert!(!is_video_keyframe(&[]));
        assert!(!is_video_sequence_header(&[0x17]));
    }

    #[test]
    fn enhanced_hevc_sequence_start() {
        let tag = parse(&[0x90, b'h', b'v', b'c', b'1', 0x01, 0x01, 0x60]);
        assert_eq!(
            tag,
            enhanced(
                VideoCodec::Hevc,
                VideoPacketKind::SequenceHeader,
                VideoFrameType::Key
            )
        );
        assert!(is_video_sequence_header(&[0x90, b'h', b'v', b'c', b'1']));
    }

    #[test]
    fn enhanced_hevc_coded_frames_keyframe_reads_composition_time() {
        let tag = parse(&[
            0x91, b'h', b'v', b'c', b'1', 0x00, 0x00, 0x21, 0x00, 0x00, 0x00, 0x05,
        ]);
        assert_eq!(
            tag,
            VideoTag {
                keyframe: true,
                composition_time: 33,
                ..enhanced(
                    VideoCodec::Hevc,
                    VideoPacketKind::Frame,
                    VideoFrameType::Key
                )
            }
        );
    }

    #[test]
    fn enhanced_av1_coded_frames_x_inter() {
        let tag = parse(&[0xA3, b'a', b'v', b'0', b'1', 0x12, 0x00, 0x0A]);
        assert_eq!(
            tag,
            enhanced(
                VideoCodec::Av1,
                VideoPacketKind::Frame,
                VideoFrameType::Inter
            )
        );
    }

    #[test]
    fn enhanced_av1_coded_frames_have_no_composition_time() {
        // 0x12 0x00 0x0A is the start of an OBU, not an SI24.
        let tag = parse(&[0x91, b'a', b'v', b'0', b'1', 0x12, 0x00, 0x0A]);
        assert_eq!((tag.keyframe, tag.composition_time), (true, 0));
        let vp9 = parse(&[0x91, b'v', b'p', b'0', b'9']);
        assert_eq!((vp9.codec, vp9.keyframe), (VideoCodec::Vp9, true));
    }

    #[test]
    fn enhanced_coded_frames_needing_composition_time_can_be_truncated() {
        assert_eq!(
            parse_video(&[0x91, b'a', b'v', b'c', b'1', 0x00]),
            Err(FlvError::Truncated("E-RTMP composition time"))
        );
    }

    #[test]
    fn enhanced_fourccs() {
        let codec = |code: &[u8; 4]| {
            let [a, b, c, d] = *code;
            parse(&[0x93, a, b, c, d]).codec
        };
        assert_eq!(codec(b"avc1"), VideoCodec::Avc);
        assert_eq!(codec(b"vp08"), VideoCodec::Vp8);
        assert_eq!(codec(b"vvc1"), VideoCodec::Vvc);
        assert_eq!(codec(b"xyzw"), VideoCodec::Other(0x7879_7A77));
        assert_eq!(VideoCodec::from_fourcc(1_635_135_537), VideoCodec::Av1);
    }

    #[test]
    fn enhanced_sequence_end_metadata_and_ts_sequence_start() {
        let end = parse(&[0x92, b'h', b'v', b'c', b'1']);
        assert_eq!(
            (end.kind, end.keyframe),
            (VideoPacketKind::EndOfSequence, false)
        );
        let meta = parse(&[0x94, b'a', b'v', b'0', b'1', 0x02, 0x00, 0x09]);
        assert_eq!(
            (meta.kind, meta.keyframe),
            (VideoPacketKind::Metadata, false)
        );
        let ts = parse(&[0x95, b'a', b'v', b'0', b'1']);
        assert_eq!(ts.kind, VideoPacketKind::SequenceHeader);
        assert_eq!(
            parse(&[0x98, b'a', b'v', b'0', b'1']).kind,
            VideoPacketKind::Other
        );
    }

    #[test]
    fn enhanced_command_frame_has_no_fourcc() {
        let tag = parse(&[0xD1, 0x00]);
        assert_eq!(
            tag,
            enhanced(
                VideoCodec::Unspecified,
                VideoPacketKind::Command,
                VideoFrameType::Command
            )
        );
        // Metadata sent with the command frame type still has its FourCC.
        let meta = parse(&[0xD4, b'h', b'v', b'c', b'1']);
        assert_eq!(
            (meta.codec, meta.kind),
            (VideoCodec::Hevc, VideoPacketKind::Metadata)
        );
    }

    #[test]
    fn mod_ex_block_is_skipped_then_real_packet_type_used() {
        // ModEx: size byte 2 => 3 data bytes (TimestampOffsetNano), then
        // ModEx type 0 | packet type 1 (CodedFrames), FourCC, SI24.
        let tag = parse(&[
            0x97, 0x02, 0x00, 0x01, 0xF4, 0x01, b'h', b'v', b'c', b'1', 0x00, 0x00, 0x10,
        ]);
        assert_eq!(
            (tag.codec, tag.kind, tag.keyframe, tag.composition_time),
            (VideoCodec::Hevc, VideoPacketKind::Frame, true, 16)
        );
    }

    #[test]
    fn mod_ex_blocks_chain() {
        let tag = parse(&[
            0xA7, 0x00, 0xAA, 0x07, 0x01, 0xBB, 0xCC, 0x03, b'a', b'v', b'0', b'1',
        ]);
        assert_eq!(
            (tag.codec, tag.kind, tag.frame_type),
            (
                VideoCodec::Av1,
                VideoPacketKind::Frame,
                VideoFrameType::Inter
            )
        );
    }

    #[test]
    fn mod_ex_escaped_size_uses_the_following_u16() {
        // 0xFF escapes; UI16 0x0100 + 1 = 257 data bytes.
        let mut bytes = vec![0x97, 0xFF, 0x01, 0x00];
        bytes.extend(std::iter::repeat_n(0x55, 257));
        bytes.extend([0x00, b'h', b'v', b'c', b'1']);
        assert_eq!(parse(&bytes).kind, VideoPacketKind::SequenceHeader);
        // One data byte short: the type byte is swallowed as data (so the
        // 257-byte size really was used) and the type byte is then missing.
        let short = [&bytes[..4], &[0x55; 256], &[0x00]].concat();
        assert_eq!(
            parse_video(&short),
            Err(FlvError::Truncated("ModEx type and packet type"))
        );
    }

    #[test]
    fn mod_ex_truncations() {
        assert_eq!(
            parse_video(&[0x97]),
            Err(FlvError::Truncated("ModEx data size"))
        );
        assert_eq!(
            parse_video(&[0x97, 0xFF, 0x01]),
            Err(FlvError::Truncated("ModEx extended data size"))
        );
        assert_eq!(
            parse_video(&[0x97, 0x05, 0, 0]),
            Err(FlvError::Truncated("ModEx data"))
        );
        assert_eq!(
            parse_video(&[0x97, 0x00, 0x00]),
            Err(FlvError::Truncated("ModEx type and packet type"))
        );
    }

    #[test]
    fn multitrack_one_track() {
        // Multitrack | OneTrack(0) << 4 | SequenceStart(0), avc1, track 1.
        let tag = parse(&[0x96, 0x00, b'a', b'v', b'c', b'1', 0x01, 0x01, 0x64]);
        assert_eq!(
            tag,
            VideoTag {
                multitrack: true,
                track_id: 1,
                ..enhanced(
                    VideoCodec::Avc,
                    VideoPacketKind::SequenceHeader,
                    VideoFrameType::Key
                )
            }
        );
    }

    #[test]
    fn multitrack_many_tracks_reads_size_then_composition_time() {
        // ManyTracks(1) | CodedFrames(1), avc1, track 0, UI24 size 16, SI24 5.
        let tag = parse(&[
            0x96, 0x11, b'a', b'v', b'c', b'1', 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x05,
        ]);
        assert_eq!(
            (tag.kind, tag.keyframe, tag.track_id, tag.composition_time),
            (VideoPacketKind::Frame, true, 0, 5)
        );
    }

    #[test]
    fn multitrack_many_codecs_has_fourcc_per_track() {
        // ManyTracksManyCodecs(2) | CodedFrames(1), then per track: FourCC,
        // track id 2, UI24 size, SI24 -1.
        let tag = parse(&[
            0xA6, 0x21, b'h', b'v', b'c', b'1', 0x02, 0x00, 0x00, 0x08, 0xFF, 0xFF, 0xFF,
        ]);
        assert_eq!(
            (tag.codec, tag.track_id, tag.composition_time, tag.keyframe),
            (VideoCodec::Hevc, 2, -1, false)
        );
    }

    #[test]
    fn multitrack_errors() {
        assert_eq!(
            parse_video(&[0x96, 0x30]),
            Err(FlvError::UnknownMultitrackType(3))
        );
        assert_eq!(
            parse_video(&[0x96]),
            Err(FlvError::Truncated("multitrack type and packet type"))
        );
        assert_eq!(
            parse_video(&[0x96, 0x00, b'a', b'v', b'c', b'1']),
            Err(FlvError::Truncated("multitrack track id"))
        );
        assert_eq!(
            parse_video(&[0x96, 0x10, b'a', b'v', b'c', b'1', 0x00, 0x00]),
            Err(FlvError::Truncated("multitrack track size"))
        );
        // A nested Multitrack packet type is not defined: forwarded as Other.
        let nested = parse(&[0x96, 0x06, b'a', b'v', b'c', b'1', 0x00]);
        assert_eq!(nested.kind, VideoPacketKind::Other);
    }

    #[test]
    fn enhanced_truncated_fourcc() {
        assert_eq!(
            parse_video(&[0x90, b'h', b'v']),
            Err(FlvError::Truncated("FourCC"))
        );
        assert_eq!(parse_video(&[0x90]), Err(FlvError::Truncated("FourCC")));
    }

    /// Valid payloads covering every branch, used as mutation seeds.
    fn seeds() -> Vec<Vec<u8>> {
        vec![
            vec![0x17, 0x00, 0x00, 0x00, 0x00, 0x01],
            vec![0x27, 0x01, 0x00, 0x00, 0x50, 0x00],
            vec![0x57, 0x00],
            vec![0x91, b'h', b'v', b'c', b'1', 0x00, 0x00, 0x21],
            vec![
                0x97, 0x02, 0x00, 0x01, 0xF4, 0x01, b'h', b'v', b'c', b'1', 0, 0, 1,
            ],
            vec![0x97, 0xFF, 0x00, 0x01, 0, 0, 0x00, b'a', b'v', b'0', b'1'],
            vec![
                0xA6, 0x21, b'h', b'v', b'c', b'1', 0x02, 0, 0, 8, 0xFF, 0xFF, 0xFF,
            ],
            vec![0xD1, 0x00],
        ]
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_video(&bytes);
            let _ = is_video_keyframe(&bytes);
            let _ = is_video_sequence_header(&bytes);
        }

        #[test]
        fn mutated_seeds_never_panic(
            seed in 0..8usize,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = seeds().swap_remove(seed);
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            let _ = parse_video(&bytes);
        }

        /// A strict prefix of a valid payload is either still classifiable
        /// or a truncation/empty error, never some other failure.
        #[test]
        fn prefixes_fail_only_as_truncated(seed in 0..8usize, cut in any::<prop::sample::Index>()) {
            let bytes = seeds().swap_remove(seed);
            let prefix = &bytes[..cut.index(bytes.len())];
            match parse_video(prefix) {
                Ok(_) | Err(FlvError::Truncated(_) | FlvError::EmptyPayload) => {}
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }

        /// ModEx blocks of any size (encoded per spec) are skipped exactly.
        #[test]
        fn mod_ex_any_size_is_skipped(len in 1usize..=600, fill in any::<u8>()) {
            let mut bytes = vec![0x97];
            if len >= 256 {
                bytes.push(0xFF);
                bytes.extend(u16::try_from(len - 1).unwrap_or(u16::MAX).to_be_bytes());
            } else {
                bytes.push(u8::try_from(len - 1).unwrap_or(0));
            }
            bytes.extend(std::iter::repeat_n(fill, len));
            bytes.extend([0x02, b'v', b'p', b'0', b'9']);
            let tag = parse_video(&bytes);
            prop_assert_eq!(tag.map(|t| (t.codec, t.kind)), Ok((VideoCodec::Vp9, VideoPacketKind::EndOfSequence)));
        }
    }
}
