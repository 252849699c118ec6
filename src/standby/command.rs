//! The ffmpeg command line that renders one slate: the source (a generated card, an
//! operator's image or video), the exact picture and sound of the spec, keyframes
//! every two seconds without B-frames, FLV on stdout.
//!
//! Pure: building arguments touches nothing, so each codec's options are a unit test.

use std::ffi::OsString;
use std::path::Path;

use super::encoders::Capabilities;
use super::error::RenderError;
use super::spec::{AudioSpec, SlateAudioCodec, SlateSpec, SlateVideoCodec, VideoSpec};

/// Seconds between keyframes, and keyframe intervals per loop.
pub const KEYFRAME_SECS: u32 = 2;
const GOPS_PER_LOOP: u32 = 2;

/// Extra output past the loop, so every audio frame that ends within it is there.
const TAIL_MS: u32 = 500;

/// The card's background (a dark slate blue) and text colours.
const BACKGROUND: &str = "0x141a24";
const HEADLINE: &str = "Stream will resume shortly";

/// Fonts tried in order; without any, fontconfig's `Sans`.
const FONT_FILES: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// The length of one loop in frames and ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopShape {
    /// Frames between keyframes (2 s worth, rounded).
    pub gop: u32,
    /// Frames in the loop.
    pub frames: u32,
    /// The loop's length: `frames` frame intervals, rounded to the ms.
    pub loop_ms: u32,
}

impl LoopShape {
    /// The loop of a picture spec: two keyframe intervals of two seconds.
    pub fn of(video: &VideoSpec) -> Self {
        let gop = video.frame_rate.frames_in(KEYFRAME_SECS);
        let frames = gop * GOPS_PER_LOOP;
        Self {
            gop,
            frames,
            loop_ms: video.frame_rate.frames_ms(frames),
        }
    }
}

/// Where the picture comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The generated card, with its text files when drawtext can be used.
    Card(Option<CardText<'a>>),
    /// An operator's still image.
    Image(&'a Path),
    /// An operator's video; `file_audio` uses its first audio stream.
    Video {
        /// The file.
        path: &'a Path,
        /// Whether to take the file's sound (else silence).
        file_audio: bool,
    },
}

/// The files holding the card's two lines (drawtext's `textfile`, so a title needs
/// no escaping).
#[derive(Debug, Clone, Copy)]
pub struct CardText<'a> {
    /// "Stream will resume shortly".
    pub headline: &'a Path,
    /// The stream's title; `None` when empty.
    pub title: Option<&'a Path>,
}

/// The headline line, written into [`CardText::headline`].
pub fn headline() -> &'static str {
    HEADLINE
}

/// Whether a path is an image by its extension (else a video).
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .is_some_and(|e| {
            matches!(
                e.as_str(),
                "png" | "jpg" | "jpeg" | "bmp" | "webp" | "tif" | "tiff"
            )
        })
}

/// A path inside a filtergraph, quoted; `None` for a path that cannot be quoted
/// there (it holds a quote, a backslash or is not UTF-8).
pub fn filter_path(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    (!text.contains(['\'', '\\', '\n'])).then(|| format!("'{text}'"))
}

fn pix_fmt(video: &VideoSpec) -> Result<&'static str, RenderError> {
    Ok(match (video.chroma_format, video.bit_depth) {
        (1, 8) => "yuv420p",
        (1, 10) => "yuv420p10le",
        (1, 12) => "yuv420p12le",
        (2, 8) => "yuv422p",
        (2, 10) => "yuv422p10le",
        (3, 8) => "yuv444p",
        (3, 10) => "yuv444p10le",
        (0, 8) => "gray",
        (0, 10) => "gray10le",
        (chroma, depth) => {
            return Err(RenderError::Unsupported(format!(
                "chroma format {chroma} at {depth} bits"
            )));
        }
    })
}

fn channel_layout(channels: u8) -> &'static str {
    match channels {
        1 => "mono",
        3 => "2.1",
        4 => "quad",
        5 => "5.0",
        6 => "5.1",
        7 => "6.1",
        8 => "7.1",
        _ => "stereo",
    }
}

