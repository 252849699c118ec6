//! Fragmented MP4 (ISO BMFF with movie fragments, as CMAF), from FLV payloads,
//! without I/O: an initialization segment (`ftyp` + `moov`) from the streams'
//! decoder configurations, then `moof` + `mdat` fragments of samples. The boxes
//! are encoded by the maintained `mp4-atom` crate; this module decides what goes
//! in them.
//!
//! A fragment is complete on disk once written, so a file cut short (a crash, a
//! SIGKILL) plays up to its last whole fragment. Timestamps are FLV's
//! milliseconds (timescale 1000 for every track): a sample's duration is the
//! distance to the next sample of its track, so a track's last sample waits in
//! the muxer until the next one arrives, or until [`Fmp4Muxer::finish`] gives it
//! the duration of the one before.
//!
//! H.264 (`avc1`) and HEVC (`hvc1`) video, legacy or enhanced RTMP, and AAC
//! audio. FLV's video frames are already length-prefixed NAL units and its AAC
//! frames raw access units, so sample data is the payload after the tag header,
//! shared, never rewritten.

use bytes::Bytes;
use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Atom, Audio, Avc1, Avcc, Codec, Dinf, Dref, DrefEntry, Encode, Esds, FourCC, Ftyp, Hdlr, Hvc1,
    Hvcc, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stsd, Tfdt, Tfhd, Tkhd,
    Traf, Trak, Trex, Trun, TrunEntry, TrunSamples, Url, Visual, Vmhd,
};

use crate::flv::{AudioCodec, VideoCodec, VideoPacketKind, aac_config, parse_video};

/// Milliseconds: FLV's unit, kept so no timestamp is rounded.
const TIMESCALE: u32 = 1000;
const VIDEO_TRACK: u32 = 1;
const AUDIO_TRACK: u32 = 2;
/// `trun` sample flags of a sync sample (depends on no other) and of any other.
const SYNC: u32 = 0x0200_0000;
const NON_SYNC: u32 = 0x0101_0000;

/// Why a stream cannot be written as fragmented MP4.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fmp4Error {
    /// A codec this muxer does not write.
    #[error("MP4 recording writes H.264, HEVC and AAC; this stream has {0}")]
    Codec(String),
    /// A decoder configuration that does not parse.
    #[error("a {0} decoder configuration that does not parse")]
    Config(&'static str),
    /// Neither a video nor an audio configuration arrived.
    #[error("no decoder configuration arrived before the first frame")]
    NoTracks,
    /// A box could not be encoded.
    #[error("MP4 encoding: {0}")]
    Encode(String),
}

/// One sample waiting for its fragment.
#[derive(Debug, Clone)]
struct Sample {
    dts: u64,
    cts_offset: i32,
    sync: bool,
    data: Bytes,
}

#[derive(Debug, Default)]
struct TrackQueue {
    /// Samples whose duration is known (the one after them arrived).
    ready: Vec<(Sample, u32)>,
    /// The last sample, waiting for the next to know its duration.
    last: Option<Sample>,
    /// The duration given to the last sample at the end.
    last_duration: u32,
}

impl TrackQueue {
    fn push(&mut self, sample: Sample) {
        if let Some(previous) = self.last.take() {
            let duration = u32::try_from(sample.dts.saturating_sub(previous.dts)).unwrap_or(0);
            self.last_duration = duration;
            self.ready.push((previous, duration));
        }
        self.last = Some(sample);
    }

    /// The ready samples decoded before `bound`, in order.
    fn take_until(&mut self, bound: u64) -> Vec<(Sample, u32)> {
        let split = self.ready.partition_point(|(sample, _)| sample.dts < bound);
        let later = self.ready.split_off(split);
        std::mem::replace(&mut self.ready, later)
    }

    fn flush_last(&mut self) {
        if let Some(last) = self.last.take() {
            self.ready.push((last, self.last_duration));
        }
    }
}

/// A stream's muxer: made with its initialization segment, then fed the
/// stream's frames.
#[derive(Debug)]
pub struct Fmp4Muxer {
    has_video: bool,
    has_audio: bool,
    sequence: u32,
    video: TrackQueue,
    audio: TrackQueue,
}

