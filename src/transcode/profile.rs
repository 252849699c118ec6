//! Re-encode profiles: named sets of ffmpeg output arguments.
//!
//! Four are built in and their names are a stable interface: `480p30`, `720p30`
//! and `1080p30` (H.264 + AAC at bitrates Twitch accepts, 2 s keyframes) and `h264`
//! (the source's size and rate, converted to H.264 + AAC for platforms that refuse
//! HEVC, AV1 or Opus). `[profiles.NAME] args = [...]` in the config overrides one or
//! adds more.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One profile: the ffmpeg output arguments between `-i pipe:0` and its output
/// (`-f flv pipe:3`, or the next free descriptor when a process has several).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Output options: codecs, filters, bitrates, keyframe interval.
    pub args: Vec<String>,
}

/// Keyframes every 2 s whatever the frame rate, as Twitch requires and YouTube
/// and Facebook recommend.
const KEYFRAMES_EVERY_2S: &str = "-force_key_frames expr:gte(t,n_forced*2) -sc_threshold 0";

/// AAC-LC stereo at 48 kHz, accepted by every platform preset.
const AAC_AUDIO: &str = "-c:a aac -b:a 160k -ar 48000 -ac 2";

fn builtin(video: &str) -> Profile {
    let text = format!("{video} {KEYFRAMES_EVERY_2S} {AAC_AUDIO}");
    Profile {
        args: text.split_whitespace().map(str::to_owned).collect(),
    }
}

/// The built-in profiles.
pub fn builtins() -> BTreeMap<String, Profile> {
    let x264 = "-c:v libx264 -preset veryfast -profile:v main -pix_fmt yuv420p";
    BTreeMap::from([
        (
            "720p30".to_owned(),
            builtin(&format!(
                "{x264} -vf scale=-2:720,fps=30 -b:v 3500k -maxrate 3500k -bufsize 7000k"
            )),
        ),
        (
            "480p30".to_owned(),
            builtin(&format!(
                "{x264} -vf scale=-2:480,fps=30 -b:v 1500k -maxrate 1500k -bufsize 3000k"
            )),
        ),
        (
            "1080p30".to_owned(),
            builtin(&format!(
                "{x264} -vf scale=-2:1080,fps=30 -b:v 6000k -maxrate 6000k -bufsize 12000k"
            )),
        ),
        (
            "h264".to_owned(),
            builtin(&format!("{x264} -crf 21 -maxrate 8000k -bufsize 16000k")),
        ),
    ])
}

/// Every profile: the built-ins with the config's overrides and additions.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    by_name: BTreeMap<String, Profile>,
}

impl Profiles {
    /// Built-ins, then `configured` on top.
    pub fn new(configured: &BTreeMap<String, Profile>) -> Self {
        let mut by_name = builtins();
        by_name.extend(configured.iter().map(|(k, v)| (k.clone(), v.clone())));
        Self { by_name }
    }

    /// The built-ins alone.
    pub fn default_set() -> Self {
        Self::new(&BTreeMap::new())
    }

    /// The profile called `name`.
    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.by_name.get(name)
    }

    /// Whether `name` is a profile.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// How many profiles there are (built-ins included).
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there is none (never, with the built-ins).
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The names, for error messages.
    pub fn names(&self) -> String {
        self.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_exist_and_config_overrides_them() {
        let mut configured = BTreeMap::new();
        configured.insert(
            "720p30".to_owned(),
            Profile {
                args: vec!["-c:v".into(), "libx264".into()],
            },
        );
        configured.insert(
            "audio-only".to_owned(),
            Profile {
                args: vec!["-vn".into()],
            },
        );
        let profiles = Profiles::new(&configured);
        assert!(profiles.contains("1080p30") && profiles.contains("h264"));
        assert_eq!(profiles.get("720p30").unwrap().args.len(), 2);
        assert!(profiles.contains("audio-only"));
        assert_eq!(
            profiles.names(),
            "1080p30, 480p30, 720p30, audio-only, h264"
        );
        let builtin = &builtins()["720p30"].args;
        assert!(builtin.iter().any(|a| a == "scale=-2:720,fps=30"));
        assert!(builtin.iter().any(|a| a == "expr:gte(t,n_forced*2)"));
    }
}
