//! Classification of RTMP audio message payloads (FLV AUDIODATA), legacy
//! and Enhanced RTMP, plus the AAC AudioSpecificConfig summary for status.
//!
//! Layouts handled (E-RTMP v2 spec, FLV spec, FFmpeg flvenc, OBS flv-mux):
//! - legacy: byte 0 = SoundFormat(4) | SoundRate(2) | SoundSize(1) |
//!   SoundType(1); for AAC (format 10) byte 1 = AACPacketType (0 sequence
//!   header = AudioSpecificConfig, 1 raw frame).
//! - enhanced: SoundFormat 9 = ExHeader, low nibble = AudioPacketType, then
//!   ModEx blocks, then a Multitrack prefix or the FourCC.

use super::FlvError;
use super::wire::{Cursor, fourcc, read_track_prefix, skip_mod_ex};

/// Audio codec named by a legacy SoundFormat or an E-RTMP FourCC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// Linear PCM, platform endian (SoundFormat 0).
    Pcm,
    /// ADPCM (SoundFormat 1).
    Adpcm,
    /// MP3 (SoundFormat 2, FourCC `.mp3`).
    Mp3,
    /// Linear PCM, little endian (SoundFormat 3).
    PcmLe,
    /// Nellymoser (SoundFormats 4 = 16 kHz mono, 5 = 8 kHz mono, 6).
    Nellymoser,
    /// G.711 A-law (SoundFormat 7).
    G711A,
    /// G.711 mu-law (SoundFormat 8).
    G711U,
    /// AAC (SoundFormat 10, FourCC `mp4a`).
    Aac,
    /// Speex (SoundFormat 11, always 16 kHz mono).
    Speex,
    /// MP3 at 8 kHz (SoundFormat 14).
    Mp3At8kHz,
    /// Opus (FourCC `Opus`).
    Opus,
    /// FLAC (FourCC `fLaC`).
    Flac,
    /// AC-3 (FourCC `ac-3`).
    Ac3,
    /// E-AC-3 (FourCC `ec-3`).
    Eac3,
    /// Any other codec: the legacy SoundFormat (12, 13, 15) when the tag is
    /// legacy, the big-endian FourCC when it is enhanced.
    Other(u32),
}

impl AudioCodec {
    /// Maps a legacy SoundFormat (high nibble of byte 0); also what a
    /// numeric `audiocodecid` in onMetaData means when it is below 16.
    /// Format 9 is the E-RTMP ExHeader marker, not a codec: `Other(9)`.
    pub fn from_sound_format(format: u8) -> Self {
        match format {
            0 => Self::Pcm,
            1 => Self::Adpcm,
            2 => Self::Mp3,
            3 => Self::PcmLe,
            4..=6 => Self::Nellymoser,
            7 => Self::G711A,
            8 => Self::G711U,
            10 => Self::Aac,
            11 => Self::Speex,
            14 => Self::Mp3At8kHz,
            other => Self::Other(u32::from(other)),
        }
    }

    /// Maps an E-RTMP audio FourCC (big-endian `u32`).
    pub fn from_fourcc(code: u32) -> Self {
        match code {
            FOURCC_MP4A => Self::Aac,
            FOURCC_OPUS => Self::Opus,
            FOURCC_FLAC => Self::Flac,
            FOURCC_AC3 => Self::Ac3,
            FOURCC_EAC3 => Self::Eac3,
            FOURCC_MP3 => Self::Mp3,
            other => Self::Other(other),
        }
    }

    /// Whether a decoder needs this codec's sequence header (AAC's
    /// AudioSpecificConfig, the Opus and FLAC headers of E-RTMP's SequenceStart)
    /// before its first frame: frames sent earlier are useless to it.
    pub fn needs_sequence_header(self) -> bool {
        matches!(self, Self::Aac | Self::Opus | Self::Flac)
    }

