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

/// The decoder configuration an audio sequence header carries (AAC's
/// AudioSpecificConfig, E-RTMP SequenceStart's Opus or FLAC header), with its codec:
/// the bytes after the legacy or enhanced tag header, for a track-0 sequence header;
/// `None` for any other packet. See [`super::video_configuration`] for why.
///
/// # Errors
/// As [`parse_audio`], for a payload whose header is cut short.
pub fn audio_configuration(payload: &[u8]) -> Result<Option<(AudioCodec, &[u8])>, FlvError> {
    let (&first, rest) = payload.split_first().ok_or(FlvError::EmptyPayload)?;
    let mut cur = Cursor::new(rest);
    let format = first >> 4;
    if format != SOUND_FORMAT_EX_HEADER {
        if format != SOUND_FORMAT_AAC || cur.u8("AACPacketType")? != 0 {
            return Ok(None);
        }
        return Ok(Some((AudioCodec::Aac, cur.rest())));
    }
    let packet_type = skip_mod_ex(&mut cur, first & 0x0F)?;
    let track = read_track_prefix(&mut cur, packet_type, PACKET_MULTITRACK)?;
    Ok((track.packet_type == 0 && track.track_id == 0)
        .then(|| (AudioCodec::from_fourcc(track.fourcc), cur.rest())))
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
mod tests;
