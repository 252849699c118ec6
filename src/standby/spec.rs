//! [`SlateSpec`]: everything a standby slate must match so that a platform sees one
//! uninterrupted stream: video codec, profile, level, chroma format, bit depth, size
//! and exact frame rate; audio codec (with AAC's object type), rate and channels;
//! and the title the generated card shows.
//!
//! Built from what the hub holds for a live stream: its cached sequence headers (the
//! authority on codec parameters and, through the SPS, the picture size) and its
//! onMetaData (the frame rate, and the size when the headers cannot give it).

use std::fmt;

use serde::Serialize;

use super::frame_rate::FrameRate;
use super::parse::{self, ConfigError, PictureConfig};
use crate::flv::{self, AudioCodec, FlvError, VideoCodec};
use crate::hub::MediaInfo;

/// The video codecs a slate can be rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlateVideoCodec {
    /// H.264 (libx264).
    H264,
    /// H.265 (libx265; enhanced RTMP).
    Hevc,
    /// AV1 (SVT-AV1, libaom or rav1e; enhanced RTMP).
    Av1,
}

impl SlateVideoCodec {
    /// `h264`, `hevc`, `av1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::H264 => "h264",
            Self::Hevc => "hevc",
            Self::Av1 => "av1",
        }
    }
}

/// The picture a slate must have.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct VideoSpec {
    /// The codec.
    pub codec: SlateVideoCodec,
    /// H.264 `profile_idc` (66, 77, 100, 110, 122, 244), HEVC `general_profile_idc`
    /// (1 Main, 2 Main 10), AV1 `seq_profile` (0 Main, 1 High, 2 Professional).
    pub profile: u8,
    /// H.264 `level_idc` (31 = 3.1), HEVC `general_level_idc` (123 = 4.1), AV1
    /// `seq_level_idx` (9 = 4.1).
    pub level: u8,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format: u8,
    /// Luma bit depth.
    pub bit_depth: u8,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The exact frame rate.
    pub frame_rate: FrameRate,
}

impl VideoSpec {
    /// The profile's usual name (`high`, `main10`...), for logs and ffmpeg options.
    pub fn profile_name(&self) -> &'static str {
        match (self.codec, self.profile) {
            (SlateVideoCodec::H264, 66) => "baseline",
            (SlateVideoCodec::H264, 77) => "main",
            (SlateVideoCodec::H264, 88) => "extended",
            (SlateVideoCodec::H264, 100) => "high",
            (SlateVideoCodec::H264, 110) => "high10",
            (SlateVideoCodec::H264, 122) => "high422",
            (SlateVideoCodec::H264, 244) => "high444",
            (SlateVideoCodec::Hevc, 1) => "main",
            (SlateVideoCodec::Hevc, 2) => "main10",
            (SlateVideoCodec::Hevc, 3) => "mainstillpicture",
            (SlateVideoCodec::Hevc, 4) => "rext",
            (SlateVideoCodec::Av1, 0) => "main",
            (SlateVideoCodec::Av1, 1) => "high",
            (SlateVideoCodec::Av1, 2) => "professional",
            _ => "other",
        }
    }

    fn from_config(
        codec: SlateVideoCodec,
        config: PictureConfig,
        media: &MediaInfo,
    ) -> Result<Self, SpecError> {
        let metadata = media.video.as_ref();
        let metadata_size = metadata.and_then(|v| Some((v.width?, v.height?)));
        let (width, height) = config
            .size
            .or(metadata_size)
            .ok_or(SpecError::NoSize(codec.as_str()))?;
        if !(MIN_SIDE..=MAX_SIDE).contains(&width) || !(MIN_SIDE..=MAX_SIDE).contains(&height) {
            return Err(SpecError::BadSize { width, height });
        }
        let frame_rate = metadata
            .and_then(|v| v.frame_rate)
            .or(config.fps)
            .and_then(FrameRate::snap)
            .ok_or(SpecError::NoFrameRate)?;
        Ok(Self {
            codec,
            profile: config.profile,
            level: config.level,
            chroma_format: config.chroma_format,
            bit_depth: config.bit_depth,
            width,
            height,
            frame_rate,
        })
    }
}

/// The smallest and largest picture side a slate is rendered at.
const MIN_SIDE: u32 = 16;
const MAX_SIDE: u32 = 8192;

/// The audio codecs a slate can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlateAudioCodec {
    /// AAC with its audio object type (2 LC, 5 HE-AAC, 29 HE-AAC v2).
    Aac {
        /// The object type.
        object_type: u8,
    },
    /// MP3 (legacy FLV).
    Mp3,
    /// Opus (enhanced RTMP).
    Opus,
}

