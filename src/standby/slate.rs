//! [`Slate`]: one rendered loop, ready to play, and how it is cut from ffmpeg's FLV
//! output and proven to match its spec before anyone gets it.
//!
//! A loop restarts at its first keyframe, so it is two whole keyframe intervals of
//! video (no B-frames: every frame's decode time is its presentation time) and the
//! audio frames that *end* within it: a frame that would cross the loop's end is left
//! out, so when loop k+1 starts at k+1 x `loop_ms` no audio goes backwards (the
//! price is a silent gap shorter than one audio frame per loop, in silence).

use bytes::BytesMut;

use super::command::LoopShape;
use super::error::RenderError;
use super::spec::{self, SlateAudioCodec, SlateSpec, SlateVideoCodec};
use crate::flv::{self, FlvReader, TagType};
use crate::hub::{MediaInfo, Packet, PacketKind, VideoInfo};

/// A rendered standby slate: decoder configuration and one loop of media.
#[derive(Debug, Clone)]
pub struct Slate {
    /// What it matches.
    pub spec: SlateSpec,
    /// Decoder configuration: the video sequence header, then the audio one (if
    /// any), ts 0.
    pub headers: Vec<Packet>,
    /// One loop of media, first packet a video keyframe at ts 0, timestamps in ms
    /// relative to it, every timestamp < loop_ms, per-track non-decreasing.
    pub media: Vec<Packet>,
    /// Length of one loop: video frame count x frame interval, so loop k starts at
    /// k*loop_ms.
    pub loop_ms: u32,
    /// Payload bytes held (for a memory bound and status).
    pub bytes: usize,
    /// What differs from the ideal and why (the card without text because this
    /// ffmpeg has no drawtext, HE-AAC rendered as AAC-LC...), for the log and status.
    pub notes: Vec<String>,
}

/// The samples of one audio frame of a codec, as ffmpeg's encoders make them.
fn audio_frame_ms(codec: SlateAudioCodec, sample_rate: u32, he_aac_kept: bool) -> f64 {
    let samples = match codec {
        SlateAudioCodec::Aac { .. } if he_aac_kept => 2048.0,
        SlateAudioCodec::Aac { .. } => 1024.0,
        SlateAudioCodec::Mp3 if sample_rate >= 32_000 => 1152.0,
        SlateAudioCodec::Mp3 => 576.0,
        // libopus' default frame: 20 ms.
        SlateAudioCodec::Opus => return 20.0,
    };
    samples * 1000.0 / f64::from(sample_rate.max(1))
}

impl Slate {
    /// Cuts one loop out of ffmpeg's FLV output and checks it against `spec`.
    ///
    /// # Errors
    /// [`RenderError::Output`] for output that is not FLV or too short,
    /// [`RenderError::Mismatch`] when the rendered stream is not what `spec` asks.
    pub fn from_flv(
        spec: &SlateSpec,
        mut flv: BytesMut,
        he_aac_kept: bool,
        notes: Vec<String>,
    ) -> Result<Self, RenderError> {
        let shape = LoopShape::of(&spec.video);
        let mut reader = FlvReader::new();
        reader
            .read_header(&mut flv)?
            .ok_or_else(|| RenderError::Output("no FLV header".into()))?;
        let mut video_header = None;
        let mut audio_header = None;
        let mut tags = Vec::new();
        while let Some(tag) = reader.read_tag(&mut flv)? {
            match tag.tag_type {
                // The live stream's metadata stays; the file's is not the stream's.
                TagType::Script => {}
                TagType::Video if flv::is_video_sequence_header(&tag.data) => {
                    video_header.get_or_insert(tag.data);
                }
                TagType::Audio if flv::is_audio_sequence_header(&tag.data) => {
                    audio_header.get_or_insert(tag.data);
                }
                kind => tags.push((kind, tag.timestamp, tag.data)),
            }
        }
        let video_header =
            video_header.ok_or_else(|| RenderError::Mismatch("no video sequence header".into()))?;
        // The first keyframe is the loop's zero (ffmpeg shifts everything by the
        // audio encoder's priming delay).
        let start = tags
            .iter()
            .find(|(kind, _, data)| *kind == TagType::Video && flv::is_video_keyframe(data))
            .map(|(_, ts, _)| *ts)
            .ok_or_else(|| RenderError::Mismatch("no video keyframe".into()))?;
        let frame_ms = spec
            .audio
            .as_ref()
            .map(|a| audio_frame_ms(a.codec, a.sample_rate, he_aac_kept));
        let mut media = Vec::new();
        let mut video_frames = 0u32;
        let mut first_audio = None;
        for (kind, ts, data) in tags {
            let Some(at) = ts.checked_sub(start) else {
                continue;
            };
            match kind {
                TagType::Video if video_frames < shape.frames => {
                    if media.is_empty() && !flv::is_video_keyframe(&data) {
                        continue;
                    }
                    video_frames += 1;
                    media.push(Packet {
                        kind: PacketKind::Video,
                        timestamp: at,
                        keyframe: flv::is_video_keyframe(&data),
                        payload: data,
                        sequence_header: false,
                    });
                }
                TagType::Audio if !media.is_empty() => {
                    let Some(frame_ms) = frame_ms else { continue };
                    if f64::from(at) + frame_ms > f64::from(shape.loop_ms) + 0.5 {
                        continue;
                    }
                    first_audio.get_or_insert_with(|| data.clone());
                    media.push(Packet {
                        kind: PacketKind::Audio,
                        timestamp: at,
                        keyframe: false,
                        payload: data,
                        sequence_header: false,
                    });
                }
                _ => {}
            }
        }
        if video_frames != shape.frames {
            return Err(RenderError::Output(format!(
                "{video_frames} video frames rendered, the loop needs {}",
                shape.frames
            )));
        }
        let mut headers = vec![Packet {
            kind: PacketKind::Video,
            timestamp: 0,
            payload: video_header,
            keyframe: false,
            sequence_header: true,
        }];
        if spec.audio.is_some() {
            // MP3 has no sequence header: its first frame's flags say what it is.
            let check = audio_header.clone().or(first_audio).ok_or_else(|| {
                RenderError::Mismatch("the slate has no audio but the stream has".into())
            })?;
            verify_audio(spec, &check, he_aac_kept)?;
            if let Some(header) = audio_header {
                headers.push(Packet {
                    kind: PacketKind::Audio,
                    timestamp: 0,
                    payload: header,
                    keyframe: false,
                    sequence_header: true,
                });
            }
        }
        verify_video(spec, &headers[0].payload)?;
        let slate = Self {
            spec: spec.clone(),
            bytes: headers.iter().chain(&media).map(Packet::len).sum(),
            headers,
            media,
            loop_ms: shape.loop_ms,
            notes,
        };
        slate.verify_loop(shape)?;
        Ok(slate)
    }