/// H.264's `level_idc` as x264 spells it (31 -> "3.1", 9 -> "1b").
fn h264_level(level_idc: u8) -> String {
    match level_idc {
        9 => "1b".into(),
        idc => format!("{}.{}", idc / 10, idc % 10),
    }
}

/// HEVC's `general_level_idc` (30 x level) as x265 spells it (123 -> "4.1").
fn hevc_level(level_idc: u8) -> String {
    format!("{}.{}", level_idc / 30, (level_idc % 30) / 3)
}

fn push(args: &mut Vec<OsString>, items: &[&str]) {
    args.extend(items.iter().map(OsString::from));
}

/// The arguments after the ffmpeg binary.
pub fn ffmpeg_args(
    spec: &SlateSpec,
    caps: &Capabilities,
    source: Source<'_>,
) -> Result<Vec<OsString>, RenderError> {
    let video = &spec.video;
    let shape = LoopShape::of(video);
    let rate = format!("{}/{}", video.frame_rate.num, video.frame_rate.den);
    let (w, h) = (video.width, video.height);
    let mut args: Vec<OsString> = Vec::new();
    push(
        &mut args,
        &["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"],
    );
    // Input 0: the picture.
    let fit = format!(
        "scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,fps={rate}"
    );
    let mut file_audio = false;
    let mut filter = match source {
        Source::Card(text) => {
            push(&mut args, &["-f", "lavfi", "-i"]);
            args.push(format!("color=c={BACKGROUND}:s={w}x{h}:r={rate}").into());
            let mut filter = "setsar=1".to_owned();
            if let Some(text) = text {
                filter.push_str(&card_text(&text, h)?);
            }
            filter
        }
        Source::Image(path) => {
            push(&mut args, &["-loop", "1", "-framerate", &rate, "-i"]);
            args.push(path.into());
            fit
        }
        Source::Video {
            path,
            file_audio: with_audio,
        } => {
            push(&mut args, &["-stream_loop", "-1", "-i"]);
            args.push(path.into());
            file_audio = with_audio;
            fit
        }
    };
    filter.push_str(&format!(",format={}", pix_fmt(video)?));
    // Input 1: silence, unless the file's sound is used.
    let audio = spec.audio.as_ref();
    if let Some(audio) = audio.filter(|_| !file_audio) {
        push(&mut args, &["-f", "lavfi", "-i"]);
        args.push(
            format!(
                "anullsrc=r={}:cl={}",
                audio.sample_rate,
                channel_layout(audio.channels)
            )
            .into(),
        );
    }
    push(&mut args, &["-map", "0:v:0"]);
    match audio {
        Some(_) if file_audio => push(&mut args, &["-map", "0:a:0"]),
        Some(_) => push(&mut args, &["-map", "1:a:0"]),
        None => {}
    }
    push(&mut args, &["-vf", &filter, "-r", &rate]);
    video_options(&mut args, video, caps, shape)?;
    if let Some(audio) = audio {
        audio_options(&mut args, audio, caps)?;
    }
    let secs = f64::from(shape.loop_ms + TAIL_MS) / 1000.0;
    push(
        &mut args,
        &[
            "-t",
            &format!("{secs:.3}"),
            "-f",
            "flv",
            "-flvflags",
            "no_duration_filesize",
            "pipe:1",
        ],
    );
    Ok(args)
}

/// The drawtext filters of the card: the headline centred, the title under it.
fn card_text(text: &CardText<'_>, height: u32) -> Result<String, RenderError> {
    let font = FONT_FILES
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .and_then(filter_path)
        .map(|p| format!("fontfile={p}"))
        .unwrap_or_else(|| "font=Sans".to_owned());
    let unquotable = || RenderError::Unsupported("a text file path ffmpeg cannot quote".into());
    let headline = filter_path(text.headline).ok_or_else(unquotable)?;
    let big = (height / 14).max(8);
    let small = (height / 22).max(6);
    let mut filter = format!(
        ",drawtext={font}:textfile={headline}:expansion=none:fontcolor=white:fontsize={big}:x=(w-text_w)/2:y=(h/2)-text_h-{gap}",
        gap = big / 3
    );
    if let Some(title) = text.title {
        let title = filter_path(title).ok_or_else(unquotable)?;
        filter.push_str(&format!(
            ",drawtext={font}:textfile={title}:expansion=none:fontcolor=0xb8c4d6:fontsize={small}:x=(w-text_w)/2:y=(h/2)+{gap}",
            gap = big / 3
        ));
    }
    Ok(filter)
}