    /// Short lowercase name for logs and the status API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pcm => "pcm",
            Self::Adpcm => "adpcm",
            Self::Mp3 => "mp3",
            Self::PcmLe => "pcm_le",
            Self::Nellymoser => "nellymoser",
            Self::G711A => "g711a",
            Self::G711U => "g711u",
            Self::Aac => "aac",
            Self::Speex => "speex",
            Self::Mp3At8kHz => "mp3_8k",
            Self::Opus => "opus",
            Self::Flac => "flac",
            Self::Ac3 => "ac3",
            Self::Eac3 => "eac3",
            Self::Other(_) => "other",
        }
    }
}

const FOURCC_MP4A: u32 = fourcc(b"mp4a");
const FOURCC_OPUS: u32 = fourcc(b"Opus");
const FOURCC_FLAC: u32 = fourcc(b"fLaC");
const FOURCC_AC3: u32 = fourcc(b"ac-3");
const FOURCC_EAC3: u32 = fourcc(b"ec-3");
const FOURCC_MP3: u32 = fourcc(b".mp3");

/// What an audio packet carries, as far as a relay cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioPacketKind {
    /// Decoder configuration (AAC AudioSpecificConfig, E-RTMP
    /// SequenceStart): cache it, replace it on change, replay to late joiners.
    SequenceHeader,
    /// E-RTMP MultichannelConfig (channel layout): configuration too, so a
    /// hub should cache and replay it along with the sequence header.
    MultichannelConfig,
    /// Coded audio.
    Frame,
    /// E-RTMP SequenceEnd.
    EndOfSequence,
    /// A reserved or unknown packet type: forward as-is.
    Other,
}

/// Classification of one audio payload. `Copy`, no borrowed data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioTag {
    /// Codec of the packet (of its first track when multitrack).
    pub codec: AudioCodec,
    /// What the packet carries.
    pub kind: AudioPacketKind,
    /// True when the E-RTMP ExHeader (SoundFormat 9) was used.
    pub enhanced: bool,
    /// True when the E-RTMP Multitrack wrapper was used; the other fields
    /// then describe the first track only.
    pub multitrack: bool,
    /// Track id of the (first) track; 0 unless multitrack. OBS sends extra
    /// audio tracks on ids >= 1: key caches by track or ignore them.
    pub track_id: u8,
    /// Sample rate from the legacy header flags (fixed for Nellymoser 8/16,
    /// Speex, MP3-8k); `None` for enhanced tags. For AAC the flags are
    /// nominal (encoders always write 44.1 kHz): use [`aac_config`].
    pub sample_rate: Option<u32>,
    /// Channel count from the legacy header flags; same caveats as
    /// `sample_rate`.
    pub channels: Option<u8>,
}

/// Classifies an RTMP audio message payload.
///
/// # Errors
/// [`FlvError::EmptyPayload`] for an empty payload, which in RTMP is the
/// legacy "silence" marker (forward it as-is; it is neither a frame nor a
/// header). [`FlvError::Truncated`] when the header stops early,
/// [`FlvError::UnknownMultitrackType`] for a reserved multitrack layout.
pub fn parse_audio(payload: &[u8]) -> Result<AudioTag, FlvError> {
    let (&first, rest) = payload.split_first().ok_or(FlvError::EmptyPayload)?;
    let mut cur = Cursor::new(rest);
    let format = first >> 4;
    if format == SOUND_FORMAT_EX_HEADER {
        parse_enhanced(first, &mut cur)
    } else {
        parse_legacy(first, format, &mut cur)
    }
}

/// True when the payload is an audio sequence header of any track; false
/// for anything else, including unparsable payloads.
pub fn is_audio_sequence_header(payload: &[u8]) -> bool {
    parse_audio(payload).is_ok_and(|tag| tag.kind == AudioPacketKind::SequenceHeader)
}