    /// The loop's shape: a keyframe first and exactly every `gop` frames, every
    /// timestamp within the loop and non-decreasing per track.
    fn verify_loop(&self, shape: LoopShape) -> Result<(), RenderError> {
        let mismatch = |what: String| Err(RenderError::Mismatch(what));
        let mut last = [0u32; 2];
        let mut frame = 0u32;
        for packet in &self.media {
            if packet.timestamp >= self.loop_ms {
                return mismatch(format!(
                    "a packet at {} ms is past the {} ms loop",
                    packet.timestamp, self.loop_ms
                ));
            }
            let lane = usize::from(packet.kind == PacketKind::Audio);
            if packet.timestamp < last[lane] {
                return mismatch("timestamps go backwards".into());
            }
            last[lane] = packet.timestamp;
            if packet.kind == PacketKind::Video {
                if packet.keyframe != frame.is_multiple_of(shape.gop) {
                    return mismatch(format!(
                        "video frame {frame} is {}a keyframe; keyframes must be every {} frames",
                        if packet.keyframe { "" } else { "not " },
                        shape.gop
                    ));
                }
                frame += 1;
            }
        }
        Ok(())
    }
}

/// Parses the rendered video sequence header back: codec, profile, chroma format,
/// bit depth and size (and level, for H.264 and HEVC, whose encoders write the level
/// asked for) must be the spec's.
fn verify_video(spec: &SlateSpec, header: &[u8]) -> Result<(), RenderError> {
    let (codec, record) = flv::video_configuration(header)?
        .ok_or_else(|| RenderError::Mismatch("unreadable video sequence header".into()))?;
    // Only the picture is compared: the rate is what ffmpeg was told.
    let mut media = MediaInfo::default();
    media.video = Some(VideoInfo {
        frame_rate: Some(spec.video.frame_rate.fps()),
        ..VideoInfo::default()
    });
    let got = spec::video_spec(codec, record, &media)
        .map_err(|e| RenderError::Mismatch(format!("rendered video: {e}")))?;
    let want = &spec.video;
    let level_matters = want.codec != SlateVideoCodec::Av1;
    let same = got.codec == want.codec
        && got.profile == want.profile
        && got.chroma_format == want.chroma_format
        && got.bit_depth == want.bit_depth
        && (got.width, got.height) == (want.width, want.height)
        && (!level_matters || got.level == want.level);
    if !same {
        return Err(RenderError::Mismatch(format!(
            "asked {} {} level {} {}x{} chroma {} {} bit, rendered {} {} level {} {}x{} chroma {} {} bit",
            want.codec.as_str(),
            want.profile_name(),
            want.level,
            want.width,
            want.height,
            want.chroma_format,
            want.bit_depth,
            got.codec.as_str(),
            got.profile_name(),
            got.level,
            got.width,
            got.height,
            got.chroma_format,
            got.bit_depth,
        )));
    }
    Ok(())
}

/// Parses the rendered audio configuration back: codec, rate and channels must be
/// the spec's (and AAC's object type, unless HE-AAC was rendered as LC).
fn verify_audio(spec: &SlateSpec, header: &[u8], he_aac_kept: bool) -> Result<(), RenderError> {
    let Some(want) = &spec.audio else {
        return Ok(());
    };
    let got = spec::audio_spec(Some(header), &MediaInfo::default())
        .map_err(|e| RenderError::Mismatch(format!("rendered audio: {e}")))?
        .ok_or_else(|| RenderError::Mismatch("rendered audio unreadable".into()))?;
    let same_codec = match (got.codec, want.codec) {
        (SlateAudioCodec::Aac { object_type: got }, SlateAudioCodec::Aac { object_type: want }) => {
            got == want || (!he_aac_kept && got == 2)
        }
        (got, want) => got == want,
    };
    if !same_codec || got.sample_rate != want.sample_rate || got.channels != want.channels {
        return Err(RenderError::Mismatch(format!(
            "asked {} {} Hz {} ch, rendered {} {} Hz {} ch",
            want.codec.name(),
            want.sample_rate,
            want.channels,
            got.codec.name(),
            got.sample_rate,
            got.channels
        )));
    }
    Ok(())
}