impl SlateAudioCodec {
    /// `aac`, `aac he`, `mp3`, `opus`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aac { object_type: 2 } => "aac",
            Self::Aac { object_type: 5 } => "aac he",
            Self::Aac { object_type: 29 } => "aac hev2",
            Self::Aac { .. } => "aac other",
            Self::Mp3 => "mp3",
            Self::Opus => "opus",
        }
    }
}

/// The sound a slate must have.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct AudioSpec {
    /// The codec.
    pub codec: SlateAudioCodec,
    /// Samples per second (the output rate, for HE-AAC the SBR rate).
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u8,
}

/// Everything a slate must match. The key of the slate cache, with the source file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SlateSpec {
    /// The picture.
    pub video: VideoSpec,
    /// The sound; `None` for a stream without audio (its slate has none either).
    pub audio: Option<AudioSpec>,
    /// What the generated card shows under "Stream will resume shortly": a public
    /// name, never a stream key. Part of the key because it is drawn into the picture.
    pub title: String,
}

/// Why no slate can be made for a stream; the message ends up in its status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// No video sequence header has arrived.
    #[error("no video sequence header yet: the slate cannot match an unknown codec")]
    NoVideoHeader,
    /// The video codec is not one a slate is rendered in.
    #[error("no standby slate for {0} video (only h264, hevc and av1)")]
    UnsupportedVideo(&'static str),
    /// The video sequence header is malformed.
    #[error("the video sequence header cannot be read: {0}")]
    BadVideoHeader(String),
    /// Neither the SPS nor the metadata give the picture size.
    #[error(
        "the picture size is unknown: the {0} sequence header does not give it and the metadata has no width and height"
    )]
    NoSize(&'static str),
    /// The picture size is outside what a slate is rendered at.
    #[error("picture size {width}x{height} is outside 16..=8192 per side")]
    BadSize {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// No usable frame rate.
    #[error(
        "the frame rate is unknown: the metadata has no framerate (1 to 240 fps) and the SPS no timing"
    )]
    NoFrameRate,
    /// The stream has audio whose configuration has not arrived.
    #[error("no audio sequence header yet for the stream's {0} audio")]
    NoAudioHeader(String),
    /// The audio codec is not one a slate carries.
    #[error("no standby slate for {0} audio (only aac, mp3 and opus)")]
    UnsupportedAudio(&'static str),
    /// The audio configuration is malformed or incomplete.
    #[error("the audio sequence header cannot be read: {0}")]
    BadAudioHeader(String),
}

impl From<ConfigError> for SpecError {
    fn from(err: ConfigError) -> Self {
        Self::BadVideoHeader(err.0)
    }
}

fn flv_video(err: FlvError) -> SpecError {
    SpecError::BadVideoHeader(err.to_string())
}

/// The longest title drawn; a longer one is cut.
const MAX_TITLE_CHARS: usize = 80;

