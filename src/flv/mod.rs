//! FLV: what an RTMP audio/video payload *is*, and the FLV byte stream.
//!
//! Two jobs live here because they share one format:
//!
//! 1. **Classifying RTMP audio (type 8) and video (type 9) message payloads.**
//!    An RTMP media message body is exactly an FLV tag body, so the first
//!    bytes say the codec, whether the packet is a sequence header (the hub
//!    must cache it and replay it to every late joiner), a keyframe (a GOP
//!    starts there) or something that must *not* be mistaken for either (AVC
//!    end of sequence, E-RTMP SequenceEnd/Metadata, command frames). Both the
//!    legacy headers and the Enhanced RTMP ExHeaders (FourCC, ModEx,
//!    Multitrack) are understood. These functions run once per media packet
//!    on the hot path: they borrow `&[u8]`, never allocate and return small
//!    `Copy` values ([`parse_video`], [`parse_audio`] and thin boolean
//!    wrappers).
//! 2. **The FLV container stream** (`FLV` header, 11-byte tag headers,
//!    PreviousTagSize trailers), used to pipe media to and from an ffmpeg
//!    child and in tests: a sans-I/O [`FlvReader`] that splits tags off a
//!    `BytesMut` without copying, and an [`FlvWriter`] that only produces the
//!    small framing arrays so the caller can write header + shared payload +
//!    trailer with vectored I/O.
//!
//! Everything is free of I/O and clocks; malformed input yields an
//! [`FlvError`], never a panic. A classifier error is not fatal for a relay:
//! the caller forwards such a packet as opaque data.

mod audio;
mod container;
mod video;
mod wire;

pub use audio::{
    AudioCodec, AudioPacketKind, AudioTag, aac_config, audio_configuration,
    is_audio_sequence_header, parse_audio,
};
pub use container::{
    FLV_HEADER_LEN, FlvHeader, FlvReader, FlvTag, FlvWriter, MAX_TAG_DATA_LEN, PREV_TAG_SIZE_LEN,
    TAG_HEADER_LEN, TagType,
};
pub use video::{
    VideoCodec, VideoFrameType, VideoPacketKind, VideoTag, is_video_keyframe,
    is_video_sequence_header, parse_video, video_configuration,
};

/// Everything that can be wrong with an FLV tag payload or an FLV stream.
///
/// Variants are precise so a log line tells which byte was wrong; none of
/// them carries payload data (stream keys never travel in media, but this
/// also keeps the error `Copy`-cheap and allocation-free on the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    /// The payload has no bytes at all. For audio this is the legacy
    /// "silence" marker some encoders send between frames; for video it
    /// carries no information. Either way, forward it as-is.
    #[error("empty media payload (for audio: the legacy silence marker)")]
    EmptyPayload,
    /// The payload ends inside the named header field.
    #[error("media payload truncated inside its tag header: missing {0}")]
    Truncated(&'static str),
    /// An Enhanced RTMP Multitrack packet names an AvMultitrackType this code
    /// does not know, so the position of the FourCC/track fields is unknown.
    #[error(
        "unknown E-RTMP multitrack type {0} (known: 0 OneTrack, 1 ManyTracks, 2 ManyTracksManyCodecs)"
    )]
    UnknownMultitrackType(u8),
    /// The stream does not start with the bytes `FLV`.
    #[error("not an FLV stream: it does not start with the signature \"FLV\"")]
    BadSignature,
    /// The FLV header's DataOffset is smaller than the header itself or
    /// larger than this reader is willing to skip.
    #[error(
        "FLV header DataOffset {0} is outside the accepted range 9..={max}",
        max = container::MAX_DATA_OFFSET
    )]
    BadDataOffset(u32),
    /// A tag header's first byte is not audio (8), video (9) or script (18)
    /// with the reserved and filter (encryption) bits clear. Usually the
    /// reader is desynchronised or the file is encrypted.
    #[error(
        "unsupported FLV tag type byte 0x{0:02x} (expected 0x08, 0x09 or 0x12 without the filter/encryption bit)"
    )]
    UnsupportedTagType(u8),
    /// A tag declares (or a caller asks to frame) more payload bytes than
    /// allowed; refused before any byte of it is awaited.
    #[error("FLV tag payload of {size} bytes exceeds the limit of {max} bytes")]
    TagTooLarge {
        /// Declared or requested payload length.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// `read_header` was called after the header had been consumed.
    #[error("FLV reader misuse: the file header was already read")]
    HeaderAlreadyRead,
    /// `read_tag` was called before `read_header` succeeded.
    #[error("FLV reader misuse: read_header must succeed before read_tag")]
    HeaderNotRead,
}
