//! What a decoder configuration says: profile, level, chroma format, bit depth and
//! picture size from the AVC and HEVC configuration records (through their SPS) and
//! the AV1 codec configuration record (through its sequence header OBU); object
//! type, rate and channels from AAC's AudioSpecificConfig; channels from OpusHead.
//!
//! Pure functions over the bytes after the FLV tag header. The slate's spec is built
//! from the live stream's records, and the rendered slate's records are parsed back
//! with the same functions to prove the slate matches.

use std::num::NonZeroUsize;

use h264_reader::avcc::AvcDecoderConfigurationRecord;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::{Nal, RefNal};
use h264_reader::rbsp::{BitRead, BitReader, ByteReader};

/// A configuration record that cannot be read; the message says which part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(what: impl Into<String>) -> ConfigError {
    ConfigError(what.into())
}

/// An H.264 or HEVC stream's coding parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PictureConfig {
    /// `profile_idc` (H.264) or `general_profile_idc` (HEVC); `seq_profile` for AV1.
    pub profile: u8,
    /// `level_idc` (H.264: 31 = 3.1; HEVC: 93 = 3.1) or AV1's `seq_level_idx`.
    pub level: u8,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format: u8,
    /// Luma bit depth (8, 10, 12).
    pub bit_depth: u8,
    /// The picture size after cropping, when the parameter set could be read.
    pub size: Option<(u32, u32)>,
    /// The frame rate the H.264 VUI timing states, if it does.
    pub fps: Option<f64>,
}

/// Where `level_idc` is in an H.264 SPS NAL unit (after the NAL header,
/// `profile_idc` and the constraint flags), and the highest level (6.2).
const SPS_LEVEL_AT: usize = 3;
const HIGHEST_H264_LEVEL: u8 = 62;

/// Reads an AVCDecoderConfigurationRecord and its first SPS.
pub fn avc(record: &[u8]) -> Result<PictureConfig, ConfigError> {
    let record = AvcDecoderConfigurationRecord::try_from(record)
        .map_err(|e| err(format!("invalid AVC configuration record: {e:?}")))?;
    let sps = record
        .sequence_parameter_sets()
        .next()
        .ok_or_else(|| err("AVC configuration record without an SPS"))?
        .map_err(|e| {
            err(format!(
                "invalid SPS in the AVC configuration record: {e:?}"
            ))
        })?;
    let read = |nal: &[u8]| SeqParameterSet::from_bits(RefNal::new(nal, &[], true).rbsp_bits());
    let sps = match read(sps) {
        Ok(sps) => sps,
        // h264-reader refuses a picture larger than its level allows; encoders do
        // signal too low a level (x264 writes the level it is told), and the stream
        // plays. Read the rest as if at the highest level, keep the level signalled.
        Err(_) if sps.len() > SPS_LEVEL_AT => {
            let mut patched = sps.to_vec();
            let level = patched[SPS_LEVEL_AT];
            patched[SPS_LEVEL_AT] = HIGHEST_H264_LEVEL;
            let mut sps =
                read(&patched).map_err(|e| err(format!("unreadable H.264 SPS: {e:?}")))?;
            sps.level_idc = level;
            sps
        }
        Err(e) => return Err(err(format!("unreadable H.264 SPS: {e:?}"))),
    };
    let size = sps.pixel_dimensions().ok();
    Ok(PictureConfig {
        profile: u8::from(sps.profile_idc),
        level: sps.level_idc,
        chroma_format: sps.chroma_info.chroma_format.to_u32() as u8,
        bit_depth: sps.chroma_info.bit_depth_luma_minus8.saturating_add(8),
        size,
        fps: sps.fps().filter(|f| f.is_finite() && *f > 0.0),
    })
}

/// HEVC NAL unit type of a sequence parameter set.
const HEVC_SPS: u8 = 33;
/// An HEVC NAL unit header is two bytes (H.264's is one).
const HEVC_NAL_HEADER_LEN: NonZeroUsize = NonZeroUsize::new(2).unwrap();
/// The fixed part of an HEVCDecoderConfigurationRecord.
const HVCC_FIXED_LEN: usize = 23;