const SOUND_FORMAT_EX_HEADER: u8 = 9;
const SOUND_FORMAT_AAC: u8 = 10;
/// E-RTMP AudioPacketType meaning Multitrack.
const PACKET_MULTITRACK: u8 = 5;

fn parse_legacy(first: u8, format: u8, cur: &mut Cursor<'_>) -> Result<AudioTag, FlvError> {
    let kind = if format == SOUND_FORMAT_AAC {
        match cur.u8("AACPacketType")? {
            0 => AudioPacketKind::SequenceHeader,
            1 => AudioPacketKind::Frame,
            _ => AudioPacketKind::Other,
        }
    } else {
        AudioPacketKind::Frame
    };
    let (sample_rate, channels) = legacy_rate_and_channels(first, format);
    Ok(AudioTag {
        codec: AudioCodec::from_sound_format(format),
        kind,
        enhanced: false,
        multitrack: false,
        track_id: 0,
        sample_rate: Some(sample_rate),
        channels: Some(channels),
    })
}

/// Rate and channels from the flags, except for formats whose rate is fixed
/// by definition and whose flags are meaningless.
fn legacy_rate_and_channels(first: u8, format: u8) -> (u32, u8) {
    let flagged_channels = if first & 0x01 != 0 { 2 } else { 1 };
    match format {
        4 | 11 => (16_000, 1),
        5 => (8_000, 1),
        14 => (8_000, flagged_channels),
        _ => {
            // SoundRate flag; "5.5 kHz" is really 5512.5 Hz.
            let rate = match (first >> 2) & 0x03 {
                0 => 5_512,
                1 => 11_025,
                2 => 22_050,
                _ => 44_100,
            };
            (rate, flagged_channels)
        }
    }
}

fn parse_enhanced(first: u8, cur: &mut Cursor<'_>) -> Result<AudioTag, FlvError> {
    let packet_type = skip_mod_ex(cur, first & 0x0F)?;
    let track = read_track_prefix(cur, packet_type, PACKET_MULTITRACK)?;
    Ok(AudioTag {
        codec: AudioCodec::from_fourcc(track.fourcc),
        kind: enhanced_kind(track.packet_type),
        enhanced: true,
        multitrack: track.multitrack,
        track_id: track.track_id,
        sample_rate: None,
        channels: None,
    })
}

/// Maps a resolved E-RTMP AudioPacketType; 3 is reserved, and Multitrack
/// (5) or ModEx (7) here would be nested wrappers: `Other`.
fn enhanced_kind(packet_type: u8) -> AudioPacketKind {
    match packet_type {
        0 => AudioPacketKind::SequenceHeader,
        1 => AudioPacketKind::Frame,
        2 => AudioPacketKind::EndOfSequence,
        4 => AudioPacketKind::MultichannelConfig,
        _ => AudioPacketKind::Other,
    }
}

/// Output sample rate and channel count from an AAC AudioSpecificConfig
/// (ISO 14496-3 1.6.2.1; the bytes after the 2-byte FLV AAC header), for the
/// status API: the FLV flags always claim 44.1 kHz stereo.
///
/// Handles escaped object types (31), the explicit 24-bit frequency (index
/// 15) and explicit SBR/PS signalling (object types 5 and 29), where the
/// extension rate is the output rate and PS makes mono output stereo.
/// Returns `None` for reserved frequency indexes, channel configuration 0
/// (layout in a program config element, not parsed) or reserved channel
/// configurations, and for truncated input.
pub fn aac_config(asc: &[u8]) -> Option<(u32, u8)> {
    let mut bits = BitReader::new(asc);
    let object_type = read_object_type(&mut bits)?;
    let mut sample_rate = read_sampling_frequency(&mut bits)?;
    let mut channels = aac_channel_count(bits.read(4)?)?;
    if matches!(object_type, AOT_SBR | AOT_PS) {
        sample_rate = read_sampling_frequency(&mut bits)?;
        if object_type == AOT_PS && channels == 1 {
            channels = 2;
        }
    }
    Some((sample_rate, channels))
}

