//! The tracks of an initialization segment: one sample entry per codec the
//! muxer writes (H.264 `avc1`, HEVC `hvc1`, AV1 `av01`; AAC `mp4a`, Opus
//! `Opus`), built from the FLV sequence headers the stream sent.

use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Atom, Audio, Av01, Av1c, Avc1, Avcc, Codec, Dinf, Dops, Dref, DrefEntry, Esds, FourCC, Hdlr,
    Hvc1, Hvcc, Mdhd, Mdia, Minf, Mp4a, Opus, OpusChannelMapping, Smhd, Stbl, Stsd, Tkhd, Trak,
    Trex, Url, Visual, Vmhd,
};

use super::{AUDIO_TRACK, Fmp4Error, TIMESCALE, VIDEO_TRACK};
use crate::flv::{AudioCodec, VideoCodec, aac_config};

pub(super) fn video_track(header: &[u8]) -> Result<Trak, Fmp4Error> {
    let (codec, config) = crate::flv::video_configuration(header)
        .ok()
        .flatten()
        .ok_or(Fmp4Error::Config("video"))?;
    let visual = |width, height| Visual {
        data_reference_index: 1,
        width,
        height,
        ..Default::default()
    };
    // The picture size from the SPS (the standby slate's reader), for the
    // track and sample entry; players read the SPS themselves anyway.
    let size = |picture: Result<crate::standby::parse::PictureConfig, _>| {
        picture
            .ok()
            .and_then(|p| p.size)
            .map(|(w, h)| (u16::try_from(w).unwrap_or(0), u16::try_from(h).unwrap_or(0)))
            .unwrap_or((0, 0))
    };
    let (codec, (width, height)) = match codec {
        VideoCodec::Avc => {
            let avcc =
                Avcc::decode_body(&mut &config[..]).map_err(|_| Fmp4Error::Config("H.264"))?;
            let (width, height) = size(crate::standby::parse::avc(config));
            let entry = Avc1 {
                visual: visual(width, height),
                avcc,
                ..Default::default()
            };
            (Codec::Avc1(entry), (width, height))
        }
        VideoCodec::Hevc => {
            let hvcc =
                Hvcc::decode_body(&mut &config[..]).map_err(|_| Fmp4Error::Config("HEVC"))?;
            let (width, height) = size(crate::standby::parse::hevc(config));
            let entry = Hvc1 {
                visual: visual(width, height),
                hvcc,
                ..Default::default()
            };
            (Codec::Hvc1(entry), (width, height))
        }
        VideoCodec::Av1 => {
            // The enhanced-RTMP sequence start is the AV1CodecConfigurationRecord,
            // av1C's body; players take the picture size from its sequence header.
            let av1c = Av1c::decode_body(&mut &config[..]).map_err(|_| Fmp4Error::Config("AV1"))?;
            let entry = Av01 {
                visual: visual(0, 0),
                av1c,
                btrt: None,
                ccst: None,
                colr: None,
                pasp: None,
                taic: None,
                spatial: None,
            };
            (Codec::Av01(entry), (0, 0))
        }
        other => return Err(Fmp4Error::Codec(format!("{other:?}"))),
    };
    Ok(trak(VIDEO_TRACK, b"vide", codec, width, height))
}

pub(super) fn audio_track(header: &[u8]) -> Result<Trak, Fmp4Error> {
    let (codec, asc) = crate::flv::audio_configuration(header)
        .ok()
        .flatten()
        .ok_or(Fmp4Error::Config("audio"))?;
    if codec == AudioCodec::Opus {
        return opus_track(asc);
    }
    if codec != AudioCodec::Aac {
        return Err(Fmp4Error::Codec(format!("{codec:?}")));
    }
    let (sample_rate, channels) = aac_config(asc).ok_or(Fmp4Error::Config("AAC"))?;
    let first = u16::from_be_bytes([asc[0], *asc.get(1).unwrap_or(&0)]);
    let mp4a = Mp4a {
        audio: Audio {
            data_reference_index: 1,
            channel_count: u16::from(channels),
            sample_size: 16,
            sample_rate: u16::try_from(sample_rate).unwrap_or(0).into(),
        },
        esds: Esds {
            es_desc: EsDescriptor {
                es_id: 2,
                dec_config: DecoderConfig {
                    object_type_indication: 0x40,
                    stream_type: 5,
                    up_stream: 0,
                    dec_specific: Some(DecoderSpecific {
                        profile: (first >> 11) as u8,
                        freq_index: ((first >> 7) & 0x0F) as u8,
                        chan_conf: ((first >> 3) & 0x0F) as u8,
                        raw: asc.to_vec(),
                    }),
                    ..Default::default()
                },
                sl_config: SLConfig::default(),
                ..Default::default()
            },
        },
        btrt: None,
        taic: None,
    };
    Ok(trak(AUDIO_TRACK, b"soun", Codec::Mp4a(mp4a), 0, 0))
}

fn trak(track_id: u32, handler: &[u8; 4], codec: Codec, width: u16, height: u16) -> Trak {
    let video = handler == b"vide";
    Trak {
        tkhd: Tkhd {
            track_id,
            enabled: true,
            in_movie: true,
            volume: if video { 0.into() } else { 1.into() },
            width: width.into(),
            height: height.into(),
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: TIMESCALE,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(handler),
                name: if video { "prism video" } else { "prism audio" }.into(),
            },
            minf: Minf {
                vmhd: video.then(Vmhd::default),
                smhd: (!video).then(Smhd::default),
                dinf: Dinf {
                    dref: Dref {
                        entries: vec![DrefEntry::Url(Url::default())],
                    },
                },
                stbl: Stbl {
                    stsd: Stsd {
                        codecs: vec![codec],
                    },
                    ..Default::default()
                },
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

pub(super) fn trex_of(track_id: u32) -> Trex {
    Trex {
        track_id,
        default_sample_description_index: 1,
        ..Default::default()
    }
}

/// An Opus track from the enhanced-RTMP sequence start, which carries Opus's ID
/// header (`OpusHead`, RFC 7845 section 5.1, little-endian), rewritten as the
/// `dOps` box (the same fields, big-endian, without the magic).
fn opus_track(head: &[u8]) -> Result<Trak, Fmp4Error> {
    let bad = || Fmp4Error::Config("Opus");
    let fields = head.strip_prefix(b"OpusHead").ok_or_else(bad)?;
    if fields.len() < 11 {
        return Err(bad());
    }
    let channels = fields[1];
    let family = fields[10];
    let channel_mapping = if family == 0 {
        None
    } else {
        let table = fields.get(11..13 + usize::from(channels)).ok_or_else(bad)?;
        Some(OpusChannelMapping {
            family,
            stream_count: table[0],
            coupled_count: table[1],
            channel_mapping: table[2..].to_vec(),
        })
    };
    let dops = Dops {
        output_channel_count: channels,
        pre_skip: u16::from_le_bytes([fields[2], fields[3]]),
        input_sample_rate: u32::from_le_bytes([fields[4], fields[5], fields[6], fields[7]]),
        output_gain: i16::from_le_bytes([fields[8], fields[9]]),
        channel_mapping,
    };
    let opus = Opus {
        audio: Audio {
            data_reference_index: 1,
            channel_count: u16::from(channels),
            sample_size: 16,
            sample_rate: 48000u16.into(),
        },
        dops,
        btrt: None,
    };
    Ok(trak(AUDIO_TRACK, b"soun", Codec::Opus(opus), 0, 0))
}