/// Reads an HEVCDecoderConfigurationRecord and, for the size, its first SPS.
pub fn hevc(record: &[u8]) -> Result<PictureConfig, ConfigError> {
    if record.len() < HVCC_FIXED_LEN {
        return Err(err("HEVC configuration record cut short"));
    }
    let mut config = PictureConfig {
        profile: record[1] & 0x1F,
        level: record[12],
        chroma_format: record[16] & 0x03,
        bit_depth: (record[17] & 0x07) + 8,
        size: None,
        fps: None,
    };
    let arrays = record[22];
    let mut at = HVCC_FIXED_LEN;
    for _ in 0..arrays {
        let header = record
            .get(at..at + 3)
            .ok_or_else(|| err("HEVC arrays cut short"))?;
        let nal_type = header[0] & 0x3F;
        let count = u16::from_be_bytes([header[1], header[2]]);
        at += 3;
        for _ in 0..count {
            let len = record
                .get(at..at + 2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                .ok_or_else(|| err("HEVC NAL length cut short"))?;
            let nal = record
                .get(at + 2..at + 2 + len)
                .ok_or_else(|| err("HEVC NAL unit cut short"))?;
            at += 2 + len;
            if nal_type == HEVC_SPS && config.size.is_none() {
                config.size = Some(hevc_sps_size(nal)?);
            }
        }
    }
    Ok(config)
}

/// The cropped picture size from an HEVC SPS NAL unit (with its 2-byte header).
fn hevc_sps_size(nal: &[u8]) -> Result<(u32, u32), ConfigError> {
    let bad = |e| err(format!("unreadable HEVC SPS: {e:?}"));
    let mut r = BitReader::new(ByteReader::skipping_bytes(nal, HEVC_NAL_HEADER_LEN));
    r.skip(4, "sps_video_parameter_set_id").map_err(bad)?;
    let sub_layers: u8 = r.read::<3, u8>("sps_max_sub_layers_minus1").map_err(bad)?;
    r.skip(1, "sps_temporal_id_nesting_flag").map_err(bad)?;
    // profile_tier_level(1, sps_max_sub_layers_minus1)
    r.skip(88, "general profile").map_err(bad)?;
    r.skip(8, "general_level_idc").map_err(bad)?;
    let mut present = Vec::with_capacity(usize::from(sub_layers));
    for _ in 0..sub_layers {
        let profile = r.read_bit("sub_layer_profile_present_flag").map_err(bad)?;
        let level = r.read_bit("sub_layer_level_present_flag").map_err(bad)?;
        present.push((profile, level));
    }
    if sub_layers > 0 {
        for _ in sub_layers..8 {
            r.skip(2, "reserved_zero_2bits").map_err(bad)?;
        }
    }
    for (profile, level) in present {
        if profile {
            r.skip(88, "sub-layer profile").map_err(bad)?;
        }
        if level {
            r.skip(8, "sub_layer_level_idc").map_err(bad)?;
        }
    }
    r.read_ue("sps_seq_parameter_set_id").map_err(bad)?;
    let chroma_format = r.read_ue("chroma_format_idc").map_err(bad)?;
    if chroma_format == 3 {
        r.skip(1, "separate_colour_plane_flag").map_err(bad)?;
    }
    let width = r.read_ue("pic_width_in_luma_samples").map_err(bad)?;
    let height = r.read_ue("pic_height_in_luma_samples").map_err(bad)?;
    let (mut crop_x, mut crop_y) = (0u32, 0u32);
    if r.read_bit("conformance_window_flag").map_err(bad)? {
        let (sub_w, sub_h) = match chroma_format {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let left = r.read_ue("conf_win_left_offset").map_err(bad)?;
        let right = r.read_ue("conf_win_right_offset").map_err(bad)?;
        let top = r.read_ue("conf_win_top_offset").map_err(bad)?;
        let bottom = r.read_ue("conf_win_bottom_offset").map_err(bad)?;
        crop_x = left.saturating_add(right).saturating_mul(sub_w);
        crop_y = top.saturating_add(bottom).saturating_mul(sub_h);
    }
    match (width.checked_sub(crop_x), height.checked_sub(crop_y)) {
        (Some(w), Some(h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(err("HEVC SPS crops away the whole picture")),
    }
}

/// AV1 OBU type of a sequence header.
const OBU_SEQUENCE_HEADER: u8 = 1;

/// Reads an AV1CodecConfigurationRecord and, for the size, its sequence header OBU.
pub fn av1(record: &[u8]) -> Result<PictureConfig, ConfigError> {
    if record.len() < 4 || record[0] & 0x80 == 0 {
        return Err(err("not an AV1 codec configuration record"));
    }
    let high_bitdepth = record[2] & 0x40 != 0;
    let twelve_bit = record[2] & 0x20 != 0;
    let monochrome = record[2] & 0x10 != 0;
    let (sub_x, sub_y) = (record[2] & 0x08 != 0, record[2] & 0x04 != 0);
    let mut config = PictureConfig {
        profile: record[1] >> 5,
        level: record[1] & 0x1F,
        chroma_format: match (monochrome, sub_x, sub_y) {
            (true, _, _) => 0,
            (false, true, true) => 1,
            (false, true, false) => 2,
            _ => 3,
        },
        bit_depth: match (high_bitdepth, twelve_bit) {
            (false, _) => 8,
            (true, false) => 10,
            (true, true) => 12,
        },
        size: None,
        fps: None,
    };
    let mut obus = &record[4..];
    while let Some((obu_type, payload, rest)) = next_obu(obus)? {
        if obu_type == OBU_SEQUENCE_HEADER {
            config.size = Some(av1_sequence_size(payload)?);
            break;
        }
        obus = rest;
    }
    Ok(config)
}

/// An OBU's type, its payload and the bytes after it.
type Obu<'a> = (u8, &'a [u8], &'a [u8]);

/// Splits one OBU (type, payload, the bytes after it) off `bytes`.
fn next_obu(bytes: &[u8]) -> Result<Option<Obu<'_>>, ConfigError> {
    let Some(&header) = bytes.first() else {
        return Ok(None);
    };
    let obu_type = (header >> 3) & 0x0F;
    let mut at = 1 + usize::from(header & 0x04 != 0);
    if header & 0x02 == 0 {
        // No size field: the OBU runs to the end.
        return Ok(Some((obu_type, bytes.get(at..).unwrap_or_default(), &[])));
    }
    let mut size: u64 = 0;
    for i in 0..8 {
        let byte = *bytes.get(at).ok_or_else(|| err("AV1 OBU size cut short"))?;
        at += 1;
        size |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            break;
        }
    }
    let end = usize::try_from(size)
        .ok()
        .and_then(|size| at.checked_add(size))
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| err("AV1 OBU cut short"))?;
    Ok(Some((obu_type, &bytes[at..end], &bytes[end..])))
}

/// The maximum frame size an AV1 sequence header declares (AV1 spec 5.5.1).
fn av1_sequence_size(obu: &[u8]) -> Result<(u32, u32), ConfigError> {
    let mut r = Bits::new(obu);
    let cut = || err("AV1 sequence header cut short");
    r.read(3).ok_or_else(cut)?; // seq_profile
    r.read(1).ok_or_else(cut)?; // still_picture
    let reduced = r.read(1).ok_or_else(cut)? == 1;
    if reduced {
        r.read(5).ok_or_else(cut)?;
    } else {
        let timing_info = r.read(1).ok_or_else(cut)? == 1;
        let mut decoder_model = false;
        let mut buffer_delay_len = 0;
        if timing_info {
            r.read(32).ok_or_else(cut)?;
            r.read(32).ok_or_else(cut)?;
            if r.read(1).ok_or_else(cut)? == 1 {
                r.uvlc().ok_or_else(cut)?;
            }
            decoder_model = r.read(1).ok_or_else(cut)? == 1;
            if decoder_model {
                buffer_delay_len = r.read(5).ok_or_else(cut)? + 1;
                r.read(32).ok_or_else(cut)?;
                r.read(10).ok_or_else(cut)?;
            }
        }
        let initial_display_delay = r.read(1).ok_or_else(cut)? == 1;
        let points = r.read(5).ok_or_else(cut)? + 1;
        for _ in 0..points {
            r.read(12).ok_or_else(cut)?;
            if r.read(5).ok_or_else(cut)? > 7 {
                r.read(1).ok_or_else(cut)?;
            }
            if decoder_model && r.read(1).ok_or_else(cut)? == 1 {
                r.read(buffer_delay_len).ok_or_else(cut)?;
                r.read(buffer_delay_len).ok_or_else(cut)?;
                r.read(1).ok_or_else(cut)?;
            }
            if initial_display_delay && r.read(1).ok_or_else(cut)? == 1 {
                r.read(4).ok_or_else(cut)?;
            }
        }
    }
    let width_bits = r.read(4).ok_or_else(cut)? + 1;
    let height_bits = r.read(4).ok_or_else(cut)? + 1;
    let width = r.read(width_bits).ok_or_else(cut)? + 1;
    let height = r.read(height_bits).ok_or_else(cut)? + 1;
    Ok((width, height))
}

/// MSB-first bits of a byte slice (AV1 has no emulation prevention); `None` past
/// the end.
struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Bits<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// `count` (at most 32) bits as a number.
    fn read(&mut self, count: u32) -> Option<u32> {
        let mut value: u64 = 0;
        for _ in 0..count {
            let byte = *self.bytes.get(self.at / 8)?;
            value = (value << 1) | u64::from((byte >> (7 - self.at % 8)) & 1);
            self.at += 1;
        }
        u32::try_from(value).ok()
    }

    /// AV1's uvlc(): leading zeros, then that many bits.
    fn uvlc(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.read(1)? == 0 {
            zeros += 1;
            if zeros >= 32 {
                return None;
            }
        }
        self.read(zeros)
    }
}

/// AAC's audio object type (2 LC, 5 HE, 29 HE v2...), from an AudioSpecificConfig.
pub fn aac_object_type(asc: &[u8]) -> Option<u8> {
    let mut bits = Bits::new(asc);
    let object_type = match bits.read(5)? {
        31 => 32 + bits.read(6)?,
        other => other,
    };
    u8::try_from(object_type).ok()
}

/// The channel count of an OpusHead ("OpusHead", version, channels...).
pub fn opus_channels(head: &[u8]) -> Option<u8> {
    (head.len() >= 19 && head.starts_with(b"OpusHead"))
        .then(|| head[9])
        .filter(|c| *c > 0)
}