fn video_options(
    args: &mut Vec<OsString>,
    video: &VideoSpec,
    caps: &Capabilities,
    shape: LoopShape,
) -> Result<(), RenderError> {
    let encoder = caps.video_encoder(video.codec)?;
    let gop = shape.gop.to_string();
    push(args, &["-c:v", encoder]);
    match (video.codec, encoder) {
        (SlateVideoCodec::H264, _) => {
            let profile = match video.profile_name() {
                name @ ("baseline" | "main" | "high" | "high10" | "high422" | "high444") => name,
                other => {
                    return Err(RenderError::Unsupported(format!(
                        "H.264 profile {other} ({})",
                        video.profile
                    )));
                }
            };
            // x264 names 4:4:4 "high444" but signals it as High 4:4:4 Predictive.
            push(args, &["-preset", "veryfast", "-tune", "stillimage"]);
            push(
                args,
                &["-profile:v", profile, "-level:v", &h264_level(video.level)],
            );
            push(
                args,
                &[
                    "-g",
                    &gop,
                    "-keyint_min",
                    &gop,
                    "-sc_threshold",
                    "0",
                    "-bf",
                    "0",
                ],
            );
            push(args, &["-crf", "28", "-maxrate", "2M", "-bufsize", "4M"]);
        }
        (SlateVideoCodec::Hevc, _) => {
            let profile = match video.profile {
                1 => "main",
                2 => "main10",
                other => {
                    return Err(RenderError::Unsupported(format!("HEVC profile {other}")));
                }
            };
            push(args, &["-preset", "ultrafast", "-profile:v", profile]);
            let params = format!(
                "keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:open-gop=0:level-idc={}:log-level=error",
                hevc_level(video.level)
            );
            push(args, &["-x265-params", &params, "-crf", "30"]);
        }
        (SlateVideoCodec::Av1, "libsvtav1") => {
            // Low delay (no reordered frames), no scene-change keyframes.
            push(args, &["-preset", "10", "-g", &gop, "-crf", "40"]);
            push(args, &["-svtav1-params", "pred-struct=1:scd=0"]);
        }
        (SlateVideoCodec::Av1, "libaom-av1") => {
            push(
                args,
                &[
                    "-usage",
                    "realtime",
                    "-cpu-used",
                    "8",
                    "-lag-in-frames",
                    "0",
                ],
            );
            push(
                args,
                &["-g", &gop, "-keyint_min", &gop, "-crf", "40", "-b:v", "0"],
            );
        }
        (SlateVideoCodec::Av1, _) => {
            push(args, &["-speed", "10", "-g", &gop, "-keyint_min", &gop]);
            push(args, &["-rav1e-params", "low_latency=true"]);
        }
    }
    Ok(())
}