impl Fmp4Muxer {
    /// The muxer and its initialization segment for a stream with these
    /// decoder configurations (FLV sequence-header payloads).
    pub fn new(
        video_header: Option<&[u8]>,
        audio_header: Option<&[u8]>,
    ) -> Result<(Self, Vec<u8>), Fmp4Error> {
        let video = video_header.map(video_track).transpose()?;
        let audio = audio_header.map(audio_track).transpose()?;
        if video.is_none() && audio.is_none() {
            return Err(Fmp4Error::NoTracks);
        }
        let mut trex = Vec::new();
        let mut trak = Vec::new();
        if let Some(video) = video {
            trex.push(trex_of(VIDEO_TRACK));
            trak.push(video);
        }
        if let Some(audio) = audio {
            trex.push(trex_of(AUDIO_TRACK));
            trak.push(audio);
        }
        let moov = Moov {
            mvhd: Mvhd {
                timescale: TIMESCALE,
                rate: 1.into(),
                volume: 1.into(),
                next_track_id: AUDIO_TRACK + 1,
                ..Default::default()
            },
            mvex: Some(Mvex { mehd: None, trex }),
            trak,
            ..Default::default()
        };
        let ftyp = Ftyp {
            major_brand: FourCC::new(b"isom"),
            minor_version: 0x200,
            compatible_brands: [b"isom", b"iso6", b"mp41", b"cmfc"]
                .map(FourCC::new)
                .to_vec(),
        };
        let mut init = Vec::new();
        encode(&ftyp, &mut init)?;
        encode(&moov, &mut init)?;
        let muxer = Self {
            has_video: video_header.is_some(),
            has_audio: audio_header.is_some(),
            sequence: 0,
            video: TrackQueue::default(),
            audio: TrackQueue::default(),
        };
        Ok((muxer, init))
    }

    /// Adds a video payload stamped `dts` (ms): a frame becomes a sample,
    /// anything else (a sequence header, an end of sequence) is skipped.
    /// Returns whether it was a keyframe: the place to cut a fragment before.
    pub fn push_video(&mut self, dts: u64, payload: &Bytes) -> bool {
        if !self.has_video {
            return false;
        }
        let Some((tag, offset)) = video_frame(payload) else {
            return false;
        };
        self.video.push(Sample {
            dts,
            cts_offset: tag.composition_time,
            sync: tag.keyframe,
            data: payload.slice(offset..),
        });
        tag.keyframe
    }

    /// Adds an AAC payload stamped `dts` (ms): a raw frame becomes a sample.
    pub fn push_audio(&mut self, dts: u64, payload: &Bytes) {
        // SoundFormat 10 (AAC), AACPacketType 1 (raw): the frame after 2 bytes.
        if self.has_audio && payload.len() > 2 && payload[0] >> 4 == 10 && payload[1] == 1 {
            self.audio.push(Sample {
                dts,
                cts_offset: 0,
                sync: true,
                data: payload.slice(2..),
            });
        }
    }

    /// A fragment (`moof` + `mdat`) of the samples whose duration is known, or
    /// `None` when there are none. Called before a keyframe is pushed, the
    /// fragment ends with the frame before it, and the keyframe opens the next.
    pub fn fragment(&mut self) -> Result<Option<Vec<u8>>, Fmp4Error> {
        self.fragment_until(u64::MAX)
    }

