//! The FLV container byte stream: file header, tags, PreviousTagSize
//! trailers. Sans-I/O: the reader takes bytes the caller has buffered, the
//! writer returns framing arrays for the caller to write.
//!
//! Layout (FLV spec v10): `"FLV"`, version, flags (bit 2 audio, bit 0
//! video), UI32 DataOffset (9), UI32 PreviousTagSize0 (0); then per tag an
//! 11-byte header — flags|TagType, UI24 DataSize, UI24 Timestamp, UI8
//! TimestampExtended (bits 31..24), UI24 StreamID (0) — the payload, and a
//! UI32 PreviousTagSize = 11 + DataSize.

use bytes::{Buf, Bytes, BytesMut};

use super::FlvError;

/// Length of the FLV file header without PreviousTagSize0.
pub const FLV_HEADER_LEN: usize = 9;
/// Length of every tag header.
pub const TAG_HEADER_LEN: usize = 11;
/// Length of the PreviousTagSize field after the header and each tag.
pub const PREV_TAG_SIZE_LEN: usize = 4;
/// Largest payload a tag can declare (UI24 DataSize); also the largest RTMP
/// message, so every RTMP media message fits in one tag.
pub const MAX_TAG_DATA_LEN: usize = 0xFF_FFFF;
/// Largest DataOffset the reader skips to. Every known writer uses 9; a few
/// extra bytes are tolerated, but a huge offset on a pipe would only be a way
/// to make the reader buffer garbage.
pub(super) const MAX_DATA_OFFSET: u32 = 1024;

/// The FLV header's stream flags: whether audio and/or video tags follow.
/// Players (ffmpeg) use them to decide which streams to probe for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlvHeader {
    /// TypeFlagsAudio (bit 2).
    pub has_audio: bool,
    /// TypeFlagsVideo (bit 0).
    pub has_video: bool,
}

const FLAG_AUDIO: u8 = 0x04;
const FLAG_VIDEO: u8 = 0x01;
const SIGNATURE: &[u8; 3] = b"FLV";
const VERSION: u8 = 1;

/// FLV tag types; the same numbers as the RTMP message types the tags map
/// to (8 audio, 9 video, 18 AMF0 data), so conversion is direct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TagType {
    /// Audio data (RTMP message type 8).
    Audio = 8,
    /// Video data (RTMP message type 9).
    Video = 9,
    /// Script data, e.g. onMetaData (RTMP message type 18, AMF0 data).
    Script = 18,
}

impl TagType {
    /// Maps a tag type / RTMP message type number; `None` for anything else.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            8 => Some(Self::Audio),
            9 => Some(Self::Video),
            18 => Some(Self::Script),
            _ => None,
        }
    }
}

/// One FLV tag, payload shared (never copied) with the buffer it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// Audio, video or script.
    pub tag_type: TagType,
    /// Full 32-bit timestamp in ms (UI24 + the extension byte as bits 31..24).
    pub timestamp: u32,
    /// StreamID as read; always 0 per spec, reported for diagnostics only.
    pub stream_id: u32,
    /// The tag body: an RTMP message payload.
    pub data: Bytes,
}

/// Incremental FLV stream reader (sans-I/O).
///
/// Call [`read_header`](Self::read_header) until it returns the header,
/// then [`read_tag`](Self::read_tag) repeatedly; `Ok(None)` means "buffer
/// more bytes and call again" and consumes nothing that is not a complete
/// unit. Tags are returned as soon as their payload is buffered; the
/// PreviousTagSize after a tag is consumed with it when already buffered,
/// else at the start of the next call. At end of input, bytes left in the
/// buffer mean the stream was cut inside a tag.
///
/// Tag types other than audio, video and script, and tags with the
/// filter (encryption) or reserved bits set, are an error
/// ([`FlvError::UnsupportedTagType`]) rather than skipped: a relay cannot
/// use them and they are far more often a sign of a desynchronised stream.
/// A PreviousTagSize that does not match the tag is tolerated (warned once,
/// counted), since some writers get it wrong and nothing depends on it.
#[derive(Debug)]
pub struct FlvReader {
    header_read: bool,
    /// PreviousTagSize expected next, if it has not been consumed yet.
    pending_prev_tag_size: Option<u32>,
    max_tag_data_len: usize,
    prev_tag_size_mismatches: u64,
}