fn audio_options(
    args: &mut Vec<OsString>,
    audio: &AudioSpec,
    caps: &Capabilities,
) -> Result<(), RenderError> {
    let encoder = caps.audio_encoder(audio.codec)?;
    push(args, &["-c:a", encoder]);
    match (audio.codec, encoder) {
        (SlateAudioCodec::Aac { object_type: 5 }, "libfdk_aac") => {
            push(args, &["-profile:a", "aac_he"]);
        }
        (SlateAudioCodec::Aac { object_type: 29 }, "libfdk_aac") => {
            push(args, &["-profile:a", "aac_he_v2"]);
        }
        // HE-AAC without libfdk_aac: ffmpeg's own encoder makes AAC-LC at the same
        // output rate and channels, which every player decodes the same way; the
        // render logs the difference.
        _ => {}
    }
    let bitrate = match audio.codec {
        SlateAudioCodec::Opus | SlateAudioCodec::Mp3 => "64k",
        SlateAudioCodec::Aac { .. } => "96k",
    };
    push(
        args,
        &[
            "-ar",
            &audio.sample_rate.to_string(),
            "-ac",
            &audio.channels.to_string(),
            "-b:a",
            bitrate,
        ],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standby::frame_rate::FrameRate;

    fn caps() -> Capabilities {
        Capabilities::parse(
            " V....D libx264  x\n V....D libx265  x\n V..... libsvtav1 x\n A..... aac x\n",
            " T.C drawtext V->V x\n",
        )
    }

    fn text(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn loops_are_two_keyframe_intervals_of_whole_frames() {
        let mut spec = SlateSpec::title_card("x");
        assert_eq!(
            LoopShape::of(&spec.video),
            LoopShape {
                gop: 60,
                frames: 120,
                loop_ms: 4000
            }
        );
        spec.video.frame_rate = FrameRate {
            num: 30000,
            den: 1001,
        };
        assert_eq!(
            LoopShape::of(&spec.video),
            LoopShape {
                gop: 60,
                frames: 120,
                loop_ms: 4004
            }
        );
        spec.video.frame_rate = FrameRate { num: 25, den: 1 };
        assert_eq!(LoopShape::of(&spec.video).loop_ms, 4000);
    }

    #[test]
    fn x264_gets_the_exact_profile_level_size_and_rate() {
        let mut spec = SlateSpec::title_card("x");
        spec.video.profile = 110;
        spec.video.bit_depth = 10;
        spec.video.level = 42;
        spec.video.frame_rate = FrameRate {
            num: 60000,
            den: 1001,
        };
        let args = text(&ffmpeg_args(&spec, &caps(), Source::Card(None)).unwrap());
        for part in [
            "color=c=0x141a24:s=1280x720:r=60000/1001",
            "format=yuv420p10le",
            "-profile:v high10 -level:v 4.2",
            "-g 120 -keyint_min 120 -sc_threshold 0 -bf 0",
            "-r 60000/1001",
            "anullsrc=r=48000:cl=stereo",
            "-c:a aac -ar 48000 -ac 2",
            "-t 4.504 -f flv",
        ] {
            assert!(args.contains(part), "{part} missing from {args}");
        }
    }

    #[test]
    fn hevc_and_missing_encoders() {
        let mut spec = SlateSpec::title_card("x");
        spec.video.codec = SlateVideoCodec::Hevc;
        spec.video.profile = 1;
        spec.video.level = 123;
        let args = text(&ffmpeg_args(&spec, &caps(), Source::Card(None)).unwrap());
        assert!(args.contains("-c:v libx265 -preset ultrafast -profile:v main"));
        assert!(args.contains("open-gop=0:level-idc=4.1"));
        spec.audio = Some(AudioSpec {
            codec: SlateAudioCodec::Opus,
            sample_rate: 48_000,
            channels: 2,
        });
        let err = ffmpeg_args(&spec, &caps(), Source::Card(None)).unwrap_err();
        assert!(err.to_string().contains("cannot encode opus"), "{err}");
    }

    #[test]
    fn operator_files_are_fitted_and_paths_quoted() {
        let spec = SlateSpec::title_card("x");
        let args =
            text(&ffmpeg_args(&spec, &caps(), Source::Image(Path::new("/s/a.png"))).unwrap());
        assert!(args.contains("-loop 1 -framerate 30/1 -i /s/a.png"));
        assert!(args.contains("force_original_aspect_ratio=decrease,pad=1280:720"));
        let args = text(
            &ffmpeg_args(
                &spec,
                &caps(),
                Source::Video {
                    path: Path::new("/s/v.mp4"),
                    file_audio: true,
                },
            )
            .unwrap(),
        );
        assert!(args.contains("-stream_loop -1 -i /s/v.mp4"));
        assert!(args.contains("-map 0:v:0 -map 0:a:0") && !args.contains("anullsrc"));
        assert!(is_image(Path::new("x.JPG")) && !is_image(Path::new("x.mp4")));
        assert_eq!(
            filter_path(Path::new("/tmp/a b")).as_deref(),
            Some("'/tmp/a b'")
        );
        assert_eq!(filter_path(Path::new("/tmp/a'b")), None);
    }
}
