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
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A small FLV file assembled by hand from the spec: header (audio +
    /// video), onMetaData script tag, AVC sequence header, AAC sequence
    /// header with an extended timestamp, AVC inter frame.
    #[rustfmt::skip]
    const FILE: &[u8] = &[
        // "FLV", version 1, flags audio|video, DataOffset 9, PreviousTagSize0.
        0x46, 0x4C, 0x56, 0x01, 0x05, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00,
        // Script tag: 13 bytes, ts 0, stream 0; AMF0 string "onMetaData".
        0x12, 0x00, 0x00, 0x0D, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x02, 0x00, 0x0A, b'o', b'n', b'M', b'e', b't', b'a', b'D', b'a', b't', b'a',
        0x00, 0x00, 0x00, 0x18,
        // Video tag: 5 bytes, ts 0: AVC sequence header (empty record).
        0x09, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x17, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x10,
        // Audio tag: 4 bytes, ts 0x000017 with extension 0x01: AAC SH.
        0x08, 0x00, 0x00, 0x04, 0x00, 0x00, 0x17, 0x01, 0x00, 0x00, 0x00,
        0xAF, 0x00, 0x12, 0x10,
        0x00, 0x00, 0x00, 0x0F,
        // Video tag: 7 bytes, ts 0x123456: AVC inter frame.
        0x09, 0x00, 0x00, 0x07, 0x12, 0x34, 0x56, 0x00, 0x00, 0x00, 0x00,
        0x27, 0x01, 0x00, 0x00, 0x00, 0xAA, 0xBB,
        0x00, 0x00, 0x00, 0x12,
    ];

    fn expected_tags() -> Vec<FlvTag> {
        let tag = |tag_type, timestamp, data: &'static [u8]| FlvTag {
            tag_type,
            timestamp,
            stream_id: 0,
            data: Bytes::from_static(data),
        };
        vec![
            tag(TagType::Script, 0, b"\x02\x00\x0AonMetaData"),
            tag(TagType::Video, 0, &[0x17, 0x00, 0x00, 0x00, 0x00]),
            tag(TagType::Audio, 0x0100_0017, &[0xAF, 0x00, 0x12, 0x10]),
            tag(
                TagType::Video,
                0x12_3456,
                &[0x27, 0x01, 0x00, 0x00, 0x00, 0xAA, 0xBB],
            ),
        ]
    }

    /// Reads a header then all tags from `buf`, stopping at `Ok(None)`.
    fn read_all(reader: &mut FlvReader, buf: &mut BytesMut) -> Result<Vec<FlvTag>, FlvError> {
        let mut tags = Vec::new();
        while let Some(tag) = reader.read_tag(buf)? {
            tags.push(tag);
        }
        Ok(tags)
    }

    /// Feeds `input` in chunks of `chunk` bytes, collecting everything read.
    fn read_chunked(
        input: &[u8],
        chunk: usize,
    ) -> Result<(FlvHeader, Vec<FlvTag>, FlvReader, BytesMut), FlvError> {
        let mut reader = FlvReader::new();
        let mut buf = BytesMut::new();
        let mut header = None;
        let mut tags = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            if header.is_none() {
                header = reader.read_header(&mut buf)?;
                if header.is_none() {
                    continue;
                }
            }
            tags.extend(read_all(&mut reader, &mut buf)?);
        }
        let header = header.ok_or(FlvError::Truncated("test input: no header"))?;
        Ok((header, tags, reader, buf))
    }

    #[test]
    fn hand_made_file_reads_back() {
        let (header, tags, reader, rest) = read_chunked(FILE, FILE.len()).unwrap();
        assert_eq!(
            header,
            FlvHeader {
                has_audio: true,
                has_video: true
            }
        );
        assert_eq!(tags, expected_tags());
        assert!(rest.is_empty());
        assert_eq!(reader.prev_tag_size_mismatches(), 0);
    }

    #[test]
    fn byte_at_a_time_gives_the_same_tags() {
        let (header, tags, reader, rest) = read_chunked(FILE, 1).unwrap();
        assert_eq!(
            header,
            FlvHeader {
                has_audio: true,
                has_video: true
            }
        );
        assert_eq!(tags, expected_tags());
        assert!(rest.is_empty());
        assert_eq!(reader.prev_tag_size_mismatches(), 0);
    }

    #[test]
    fn nothing_is_returned_before_a_unit_is_complete() {
        let mut reader = FlvReader::new();
        let mut buf = BytesMut::from(&FILE[..12]);
        assert_eq!(reader.read_header(&mut buf), Ok(None));
        assert_eq!(buf.len(), 12, "a partial header must not be consumed");
        buf.extend_from_slice(&FILE[12..13 + 11 + 12]);
        assert!(reader.read_header(&mut buf).unwrap().is_some());
        assert_eq!(reader.read_tag(&mut buf), Ok(None));
        assert_eq!(buf.len(), 11 + 12, "a partial tag must not be consumed");
    }

    #[test]
    fn tag_payload_is_split_off_without_copying() {
        let mut reader = FlvReader::new();
        let mut buf = BytesMut::from(FILE);
        let start = buf.as_ptr() as usize;
        let range = start..start + FILE.len();
        reader.read_header(&mut buf).unwrap();
        let tags = read_all(&mut reader, &mut buf).unwrap();
        for tag in tags {
            assert!(
                range.contains(&(tag.data.as_ptr() as usize)),
                "payload was copied"
            );
        }
    }

    #[test]
    fn writer_produces_the_hand_made_bytes() {
        let header = FlvWriter::header(&FlvHeader {
            has_audio: true,
            has_video: true,
        });
        assert_eq!(header[..], FILE[..13]);
        assert_eq!(
            FlvWriter::header(&FlvHeader {
                has_audio: false,
                has_video: true
            })[4],
            0x01
        );
        let audio = FlvWriter::tag_header(TagType::Audio, 0x0100_0017, 4).unwrap();
        assert_eq!(audio[..], FILE[61..72]);
        let video = FlvWriter::tag_header(TagType::Video, 0x12_3456, 7).unwrap();
        assert_eq!(video[..], FILE[80..91]);
        assert_eq!(FlvWriter::prev_tag_size(7), [0x00, 0x00, 0x00, 0x12]);
        assert_eq!(FlvWriter::prev_tag_size(0), [0x00, 0x00, 0x00, 0x0B]);
    }

    #[test]
    fn writer_refuses_oversized_tags() {
        assert!(FlvWriter::tag_header(TagType::Video, 0, MAX_TAG_DATA_LEN).is_ok());
        assert_eq!(
            FlvWriter::tag_header(TagType::Video, 0, MAX_TAG_DATA_LEN + 1),
            Err(FlvError::TagTooLarge {
                size: MAX_TAG_DATA_LEN + 1,
                max: MAX_TAG_DATA_LEN
            })
        );
        assert_eq!(FlvWriter::prev_tag_size(usize::MAX), [0xFF; 4]);
    }

    #[test]
    fn wrong_previous_tag_sizes_are_tolerated_and_counted() {
        let mut file = FILE.to_vec();
        file[12] = 0x07; // PreviousTagSize0 should be 0.
        file[40] = 0x99; // After the script tag.
        let (_, tags, reader, rest) = read_chunked(&file, 3).unwrap();
        assert_eq!(tags, expected_tags());
        assert!(rest.is_empty());
        assert_eq!(reader.prev_tag_size_mismatches(), 2);
    }

    #[test]
    fn data_offset_beyond_nine_is_skipped() {
        let mut file = FILE[..9].to_vec();
        file[8] = 12;
        file.extend([0xEE, 0xEE, 0xEE]);
        file.extend(&FILE[9..]);
        let (_, tags, _, rest) = read_chunked(&file, 1).unwrap();
        assert_eq!(tags, expected_tags());
        assert!(rest.is_empty());
    }

    #[test]
    fn garbage_header_is_rejected_early() {
        let mut reader = FlvReader::new();
        assert_eq!(
            reader.read_header(&mut BytesMut::from(&b"G"[..])),
            Err(FlvError::BadSignature)
        );
        assert_eq!(
            reader.read_header(&mut BytesMut::from(&b"FLX"[..])),
            Err(FlvError::BadSignature)
        );
        assert_eq!(
            reader.read_header(&mut BytesMut::from(&b"FL"[..])),
            Ok(None)
        );
        assert_eq!(
            reader.read_header(&mut BytesMut::from(&b"<html><head>"[..])),
            Err(FlvError::BadSignature)
        );
        let mut offset_8 = BytesMut::from(&FILE[..13]);
        offset_8[8] = 8;
        assert_eq!(
            reader.read_header(&mut offset_8),
            Err(FlvError::BadDataOffset(8))
        );
        let mut offset_huge = BytesMut::from(&FILE[..9]);
        offset_huge[5..9].copy_from_slice(&[0xFF; 4]);
        assert_eq!(
            reader.read_header(&mut offset_huge),
            Err(FlvError::BadDataOffset(u32::MAX))
        );
    }

    #[test]
    fn reader_calls_out_of_order_are_errors() {
        let mut reader = FlvReader::new();
        assert_eq!(
            reader.read_tag(&mut BytesMut::from(&FILE[13..])),
            Err(FlvError::HeaderNotRead)
        );
        let mut buf = BytesMut::from(FILE);
        reader.read_header(&mut buf).unwrap();
        assert_eq!(
            reader.read_header(&mut buf),
            Err(FlvError::HeaderAlreadyRead)
        );
    }

    #[test]
    fn unsupported_tag_types_are_errors_and_consume_nothing() {
        for kind in [0x00, 0x0A, 0x29, 0x48, 0x89] {
            let mut reader = FlvReader::new();
            let mut buf = BytesMut::from(&FILE[..13]);
            reader.read_header(&mut buf).unwrap();
            buf.extend_from_slice(&[kind, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xAA]);
            assert_eq!(
                reader.read_tag(&mut buf),
                Err(FlvError::UnsupportedTagType(kind))
            );
            assert_eq!(buf.len(), 12);
        }
    }

    #[test]
    fn oversized_tag_is_refused_before_its_payload_arrives() {
        let mut reader = FlvReader::with_max_tag_data_len(100);
        let mut buf = BytesMut::from(&FILE[..13]);
        reader.read_header(&mut buf).unwrap();
        buf.extend_from_slice(&[0x09, 0x00, 0x00, 101, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            reader.read_tag(&mut buf),
            Err(FlvError::TagTooLarge {
                size: 101,
                max: 100
            })
        );
        // At the format maximum the default reader just waits.
        let mut reader = FlvReader::new();
        let mut buf = BytesMut::from(&FILE[..13]);
        reader.read_header(&mut buf).unwrap();
        buf.extend_from_slice(&[0x09, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(reader.read_tag(&mut buf), Ok(None));
        // A limit above the format maximum is clamped to it.
        assert_eq!(
            FlvReader::with_max_tag_data_len(usize::MAX).max_tag_data_len,
            MAX_TAG_DATA_LEN
        );
    }

    #[test]
    fn truncated_file_leaves_the_partial_tag_buffered() {
        let cut = FILE.len() - 6; // Inside the last tag's payload.
        let (_, tags, _, rest) = read_chunked(&FILE[..cut], 5).unwrap();
        assert_eq!(tags, expected_tags()[..3]);
        assert_eq!(rest.len(), 11 + 5);
        // Missing only the last PreviousTagSize: every tag is delivered.
        let (_, tags, _, rest) = read_chunked(&FILE[..FILE.len() - 4], 5).unwrap();
        assert_eq!(tags, expected_tags());
        assert!(rest.is_empty());
    }

    #[test]
    fn tag_type_numbers_match_rtmp_message_types() {
        assert_eq!(TagType::from_u8(8), Some(TagType::Audio));
        assert_eq!(TagType::from_u8(9), Some(TagType::Video));
        assert_eq!(TagType::from_u8(18), Some(TagType::Script));
        assert_eq!(TagType::from_u8(20), None);
        assert_eq!(TagType::Script as u8, 18);
    }

    /// Serialises with the writer's framing, as a vectored writer would.
    fn write_file(header: &FlvHeader, tags: &[FlvTag]) -> Vec<u8> {
        let mut out = FlvWriter::header(header).to_vec();
        for tag in tags {
            let framing = FlvWriter::tag_header(tag.tag_type, tag.timestamp, tag.data.len());
            out.extend(framing.unwrap());
            out.extend(&tag.data[..]);
            out.extend(FlvWriter::prev_tag_size(tag.data.len()));
        }
        out
    }

    fn arb_tag() -> impl Strategy<Value = FlvTag> {
        (
            prop_oneof![
                Just(TagType::Audio),
                Just(TagType::Video),
                Just(TagType::Script)
            ],
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(tag_type, timestamp, data)| FlvTag {
                tag_type,
                timestamp,
                stream_id: 0,
                data: Bytes::from(data),
            })
    }

    proptest! {
        #[test]
        fn writer_reader_round_trip(
            has_audio in any::<bool>(),
            has_video in any::<bool>(),
            tags in proptest::collection::vec(arb_tag(), 0..12),
            chunk in 1usize..64,
        ) {
            let header = FlvHeader { has_audio, has_video };
            let file = write_file(&header, &tags);
            let (read_header, read_tags, reader, rest) = read_chunked(&file, chunk).unwrap();
            prop_assert_eq!(read_header, header);
            prop_assert_eq!(read_tags, tags);
            prop_assert!(rest.is_empty());
            prop_assert_eq!(reader.prev_tag_size_mismatches(), 0);
        }

        #[test]
        fn random_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            with_header in any::<bool>(),
            chunk in 1usize..32,
        ) {
            let input = if with_header { [&FILE[..13], &bytes[..]].concat() } else { bytes };
            let _ = read_chunked(&input, chunk);
        }

        #[test]
        fn mutated_file_never_panics(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            chunk in 1usize..32,
        ) {
            let mut file = FILE.to_vec();
            for (at, value) in flips {
                let i = at.index(file.len());
                file[i] = value;
            }
            let _ = read_chunked(&file, chunk);
        }
    }
}
