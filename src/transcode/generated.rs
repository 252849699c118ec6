//! A generated picture for audio-only streams: what a destination whose
//! platform needs video (its preset's `needs_video`) gets when the stream has
//! none (`[transcode] audio_only_video`).
//!
//! It is an encode like a profile's, shared by every such destination of the
//! stream, in a process of its own: a black picture made from the stream's
//! audio (which paces it), or an image read beside the stream and laid over
//! it. The picture is encoded (H.264, small: it does not change) and the audio
//! is copied as it came, so what a listener hears is exactly what was
//! published.

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The profile name the generated picture's encode goes by, in status and logs.
pub const PROFILE: &str = "audio-only-video";

/// What an audio-only stream's destinations that need video get.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AudioOnlyVideo {
    /// Nothing: the audio alone, as published.
    Off,
    /// A black 1280x720 picture at 30 frames per second.
    #[default]
    Black,
    /// The image at this path, shown still (any format ffmpeg reads).
    Still(PathBuf),
}

/// What a setting other than `off`, `black` or an image path was.
#[derive(Debug, thiserror::Error)]
#[error("audio_only_video must be \"off\", \"black\" or an image file's path")]
pub struct AudioOnlyVideoError;

impl FromStr for AudioOnlyVideo {
    type Err = AudioOnlyVideoError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "" => Err(AudioOnlyVideoError),
            "off" => Ok(Self::Off),
            "black" => Ok(Self::Black),
            path => Ok(Self::Still(PathBuf::from(path))),
        }
    }
}

impl std::fmt::Display for AudioOnlyVideo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Black => f.write_str("black"),
            Self::Still(path) => write!(f, "{}", path.display()),
        }
    }
}

impl Serialize for AudioOnlyVideo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AudioOnlyVideo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Frames per second of the generated picture.
const RATE: u32 = 30;
/// Its size: YouTube's smallest recommended 16:9 size; an image is fitted in.
const SIZE: (u32, u32) = (1280, 720);

impl AudioOnlyVideo {
    /// Whether there is a picture to make.
    pub fn is_on(&self) -> bool {
        *self != Self::Off
    }

    /// The ffmpeg input options for the picture, read beside the stream (as
    /// input 1): the image, for a still; none for black.
    pub fn input_args(&self) -> Vec<String> {
        match self {
            Self::Still(path) => vec!["-i".into(), path.display().to_string()],
            Self::Off | Self::Black => Vec::new(),
        }
    }

    /// The output options: the picture as H.264 with a keyframe every 2 s,
    /// the stream's audio copied.
    ///
    /// The audio is the picture's clock: an invisible waveform of it
    /// (transparent, so black once it loses its alpha) gives one frame per
    /// 1/30 s of audio that arrived, and ends with the audio. A picture
    /// source of its own (`-f lavfi -i color`, `-loop 1 -i image`) never ends
    /// and ffmpeg reads it as fast as it can, minutes of video a second
    /// (overlaying it on the audio does not hold it back). An image is fitted
    /// into the frame and laid over the black, once: the overlay repeats its
    /// last frame.
    pub fn output_args(&self) -> Vec<String> {
        let (w, h) = SIZE;
        let clock = format!(
            "[0:a]showwaves=s=16x16:rate={RATE}:colors=black@0.0,format=yuv420p,scale={w}:{h}"
        );
        let graph = match self {
            Self::Still(_) => format!(
                "{clock}[clock];[1:v]scale={w}:{h}:force_original_aspect_ratio=decrease,\
                 pad={w}:{h}:-1:-1,format=yuv420p[image];\
                 [clock][image]overlay=eof_action=repeat,fps={RATE}[video]"
            ),
            Self::Off | Self::Black => format!("{clock},fps={RATE}[video]"),
        };
        let mut args = vec!["-filter_complex".to_owned(), graph];
        let text = "-map [video] -map 0:a:0 -c:v libx264 -preset veryfast -tune stillimage \
                    -pix_fmt yuv420p -b:v 300k -maxrate 300k -bufsize 600k -c:a copy -g";
        args.extend(text.split_whitespace().map(str::to_owned));
        args.push((2 * RATE).to_string());
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_reads_off_black_or_a_path_and_says_what_else_is_wrong() {
        assert_eq!(
            "off".parse::<AudioOnlyVideo>().unwrap(),
            AudioOnlyVideo::Off
        );
        assert_eq!(
            "black".parse::<AudioOnlyVideo>().unwrap(),
            AudioOnlyVideo::Black
        );
        assert_eq!(
            "/srv/cover.png".parse::<AudioOnlyVideo>().unwrap(),
            AudioOnlyVideo::Still("/srv/cover.png".into())
        );
        assert!("".parse::<AudioOnlyVideo>().is_err());
        assert_eq!(AudioOnlyVideo::default().to_string(), "black");
    }

    #[test]
    fn the_audio_paces_the_picture_and_is_copied() {
        assert!(!AudioOnlyVideo::Off.is_on());
        assert!(AudioOnlyVideo::Black.input_args().is_empty());
        let still = AudioOnlyVideo::Still("a b.png".into());
        assert_eq!(still.input_args(), ["-i", "a b.png"]);
        for picture in [AudioOnlyVideo::Black, still] {
            let text = picture.output_args().join(" ");
            assert!(text.contains("[0:a]showwaves"), "{text}");
            assert!(text.contains("-map [video] -map 0:a:0"), "{text}");
            assert!(text.contains("-c:a copy"), "{text}");
        }
        let text = AudioOnlyVideo::Still("x".into()).output_args().join(" ");
        assert!(text.contains("[1:v]scale=1280:720"), "{text}");
    }
}