/// Audio object types with explicit hierarchical SBR signalling.
const AOT_SBR: u32 = 5;
const AOT_PS: u32 = 29;
/// ISO 14496-3 samplingFrequencyIndex table (indexes 13 and 14 reserved,
/// 15 = explicit 24-bit frequency).
const AAC_SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

fn read_object_type(bits: &mut BitReader<'_>) -> Option<u32> {
    match bits.read(5)? {
        31 => Some(32 + bits.read(6)?),
        object_type => Some(object_type),
    }
}

fn read_sampling_frequency(bits: &mut BitReader<'_>) -> Option<u32> {
    match bits.read(4)? {
        15 => bits.read(24),
        index => AAC_SAMPLE_RATES.get(usize::try_from(index).ok()?).copied(),
    }
}

/// channelConfiguration to channel count (ISO 14496-3 table 1.19 with the
/// later additions 11..=14); 0 and reserved values give `None`.
fn aac_channel_count(config: u32) -> Option<u8> {
    match config {
        1..=6 => u8::try_from(config).ok(),
        7 | 12 | 14 => Some(8),
        11 => Some(7),
        13 => Some(24),
        _ => None,
    }
}

/// MSB-first bit reader over a byte slice; `None` once the bits run out.
struct BitReader<'a> {
    bytes: &'a [u8],
    bit_pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, bit_pos: 0 }
    }

    /// Reads `count` (at most 32) bits as an unsigned number.
    fn read(&mut self, count: u32) -> Option<u32> {
        let mut value: u32 = 0;
        for _ in 0..count {
            let byte = *self.bytes.get(self.bit_pos / 8)?;
            let bit = (byte >> (7 - self.bit_pos % 8)) & 1;
            value = (value << 1) | u32::from(bit);
            self.bit_pos += 1;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(bytes: &[u8]) -> AudioTag {
        match parse_audio(bytes) {
            Ok(tag) => tag,
            Err(err) => panic!("{bytes:02x?} should parse: {err}"),
        }
    }

    fn legacy(codec: AudioCodec, kind: AudioPacketKind, rate: u32, channels: u8) -> AudioTag {
        AudioTag {
            codec,
            kind,
            enhanced: false,
            multitrack: false,
            track_id: 0,
            sample_rate: Some(rate),
            channels: Some(channels),
        }
    }

    fn enhanced(codec: AudioCodec, kind: AudioPacketKind) -> AudioTag {
        AudioTag {
            codec,
            kind,
            enhanced: true,
            multitrack: false,
            track_id: 0,
            sample_rate: None,
            channels: None,
        }
    }

    #[test]
    fn aac_sequence_header_44k_stereo() {
        let bytes = [0xAF, 0x00, 0x12, 0x10];
        assert_eq!(
            parse(&bytes),
            legacy(AudioCodec::Aac, AudioPacketKind::SequenceHeader, 44_100, 2)
        );
        assert!(is_audio_sequence_header(&bytes));
        assert_eq!(aac_config(&bytes[2..]), Some((44_100, 2)));
    }

    #[test]
    fn aac_raw_frame_and_other_packet_types() {
        let raw = [0xAF, 0x01, 0x21, 0x10, 0x04];
        assert_eq!(parse(&raw).kind, AudioPacketKind::Frame);
        assert!(!is_audio_sequence_header(&raw));
        assert_eq!(parse(&[0xAF, 0x05]).kind, AudioPacketKind::Other);
        assert_eq!(
            parse_audio(&[0xAF]),
            Err(FlvError::Truncated("AACPacketType"))
        );
    }

    #[test]
    fn empty_payload_is_the_silence_marker_error() {
        assert_eq!(parse_audio(&[]), Err(FlvError::EmptyPayload));
        assert!(!is_audio_sequence_header(&[]));
    }

    #[test]
    fn legacy_flags_give_rate_and_channels() {
        // MP3, rate 3 (44.1k), 16-bit, mono / stereo.
        assert_eq!(
            parse(&[0x2E]),
            legacy(AudioCodec::Mp3, AudioPacketKind::Frame, 44_100, 1)
        );
        assert_eq!(parse(&[0x2F]).channels, Some(2));
        // PCM rates 0..=2.
        assert_eq!(parse(&[0x02]).sample_rate, Some(5_512));
        assert_eq!(parse(&[0x36]).sample_rate, Some(11_025));
        assert_eq!(parse(&[0x1A]).sample_rate, Some(22_050));
        assert_eq!(parse(&[0x3A]).codec, AudioCodec::PcmLe);
        assert_eq!(parse(&[0x1A]).codec, AudioCodec::Adpcm);
        assert_eq!(parse(&[0x72]).codec, AudioCodec::G711A);
        assert_eq!(parse(&[0x82]).codec, AudioCodec::G711U);
    }

    #[test]
    fn formats_with_fixed_rates_ignore_the_flags() {
        assert_eq!(
            parse(&[0x4F]),
            legacy(AudioCodec::Nellymoser, AudioPacketKind::Frame, 16_000, 1)
        );
        assert_eq!(
            parse(&[0x5F]),
            legacy(AudioCodec::Nellymoser, AudioPacketKind::Frame, 8_000, 1)
        );
        assert_eq!(parse(&[0x6E]).sample_rate, Some(44_100));
        assert_eq!(
            parse(&[0xB2]),
            legacy(AudioCodec::Speex, AudioPacketKind::Frame, 16_000, 1)
        );
        assert_eq!(
            parse(&[0xE3]),
            legacy(AudioCodec::Mp3At8kHz, AudioPacketKind::Frame, 8_000, 2)
        );
        assert_eq!(parse(&[0xC2]).codec, AudioCodec::Other(12));
        assert_eq!(parse(&[0xF2]).codec, AudioCodec::Other(15));
    }

    #[test]
    fn enhanced_opus_sequence_start() {
        let bytes = [
            0x90, b'O', b'p', b'u', b's', b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd',
        ];
        assert_eq!(
            parse(&bytes),
            enhanced(AudioCodec::Opus, AudioPacketKind::SequenceHeader)
        );
        assert!(is_audio_sequence_header(&bytes));
    }

    #[test]
    fn enhanced_packet_types_and_fourccs() {
        assert_eq!(
            parse(&[0x91, b'm', b'p', b'4', b'a', 0x21]),
            enhanced(AudioCodec::Aac, AudioPacketKind::Frame)
        );
        assert_eq!(
            parse(&[0x92, b'f', b'L', b'a', b'C']),
            enhanced(AudioCodec::Flac, AudioPacketKind::EndOfSequence)
        );
        assert_eq!(
            parse(&[0x94, b'a', b'c', b'-', b'3', 0x00, 0x06]),
            enhanced(AudioCodec::Ac3, AudioPacketKind::MultichannelConfig)
        );
        assert_eq!(
            parse(&[0x91, b'e', b'c', b'-', b'3']).codec,
            AudioCodec::Eac3
        );
        assert_eq!(
            parse(&[0x91, b'.', b'm', b'p', b'3']).codec,
            AudioCodec::Mp3
        );
        assert_eq!(
            parse(&[0x91, b'a', b'b', b'c', b'd']).codec,
            AudioCodec::Other(0x6162_6364)
        );
        assert_eq!(
            parse(&[0x93, b'O', b'p', b'u', b's']).kind,
            AudioPacketKind::Other
        );
        assert_eq!(
            parse_audio(&[0x90, b'O']),
            Err(FlvError::Truncated("FourCC"))
        );
    }

    #[test]
    fn enhanced_mod_ex_then_packet_type() {
        let tag = parse(&[0x97, 0x00, 0xAA, 0x01, b'O', b'p', b'u', b's', 0xFC]);
        assert_eq!(tag, enhanced(AudioCodec::Opus, AudioPacketKind::Frame));
    }

    #[test]
    fn enhanced_multitrack() {
        // Multitrack(5) | OneTrack << 4 | SequenceStart, mp4a, track 1, ASC.
        let one = parse(&[0x95, 0x00, b'm', b'p', b'4', b'a', 0x01, 0x12, 0x10]);
        assert_eq!(
            one,
            AudioTag {
                multitrack: true,
                track_id: 1,
                ..enhanced(AudioCodec::Aac, AudioPacketKind::SequenceHeader)
            }
        );
        // ManyTracksManyCodecs | CodedFrames: FourCC, track 0, UI24 size.
        let many = parse(&[
            0x95, 0x21, b'O', b'p', b'u', b's', 0x00, 0x00, 0x00, 0x03, 1, 2, 3,
        ]);
        assert_eq!(
            (many.codec, many.kind, many.multitrack),
            (AudioCodec::Opus, AudioPacketKind::Frame, true)
        );
        assert_eq!(
            parse_audio(&[0x95, 0xF1]),
            Err(FlvError::UnknownMultitrackType(15))
        );
    }

    #[test]
    fn aac_config_vectors() {
        // AAC-LC 48 kHz stereo.
        assert_eq!(aac_config(&[0x11, 0x90]), Some((48_000, 2)));
        // AAC-LC 48 kHz, channel config 7 = 7.1.
        assert_eq!(aac_config(&[0x11, 0xB8]), Some((48_000, 8)));
        // HE-AAC explicit: AOT 5, core 24 kHz stereo, extension 48 kHz.
        assert_eq!(aac_config(&[0x2B, 0x11, 0x88]), Some((48_000, 2)));
        // HE-AACv2 explicit: AOT 29, core 24 kHz mono, extension 48 kHz.
        assert_eq!(aac_config(&[0xEB, 0x09, 0x88]), Some((48_000, 2)));
        // Escaped object type 42, 48 kHz stereo.
        assert_eq!(aac_config(&[0xF9, 0x46, 0x40]), Some((48_000, 2)));
        // Explicit 24-bit frequency 44100.
        assert_eq!(
            aac_config(&[0x17, 0x80, 0x56, 0x22, 0x10]),
            Some((44_100, 2))
        );
    }

    #[test]
    fn aac_config_rejects_what_it_cannot_describe() {
        assert_eq!(aac_config(&[]), None);
        assert_eq!(aac_config(&[0x12]), None);
        // Channel configuration 0: layout in a PCE.
        assert_eq!(aac_config(&[0x12, 0x00]), None);
        // Reserved frequency index 13.
        assert_eq!(aac_config(&[0x16, 0x90]), None);
        // Explicit frequency cut short.
        assert_eq!(aac_config(&[0x17, 0x80, 0x56]), None);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_audio(&bytes);
            let _ = is_audio_sequence_header(&bytes);
            let _ = aac_config(&bytes);
        }

        /// Every legacy non-AAC first byte classifies as a frame; the rate
        /// is always one the FLV spec can express.
        #[test]
        fn legacy_single_byte_always_classifies(first in any::<u8>()) {
            let format = first >> 4;
            prop_assume!(format != 9 && format != 10);
            let tag = parse_audio(&[first]);
            prop_assert!(tag.is_ok_and(|t| t.kind == AudioPacketKind::Frame
                && matches!(t.sample_rate, Some(5_512 | 8_000 | 11_025 | 16_000 | 22_050 | 44_100))));
        }

        #[test]
        fn mutated_enhanced_never_panics(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = vec![0x97, 0x01, 0x00, 0x00, 0x05, 0x21, b'O', b'p', b'u', b's', 0x00, 0x00, 0x00, 0x01, 0xFC];
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            let _ = parse_audio(&bytes);
        }
    }
}
