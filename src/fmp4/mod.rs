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
use mp4_atom::{
    Encode, FourCC, Ftyp, Mfhd, Moof, Moov, Mvex, Mvhd, Tfdt, Tfhd, Traf, Trun, TrunEntry,
    TrunSamples,
};

use crate::flv::{AudioPacketKind, VideoCodec, VideoPacketKind, parse_audio, parse_video};
use entries::{audio_track, trex_of, video_track};

mod entries;

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
    #[error("fragmented MP4 carries H.264, HEVC, AV1, AAC and Opus; this stream has {0}")]
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

    /// Adds an audio payload stamped `dts` (ms): a frame (raw AAC, or an
    /// enhanced-RTMP coded frame: Opus) becomes a sample.
    pub fn push_audio(&mut self, dts: u64, payload: &Bytes) {
        if !self.has_audio {
            return;
        }
        if let Some(offset) = audio_frame(payload) {
            self.audio.push(Sample {
                dts,
                cts_offset: 0,
                sync: true,
                data: payload.slice(offset..),
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
        // PacketType 1 (CodedFrames) of AVC and HEVC carries a composition time;
        // 3 (CodedFramesX), and AV1's frames, do not.
        let timed = first & 0x0F == 1 && matches!(tag.codec, VideoCodec::Avc | VideoCodec::Hevc);
        if timed { 8 } else { 5 }
    } else {
        5
    };
    (payload.len() > offset).then_some((tag, offset))
}

/// Where an audio payload's frame starts: after AAC's 2-byte header, or after
/// the enhanced header and FourCC (5 bytes; a multitrack or ModEx packet is not
/// a plain frame and is skipped).
fn audio_frame(payload: &[u8]) -> Option<usize> {
    let tag = parse_audio(payload).ok()?;
    if tag.kind != AudioPacketKind::Frame || tag.multitrack {
        return None;
    }
    let offset = match (tag.enhanced, tag.codec) {
        (true, _) if payload[0] & 0x0F == 1 => 5,
        (false, crate::flv::AudioCodec::Aac) => 2,
        _ => return None,
    };
    (payload.len() > offset).then_some(offset)
}

fn encode<A: Encode>(atom: &A, out: &mut Vec<u8>) -> Result<(), Fmp4Error> {
    atom.encode(out)
        .map_err(|e| Fmp4Error::Encode(e.to_string()))
}

#[cfg(test)]
mod tests;