/// The title as drawn: control characters removed, at most [`MAX_TITLE_CHARS`].
fn clean_title(title: &str) -> String {
    title
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TITLE_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

impl SlateSpec {
    /// The spec for a live stream, from its cached video and audio sequence headers
    /// (FLV tag bodies, legacy or enhanced RTMP), its metadata and a public title.
    ///
    /// # Errors
    /// A [`SpecError`] naming what is missing or unreadable.
    pub fn from_stream(
        video_header: Option<&[u8]>,
        audio_header: Option<&[u8]>,
        media: &MediaInfo,
        title: &str,
    ) -> Result<Self, SpecError> {
        let header = video_header.ok_or(SpecError::NoVideoHeader)?;
        let Some((codec, record)) = flv::video_configuration(header).map_err(flv_video)? else {
            // Not a sequence header: a codec that has none, or not a header at all.
            let codec = flv::parse_video(header).map_err(flv_video)?.codec;
            return Err(match codec {
                VideoCodec::Avc | VideoCodec::Hevc | VideoCodec::Av1 => SpecError::NoVideoHeader,
                other => SpecError::UnsupportedVideo(other.as_str()),
            });
        };
        let video = video_spec(codec, record, media)?;
        Ok(Self {
            video,
            audio: audio_spec(audio_header, media)?,
            title: clean_title(title),
        })
    }

    /// The spec for players that connect before a stream is live (nothing known
    /// yet): 1280x720 at 30 fps, H.264 High 3.1, AAC-LC 48 kHz stereo.
    pub fn title_card(title: &str) -> Self {
        Self {
            video: VideoSpec {
                codec: SlateVideoCodec::H264,
                profile: 100,
                level: 31,
                chroma_format: 1,
                bit_depth: 8,
                width: 1280,
                height: 720,
                frame_rate: FrameRate::THIRTY,
            },
            audio: Some(AudioSpec {
                codec: SlateAudioCodec::Aac { object_type: 2 },
                sample_rate: 48_000,
                channels: 2,
            }),
            title: clean_title(title),
        }
    }
}

/// The video part of a spec from a sequence header's configuration record.
pub fn video_spec(
    codec: VideoCodec,
    record: &[u8],
    media: &MediaInfo,
) -> Result<VideoSpec, SpecError> {
    let (codec, config) = match codec {
        VideoCodec::Avc => (SlateVideoCodec::H264, parse::avc(record)?),
        VideoCodec::Hevc => (SlateVideoCodec::Hevc, parse::hevc(record)?),
        VideoCodec::Av1 => (SlateVideoCodec::Av1, parse::av1(record)?),
        other => return Err(SpecError::UnsupportedVideo(other.as_str())),
    };
    VideoSpec::from_config(codec, config, media)
}

/// The audio part of a spec: from the sequence header (AAC, Opus), from a legacy MP3
/// header or the metadata (MP3 has no sequence header), `None` for a stream without
/// audio.
pub fn audio_spec(
    header: Option<&[u8]>,
    media: &MediaInfo,
) -> Result<Option<AudioSpec>, SpecError> {
    let bad = |e: FlvError| SpecError::BadAudioHeader(e.to_string());
    let known = media.audio.as_ref();
    let Some(header) = header else {
        return match known.and_then(|a| a.codec.as_deref()) {
            None => Ok(None),
            Some("mp3") => {
                let audio = known.expect("codec is known");
                match (audio.sample_rate, audio.channels) {
                    (Some(sample_rate), Some(channels)) => Ok(Some(AudioSpec {
                        codec: SlateAudioCodec::Mp3,
                        sample_rate,
                        channels,
                    })),
                    _ => Err(SpecError::BadAudioHeader(
                        "mp3 audio without a known rate and channel count".into(),
                    )),
                }
            }
            Some(other) => Err(SpecError::NoAudioHeader(other.to_owned())),
        };
    };
    match flv::audio_configuration(header).map_err(bad)? {
        Some((AudioCodec::Aac, asc)) => {
            let object_type = parse::aac_object_type(asc);
            let config = flv::aac_config(asc);
            match (object_type, config) {
                (Some(object_type), Some((sample_rate, channels))) => Ok(Some(AudioSpec {
                    codec: SlateAudioCodec::Aac { object_type },
                    sample_rate,
                    channels,
                })),
                _ => Err(SpecError::BadAudioHeader(
                    "AudioSpecificConfig without a usable rate and channel configuration".into(),
                )),
            }
        }
        Some((AudioCodec::Opus, head)) => {
            let channels = parse::opus_channels(head)
                .ok_or_else(|| SpecError::BadAudioHeader("invalid OpusHead".into()))?;
            // Opus always decodes at 48 kHz; OpusHead's input rate is informative.
            Ok(Some(AudioSpec {
                codec: SlateAudioCodec::Opus,
                sample_rate: 48_000,
                channels,
            }))
        }
        Some((other, _)) => Err(SpecError::UnsupportedAudio(other.as_str())),
        None => {
            // Not a sequence header: a codec without one (legacy MP3) names its rate
            // and channels in the tag's flags.
            let tag = flv::parse_audio(header).map_err(bad)?;
            match (tag.codec, tag.sample_rate, tag.channels) {
                (AudioCodec::Mp3, Some(sample_rate), Some(channels)) => Ok(Some(AudioSpec {
                    codec: SlateAudioCodec::Mp3,
                    sample_rate,
                    channels,
                })),
                (codec, _, _) => Err(SpecError::UnsupportedAudio(codec.as_str())),
            }
        }
    }
}

impl fmt::Display for SlateSpec {
    /// `h264 high 1920x1080@60 aac 48000Hz 2ch`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.video;
        write!(
            f,
            "{} {} {}x{}@{}",
            v.codec.as_str(),
            v.profile_name(),
            v.width,
            v.height,
            v.frame_rate
        )?;
        match &self.audio {
            Some(a) => write!(
                f,
                " {} {}Hz {}ch",
                a.codec.name(),
                a.sample_rate,
                a.channels
            ),
            None => f.write_str(" no audio"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{AudioInfo, VideoInfo};

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Captured from Debian's ffmpeg 5.1: libx264 main 3.1, 1366x768 (cropped from
    /// 1376x768), and AAC-LC 44.1 kHz mono.
    const AVC_MAIN_1366: &str = "1700000000014d401fffe10018674d401feca02b030f37808800001f480007530078c18cb001000568ebe3cb20";
    const AAC_LC_44K_MONO: &str = "af001208";
    /// Captured from FFmpeg 9 (enhanced RTMP, FourCC hvc1): libx265 main10 level 4,
    /// 1366x768 (conformance window from 1368); the x265 SEI array left out.
    const HEVC_MAIN10_1366: &str = "906876633101022000000090000000000078f000fcfdfafa00000f03200001001840010c01ffff022000000300900000030000030078959809210001002b420101022000000300900000030000030078a002ac80301d6d96566924caf0168080000003008000000f0422000100074401c172b46240";
    /// Captured from FFmpeg 9: SVT-AV1 main, seq_level_idx 5, 1366x768, and Opus stereo.
    const AV1_1366: &str = "906176303181050c000a0c0200002d6a6aadfe017c0020";
    const OPUS_STEREO: &str = "904f7075734f707573486561640102380180bb0000000000";

    fn media(width: Option<u32>, height: Option<u32>, fps: Option<f64>) -> MediaInfo {
        let mut media = MediaInfo::default();
        media.video = Some(VideoInfo {
            width,
            height,
            frame_rate: fps,
            ..VideoInfo::default()
        });
        media
    }

    #[test]
    fn h264_from_the_sps_and_aac_from_its_config() {
        // The metadata's size is wrong on purpose: the SPS wins.
        let media = media(Some(1280), Some(720), Some(29.97));
        let spec = SlateSpec::from_stream(
            Some(&hex(AVC_MAIN_1366)),
            Some(&hex(AAC_LC_44K_MONO)),
            &media,
            "Sunday\nservice\u{7}",
        )
        .unwrap();
        assert_eq!(
            spec.video,
            VideoSpec {
                codec: SlateVideoCodec::H264,
                profile: 77,
                level: 31,
                chroma_format: 1,
                bit_depth: 8,
                width: 1366,
                height: 768,
                frame_rate: FrameRate {
                    num: 30000,
                    den: 1001
                },
            }
        );
        assert_eq!(
            spec.audio,
            Some(AudioSpec {
                codec: SlateAudioCodec::Aac { object_type: 2 },
                sample_rate: 44_100,
                channels: 1
            })
        );
        assert_eq!(spec.title, "Sundayservice");
        assert_eq!(spec.to_string(), "h264 main 1366x768@29.97 aac 44100Hz 1ch");
    }

    #[test]
    fn hevc_and_av1_from_enhanced_rtmp_headers() {
        let media = media(None, None, Some(60.0));
        let hevc = SlateSpec::from_stream(Some(&hex(HEVC_MAIN10_1366)), None, &media, "").unwrap();
        assert_eq!(
            (
                hevc.video.codec,
                hevc.video.profile,
                hevc.video.level,
                hevc.video.bit_depth
            ),
            (SlateVideoCodec::Hevc, 2, 120, 10)
        );
        assert_eq!((hevc.video.width, hevc.video.height), (1366, 768));
        assert_eq!(hevc.audio, None);
        assert_eq!(hevc.to_string(), "hevc main10 1366x768@60 no audio");
        let av1 = SlateSpec::from_stream(Some(&hex(AV1_1366)), Some(&hex(OPUS_STEREO)), &media, "")
            .unwrap();
        assert_eq!(
            (av1.video.codec, av1.video.profile, av1.video.level),
            (SlateVideoCodec::Av1, 0, 5)
        );
        assert_eq!((av1.video.width, av1.video.height), (1366, 768));
        assert_eq!(av1.to_string(), "av1 main 1366x768@60 opus 48000Hz 2ch");
    }

    #[test]
    fn he_aac_mp3_and_the_title_card() {
        let media = MediaInfo::default();
        // HE-AAC: core 24 kHz stereo, SBR to 48 kHz.
        let he = audio_spec(Some(&hex("af002b118800")), &media)
            .unwrap()
            .unwrap();
        assert_eq!(
            he,
            AudioSpec {
                codec: SlateAudioCodec::Aac { object_type: 5 },
                sample_rate: 48_000,
                channels: 2
            }
        );
        // Legacy MP3 has no sequence header: a frame's flags say 44.1 kHz stereo.
        let mp3 = audio_spec(Some(&[0x2F, 0xFF, 0xFB]), &media)
            .unwrap()
            .unwrap();
        assert_eq!(
            (mp3.codec, mp3.sample_rate, mp3.channels),
            (SlateAudioCodec::Mp3, 44_100, 2)
        );
        let card = SlateSpec::title_card("Live");
        assert_eq!(card.to_string(), "h264 high 1280x720@30 aac 48000Hz 2ch");
        assert_eq!(card.video.level, 31);
    }

    #[test]
    fn what_is_missing_is_named() {
        let with_rate = media(None, None, Some(30.0));
        let no_rate = media(Some(1920), Some(1080), None);
        let avc = hex(AVC_MAIN_1366);
        assert_eq!(
            SlateSpec::from_stream(None, None, &with_rate, ""),
            Err(SpecError::NoVideoHeader)
        );
        // Without a framerate in the metadata, the SPS's VUI timing gives it...
        let timed = SlateSpec::from_stream(Some(&avc), None, &no_rate, "").unwrap();
        assert_eq!(
            timed.video.frame_rate,
            FrameRate {
                num: 30000,
                den: 1001
            }
        );
        // ...and without either there is none.
        let bare_av1 = &hex(AV1_1366)[..9];
        let err = SlateSpec::from_stream(Some(bare_av1), None, &no_rate, "").unwrap_err();
        assert_eq!(err, SpecError::NoFrameRate);
        assert!(err.to_string().contains("frame rate is unknown"));
        // A frame instead of a header, and a codec no slate is made in.
        assert_eq!(
            SlateSpec::from_stream(Some(&[0x17, 1, 0, 0, 0, 9]), None, &with_rate, ""),
            Err(SpecError::NoVideoHeader)
        );
        assert_eq!(
            SlateSpec::from_stream(Some(&[0x14, 0, 0]), None, &with_rate, ""),
            Err(SpecError::UnsupportedVideo("vp6"))
        );
        // AV1 with its sequence header OBU cut off: the size comes from the metadata
        // or nowhere.
        assert_eq!(
            SlateSpec::from_stream(Some(bare_av1), None, &with_rate, ""),
            Err(SpecError::NoSize("av1"))
        );
        let sized = media(Some(640), Some(360), Some(30.0));
        let spec = SlateSpec::from_stream(Some(bare_av1), None, &sized, "").unwrap();
        assert_eq!((spec.video.width, spec.video.height), (640, 360));
        // Audio announced by the metadata without its header.
        let mut aac_pending = with_rate.clone();
        aac_pending.audio = Some(AudioInfo {
            codec: Some("aac".into()),
            ..AudioInfo::default()
        });
        assert_eq!(
            SlateSpec::from_stream(Some(&avc), None, &aac_pending, ""),
            Err(SpecError::NoAudioHeader("aac".into()))
        );
        // Truncated records are errors, not panics.
        for cut in 6..avc.len() {
            let _ = SlateSpec::from_stream(Some(&avc[..cut]), None, &with_rate, "");
        }
        let hevc = hex(HEVC_MAIN10_1366);
        for cut in 1..hevc.len() {
            let _ = SlateSpec::from_stream(Some(&hevc[..cut]), None, &with_rate, "");
        }
    }

    proptest::proptest! {
        /// Hostile sequence headers (a publisher's bytes) are errors, never panics.
        #[test]
        fn arbitrary_configuration_records_never_panic(
            layout in 0usize..4,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            let prefix: &[u8] = match layout {
                0 => &[0x17, 0x00, 0, 0, 0],
                1 => b"\x90hvc1",
                2 => b"\x90av01",
                _ => &[0xAF, 0x00],
            };
            let header = [prefix, &body].concat();
            let media = media(Some(640), Some(360), Some(30.0));
            let _ = SlateSpec::from_stream(Some(&header), Some(&header), &media, "");
            let _ = audio_spec(Some(&header), &media);
        }

        /// Mutations of real records (closer to valid, so deeper into the parsers).
        #[test]
        fn mutated_real_records_never_panic(
            which in 0usize..3,
            at in 0usize..4000,
            value in proptest::prelude::any::<u8>(),
            cut in 0usize..4000,
        ) {
            let mut header = hex([AVC_MAIN_1366, HEVC_MAIN10_1366, AV1_1366][which]);
            let at = at % header.len();
            header[at] = value;
            header.truncate(cut.max(1));
            let media = media(None, None, Some(30.0));
            let _ = SlateSpec::from_stream(Some(&header), None, &media, "");
        }
    }
}