    /// A fragment of the samples whose duration is known and whose decode time
    /// is before `bound` (ms), or `None` when there are none; later samples wait
    /// for the next. HLS parts end at a chosen time rather than at a keyframe.
    pub fn fragment_until(&mut self, bound: u64) -> Result<Option<Vec<u8>>, Fmp4Error> {
        let video = self.video.take_until(bound);
        let audio = self.audio.take_until(bound);
        if video.is_empty() && audio.is_empty() {
            return Ok(None);
        }
        self.sequence += 1;
        let runs: Vec<(u32, &[(Sample, u32)])> =
            [(VIDEO_TRACK, &video[..]), (AUDIO_TRACK, &audio[..])]
                .into_iter()
                .filter(|(_, samples)| !samples.is_empty())
                .collect();
        // Encoded once to learn the moof's size (the offsets do not change it),
        // then with each run's data offset from the moof's first byte.
        let mut moof = self.moof(&runs, &[0; 2]);
        let mut probe = Vec::new();
        encode(&moof, &mut probe)?;
        let mut offsets = [0i32; 2];
        let mut at = probe.len() + 8;
        for (i, (_, samples)) in runs.iter().enumerate() {
            offsets[i] =
                i32::try_from(at).map_err(|_| Fmp4Error::Encode("fragment too large".into()))?;
            at += samples.iter().map(|(s, _)| s.data.len()).sum::<usize>();
        }
        moof = self.moof(&runs, &offsets);
        let mut out = Vec::with_capacity(at);
        encode(&moof, &mut out)?;
        let mdat_len = u32::try_from(at - out.len())
            .map_err(|_| Fmp4Error::Encode("fragment too large".into()))?;
        out.extend_from_slice(&mdat_len.to_be_bytes());
        out.extend_from_slice(b"mdat");
        for (_, samples) in &runs {
            for (sample, _) in *samples {
                out.extend_from_slice(&sample.data);
            }
        }
        Ok(Some(out))
    }

    /// The last fragment: every sample, the last of each track given the
    /// duration of the one before it.
    pub fn finish(&mut self) -> Result<Option<Vec<u8>>, Fmp4Error> {
        self.video.flush_last();
        self.audio.flush_last();
        self.fragment()
    }

    fn moof(&self, runs: &[(u32, &[(Sample, u32)])], offsets: &[i32; 2]) -> Moof {
        let traf = runs
            .iter()
            .zip(offsets)
            .map(|((track, samples), offset)| Traf {
                tfhd: Tfhd {
                    track_id: *track,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: samples[0].0.dts,
                }),
                trun: vec![Trun {
                    data_offset: Some(*offset),
                    samples: TrunSamples::Explicit(
                        samples
                            .iter()
                            .map(|(sample, duration)| TrunEntry {
                                duration: Some(*duration),
                                size: Some(u32::try_from(sample.data.len()).unwrap_or(u32::MAX)),
                                flags: Some(if sample.sync { SYNC } else { NON_SYNC }),
                                cts: (*track == VIDEO_TRACK)
                                    .then_some(i64::from(sample.cts_offset)),
                            })
                            .collect(),
                    ),
                }],
                ..Default::default()
            })
            .collect();
        Moof {
            mfhd: Mfhd {
                sequence_number: self.sequence,
            },
            traf,
        }
    }
}

/// A video payload's frame: its classification and where the NAL units start
/// (after the legacy 5-byte header, or the enhanced one with or without its
/// composition time).
fn video_frame(payload: &[u8]) -> Option<(crate::flv::VideoTag, usize)> {
    let tag = parse_video(payload).ok()?;
    if tag.kind != VideoPacketKind::Frame || tag.multitrack {
        return None;
    }
    let first = *payload.first()?;
    let offset = if tag.enhanced {
        // PacketType 1 (CodedFrames) carries a composition time; 3 (CodedFramesX) not.
        if first & 0x0F == 1 { 8 } else { 5 }
    } else {
        5
    };
    (payload.len() > offset).then_some((tag, offset))
}

fn video_track(header: &[u8]) -> Result<Trak, Fmp4Error> {
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
        other => return Err(Fmp4Error::Codec(format!("{other:?}"))),
    };
    Ok(trak(VIDEO_TRACK, b"vide", codec, width, height))
}

fn audio_track(header: &[u8]) -> Result<Trak, Fmp4Error> {
    let (codec, asc) = crate::flv::audio_configuration(header)
        .ok()
        .flatten()
        .ok_or(Fmp4Error::Config("audio"))?;
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

fn trex_of(track_id: u32) -> Trex {
    Trex {
        track_id,
        default_sample_description_index: 1,
        ..Default::default()
    }
}

fn encode<A: Encode>(atom: &A, out: &mut Vec<u8>) -> Result<(), Fmp4Error> {
    atom.encode(out)
        .map_err(|e| Fmp4Error::Encode(e.to_string()))
}

#[cfg(test)]
mod tests;