impl Default for FlvReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FlvReader {
    /// A reader accepting tags up to the format maximum ([`MAX_TAG_DATA_LEN`]).
    pub fn new() -> Self {
        Self::with_max_tag_data_len(MAX_TAG_DATA_LEN)
    }

    /// A reader refusing tags whose payload exceeds `max` bytes (clamped to
    /// [`MAX_TAG_DATA_LEN`]), for callers with a tighter memory budget.
    pub fn with_max_tag_data_len(max: usize) -> Self {
        Self {
            header_read: false,
            pending_prev_tag_size: None,
            max_tag_data_len: max.min(MAX_TAG_DATA_LEN),
            prev_tag_size_mismatches: 0,
        }
    }

    /// How many PreviousTagSize fields did not match their tag so far.
    pub fn prev_tag_size_mismatches(&self) -> u64 {
        self.prev_tag_size_mismatches
    }

    /// Consumes the FLV header, its extra DataOffset bytes and
    /// PreviousTagSize0. Fails as soon as a buffered byte contradicts the
    /// `FLV` signature, so garbage is rejected without waiting. The version
    /// byte is not checked (tolerant: only 1 exists).
    ///
    /// # Errors
    /// [`FlvError::BadSignature`], [`FlvError::BadDataOffset`],
    /// [`FlvError::HeaderAlreadyRead`].
    pub fn read_header(&mut self, buf: &mut BytesMut) -> Result<Option<FlvHeader>, FlvError> {
        if self.header_read {
            return Err(FlvError::HeaderAlreadyRead);
        }
        let signature_seen = buf.len().min(SIGNATURE.len());
        if buf.get(..signature_seen) != SIGNATURE.get(..signature_seen) {
            return Err(FlvError::BadSignature);
        }
        let Some((fixed, _)) = buf.split_first_chunk::<FLV_HEADER_LEN>() else {
            return Ok(None);
        };
        let [_, _, _, _version, flags, o0, o1, o2, o3] = *fixed;
        let data_offset = u32::from_be_bytes([o0, o1, o2, o3]);
        if !(9..=MAX_DATA_OFFSET).contains(&data_offset) {
            return Err(FlvError::BadDataOffset(data_offset));
        }
        // Bounded by MAX_DATA_OFFSET above, so this cannot overflow.
        let total = data_offset as usize + PREV_TAG_SIZE_LEN;
        if buf.len() < total {
            return Ok(None);
        }
        buf.advance(data_offset as usize);
        self.check_prev_tag_size(buf.get_u32(), 0);
        self.header_read = true;
        Ok(Some(FlvHeader {
            has_audio: flags & FLAG_AUDIO != 0,
            has_video: flags & FLAG_VIDEO != 0,
        }))
    }

    /// Returns the next complete tag, its payload split off `buf` without
    /// copying. The declared size is checked against the limit as soon as
    /// the 11-byte tag header is buffered, before waiting for the payload.
    ///
    /// # Errors
    /// [`FlvError::HeaderNotRead`], [`FlvError::UnsupportedTagType`],
    /// [`FlvError::TagTooLarge`]. The offending bytes stay in `buf`.
    pub fn read_tag(&mut self, buf: &mut BytesMut) -> Result<Option<FlvTag>, FlvError> {
        if !self.header_read {
            return Err(FlvError::HeaderNotRead);
        }
        if !self.consume_pending_prev_tag_size(buf) {
            return Ok(None);
        }
        let Some((header, _)) = buf.split_first_chunk::<TAG_HEADER_LEN>() else {
            return Ok(None);
        };
        let [kind, s0, s1, s2, t0, t1, t2, t_ext, i0, i1, i2] = *header;
        // Reserved (0xC0) and filter (0x20) bits must be clear, so compare
        // the whole byte.
        let tag_type = TagType::from_u8(kind).ok_or(FlvError::UnsupportedTagType(kind))?;
        let data_len = u32::from_be_bytes([0, s0, s1, s2]) as usize;
        if data_len > self.max_tag_data_len {
            return Err(FlvError::TagTooLarge {
                size: data_len,
                max: self.max_tag_data_len,
            });
        }
        if buf.len() < TAG_HEADER_LEN + data_len {
            return Ok(None);
        }
        buf.advance(TAG_HEADER_LEN);
        let data = buf.split_to(data_len).freeze();
        // data_len <= 0xFFFFFF, so the sum fits in u32.
        self.pending_prev_tag_size = Some((TAG_HEADER_LEN + data_len) as u32);
        self.consume_pending_prev_tag_size(buf);
        Ok(Some(FlvTag {
            tag_type,
            timestamp: u32::from_be_bytes([t_ext, t0, t1, t2]),
            stream_id: u32::from_be_bytes([0, i0, i1, i2]),
            data,
        }))
    }

    /// Consumes the PreviousTagSize owed after the last tag, if buffered.
    /// Returns false when it is owed but not yet buffered.
    fn consume_pending_prev_tag_size(&mut self, buf: &mut BytesMut) -> bool {
        let Some(expected) = self.pending_prev_tag_size else {
            return true;
        };
        if buf.len() < PREV_TAG_SIZE_LEN {
            return false;
        }
        self.check_prev_tag_size(buf.get_u32(), expected);
        self.pending_prev_tag_size = None;
        true
    }

    fn check_prev_tag_size(&mut self, found: u32, expected: u32) {
        if found == expected {
            return;
        }
        if self.prev_tag_size_mismatches == 0 {
            tracing::warn!(
                found,
                expected,
                "FLV PreviousTagSize does not match the previous tag; ignoring (further mismatches are only counted)"
            );
        }
        self.prev_tag_size_mismatches += 1;
    }
}

/// FLV framing for writers: fixed-size arrays around payloads the caller
/// already holds as shared `Bytes`, so a tag is written as three slices
/// (header, payload, trailer) with vectored I/O and the payload is never
/// copied.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlvWriter;

impl FlvWriter {
    /// The 9-byte file header followed by PreviousTagSize0 (0).
    pub fn header(header: &FlvHeader) -> [u8; FLV_HEADER_LEN + PREV_TAG_SIZE_LEN] {
        let mut flags = 0;
        if header.has_audio {
            flags |= FLAG_AUDIO;
        }
        if header.has_video {
            flags |= FLAG_VIDEO;
        }
        let [s0, s1, s2] = *SIGNATURE;
        let [o0, o1, o2, o3] = (FLV_HEADER_LEN as u32).to_be_bytes();
        [s0, s1, s2, VERSION, flags, o0, o1, o2, o3, 0, 0, 0, 0]
    }

    /// The 11-byte tag header. The full 32-bit timestamp is written (low 24
    /// bits + extension byte); FLV readers treat it as signed, so callers
    /// that rebase timestamps keep them below 2^31 as OBS and FFmpeg do.
    /// StreamID is always 0.
    ///
    /// # Errors
    /// [`FlvError::TagTooLarge`] when `data_len` exceeds [`MAX_TAG_DATA_LEN`]
    /// (never the case for an RTMP message).
    pub fn tag_header(
        tag_type: TagType,
        timestamp: u32,
        data_len: usize,
    ) -> Result<[u8; TAG_HEADER_LEN], FlvError> {
        let size = u32::try_from(data_len)
            .ok()
            .filter(|&len| len as usize <= MAX_TAG_DATA_LEN)
            .ok_or(FlvError::TagTooLarge {
                size: data_len,
                max: MAX_TAG_DATA_LEN,
            })?;
        let [_, s0, s1, s2] = size.to_be_bytes();
        let [t_ext, t0, t1, t2] = timestamp.to_be_bytes();
        Ok([tag_type as u8, s0, s1, s2, t0, t1, t2, t_ext, 0, 0, 0])
    }

    /// The PreviousTagSize trailer for a tag of `data_len` payload bytes
    /// (11 + `data_len`). Only meaningful for lengths `tag_header` accepted;
    /// larger ones saturate rather than wrap.
    pub fn prev_tag_size(data_len: usize) -> [u8; PREV_TAG_SIZE_LEN] {
        let total = data_len.saturating_add(TAG_HEADER_LEN);
        u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes()
    }
}

#[cfg(test)]
mod tests;
