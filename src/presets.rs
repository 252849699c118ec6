//! Destination presets: one per platform (YouTube, Twitch, Facebook, Kick...).
//!
//! A preset says where a platform's ingest is, how the stream key goes into the
//! RTMP URL, which query-string parameter selects it (`?youtube=KEY`) and what the
//! platform accepts (for status warnings). The presets in `destinations/*.toml` are
//! compiled in; `[presets.NAME]` in the config overrides any field of one or adds a
//! new one. Only presets can be named from a publish URL, so a publisher can never
//! make prism connect to an arbitrary host.

use std::collections::BTreeMap;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::{Deserialize, Serialize};

use crate::target::key::{self as destination_key, KeyError};
use crate::target::{Target, TargetError};

/// The presets shipped in `destinations/`, by id.
const EMBEDDED: &[(&str, &str)] = &[
    ("facebook", include_str!("../destinations/facebook.toml")),
    ("kick", include_str!("../destinations/kick.toml")),
    ("trovo", include_str!("../destinations/trovo.toml")),
    ("twitch", include_str!("../destinations/twitch.toml")),
    ("youtube", include_str!("../destinations/youtube.toml")),
];

/// The placeholder for the stream key in a preset's `stream_name`.
pub const KEY_PLACEHOLDER: &str = "{key}";

/// What a platform accepts; used to warn, never to block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// The longest keyframe interval the platform accepts, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyframe_interval_max_secs: Option<f64>,
    /// Video codecs accepted (`h264`, `hevc`, `av1`); empty means any.
    #[serde(default)]
    pub video_codecs: Vec<String>,
    /// Audio codecs accepted (`aac`, `opus`...); empty means any.
    #[serde(default)]
    pub audio_codecs: Vec<String>,
    /// Video bitrate ceiling in kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_video_kbps: Option<u32>,
    /// Audio bitrate ceiling in kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_audio_kbps: Option<u32>,
    /// The platform refuses or drops a stream without video (YouTube does):
    /// an audio-only stream then gets a generated picture for it
    /// (`[transcode] audio_only_video`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub needs_video: bool,
}

/// One platform's ingest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// A display name ("YouTube Live").
    pub name: String,
    /// The ingest: `rtmp://host[:port]/app` or `rtmps://...`.
    pub url: String,
    /// The RTMP stream name to publish, with `{key}` where the key goes.
    #[serde(default = "default_stream_name")]
    pub stream_name: String,
    /// The query-string parameter that selects this preset; defaults to its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// What the platform accepts.
    #[serde(default)]
    pub constraints: Constraints,
}

fn default_stream_name() -> String {
    KEY_PLACEHOLDER.to_owned()
}

/// A config file's `[presets.NAME]`: every field optional, applied over the
/// embedded preset of that name (or forming a new one, which then needs a url).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetOverride {
    /// Replaces the display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Replaces the ingest URL (e.g. a local test server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Replaces the stream name template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_name: Option<String>,
    /// Replaces the query-string parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// Replaces the constraints as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Constraints>,
}

/// Why the presets could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    /// An embedded or configured preset did not parse.
    #[error("preset {id}: {reason}")]
    Invalid {
        /// The preset id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why a preset cannot publish with a given key. Quotes no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresetTargetError {
    /// No preset has this id.
    #[error("unknown preset `{id}` (known: {known})")]
    Unknown {
        /// The id asked for.
        id: String,
        /// Every preset id, comma-separated.
        known: String,
    },
    /// The key or a passed-through parameter breaks the key rules.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The preset's URL and the stream name do not make a target (presets are
    /// checked at load, so this is a preset changed since).
    #[error("preset {id}: {source}")]
    Url {
        /// The preset.
        id: String,
        /// What is wrong.
        #[source]
        source: TargetError,
    },
}

/// Every preset, by id, with a lookup by query-string parameter.
#[derive(Debug, Clone, Default)]
pub struct Presets {
    by_id: BTreeMap<String, Preset>,
    by_param: BTreeMap<String, String>,
}

impl Presets {
    /// The embedded presets with the config's overrides applied.
    pub fn load(overrides: &BTreeMap<String, PresetOverride>) -> Result<Self, PresetError> {
        let mut by_id = BTreeMap::new();
        for (id, text) in EMBEDDED {
            let preset: Preset = Figment::from(Toml::string(text))
                .extract()
                .map_err(|e| invalid(id, e.to_string()))?;
            by_id.insert((*id).to_owned(), preset);
        }
        for (id, change) in overrides {
            let preset = match by_id.remove(id) {
                Some(preset) => apply(preset, change),
                None => new_preset(id, change)?,
            };
            by_id.insert(id.clone(), preset);
        }
        let mut by_param = BTreeMap::new();
        for (id, preset) in &by_id {
            validate(id, preset)?;
            let param = preset.param.clone().unwrap_or_else(|| id.clone());
            if let Some(other) = by_param.insert(param.clone(), id.clone()) {
                return Err(invalid(
                    id,
                    format!("parameter `{param}` is also used by preset {other}"),
                ));
            }
        }
        Ok(Self { by_id, by_param })
    }

    /// The preset with this id.
    pub fn get(&self, id: &str) -> Option<&Preset> {
        self.by_id.get(id)
    }

    /// The preset id a query-string parameter selects.
    pub fn id_for_param(&self, param: &str) -> Option<&str> {
        self.by_param.get(param).map(String::as_str)
    }

    /// Every query-string parameter that selects a preset: what a misspelt one
    /// is compared with to suggest the one meant.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.by_param.keys().map(String::as_str)
    }

    /// Every preset id.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(String::as_str)
    }

    /// The RTMP target for `key` on preset `id`, with extra query parameters for the
    /// stream name (`facebook_s_bl=1` → `?s_bl=1`). Every preset destination is
    /// built here, so the key rules ([`destination_key`]) hold for all of them,
    /// wherever the key came from.
    pub fn target(
        &self,
        id: &str,
        key: &str,
        extra_query: &[(String, String)],
    ) -> Result<Target, PresetTargetError> {
        let preset = self.get(id).ok_or_else(|| PresetTargetError::Unknown {
            id: id.to_owned(),
            known: self.ids().collect::<Vec<_>>().join(", "),
        })?;
        destination_key::check_key(key)?;
        destination_key::check_passthrough(extra_query)?;
        let mut name = preset.stream_name.replace(KEY_PLACEHOLDER, key);
        if !extra_query.is_empty() {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.extend_pairs(extra_query);
            name.push(if name.contains('?') { '&' } else { '?' });
            name.push_str(&query.finish());
        }
        Target::new(&preset.url, name).map_err(|source| PresetTargetError::Url {
            id: id.to_owned(),
            source,
        })
    }
}

fn invalid(id: &str, reason: String) -> PresetError {
    PresetError::Invalid {
        id: id.to_owned(),
        reason,
    }
}

fn apply(mut preset: Preset, change: &PresetOverride) -> Preset {
    if let Some(name) = &change.name {
        preset.name = name.clone();
    }
    if let Some(url) = &change.url {
        preset.url = url.clone();
    }
    if let Some(stream_name) = &change.stream_name {
        preset.stream_name = stream_name.clone();
    }
    if let Some(param) = &change.param {
        preset.param = Some(param.clone());
    }
    if let Some(constraints) = &change.constraints {
        preset.constraints = constraints.clone();
    }
    preset
}

fn new_preset(id: &str, change: &PresetOverride) -> Result<Preset, PresetError> {
    let url = change
        .url
        .clone()
        .ok_or_else(|| invalid(id, "a new preset needs a url".to_owned()))?;
    Ok(apply(
        Preset {
            name: id.to_owned(),
            url,
            stream_name: default_stream_name(),
            param: None,
            constraints: Constraints::default(),
        },
        change,
    ))
}

/// A parameter name must not contain `_`: `NAME_x=v` passes `x=v` through to NAME.
fn valid_param(param: &str) -> bool {
    !param.is_empty()
        && param.len() <= 32
        && param
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn validate(id: &str, preset: &Preset) -> Result<(), PresetError> {
    let param = preset.param.as_deref().unwrap_or(id);
    if !valid_param(param) {
        return Err(invalid(
            id,
            format!("parameter `{param}` must be lowercase letters, digits or '-'"),
        ));
    }
    if !preset.stream_name.contains(KEY_PLACEHOLDER) {
        return Err(invalid(
            id,
            format!("stream_name must contain {KEY_PLACEHOLDER}"),
        ));
    }
    Target::new(&preset.url, "k".to_owned())
        .map_err(|e: TargetError| invalid(id, e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_presets_load() {
        let presets = Presets::load(&BTreeMap::new()).unwrap();
        let ids: Vec<_> = presets.ids().collect();
        assert_eq!(ids, ["facebook", "kick", "trovo", "twitch", "youtube"]);
        let yt = presets.target("youtube", "abcd-efgh", &[]).unwrap();
        assert!(yt.tls);
        assert_eq!(yt.host, "a.rtmps.youtube.com");
        assert_eq!(yt.port, 443);
        assert_eq!(yt.app, "live2");
        assert_eq!(yt.stream_name, "abcd-efgh");
        assert_eq!(
            presets
                .get("twitch")
                .unwrap()
                .constraints
                .keyframe_interval_max_secs,
            Some(2.0)
        );
    }

    #[test]
    fn overrides_change_fields_and_add_presets() {
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "youtube".to_owned(),
            PresetOverride {
                url: Some("rtmp://127.0.0.1:1940/live2".to_owned()),
                ..Default::default()
            },
        );
        overrides.insert(
            "mycdn".to_owned(),
            PresetOverride {
                url: Some("rtmps://cdn.example.com/ingest".to_owned()),
                stream_name: Some("prefix-{key}".to_owned()),
                ..Default::default()
            },
        );
        let presets = Presets::load(&overrides).unwrap();
        let yt = presets.target("youtube", "k", &[]).unwrap();
        assert!(!yt.tls);
        assert_eq!((yt.host.as_str(), yt.port), ("127.0.0.1", 1940));
        assert_eq!(
            presets.get("youtube").unwrap().name,
            "YouTube Live",
            "other fields kept"
        );
        let cdn = presets.target("mycdn", "k", &[]).unwrap();
        assert_eq!((cdn.port, cdn.stream_name.as_str()), (443, "prefix-k"));
        assert_eq!(presets.id_for_param("mycdn"), Some("mycdn"));
    }

    #[test]
    fn extra_query_goes_onto_the_stream_name() {
        let presets = Presets::load(&BTreeMap::new()).unwrap();
        let extra = vec![
            ("s_bl".to_owned(), "1".to_owned()),
            ("s_sw".to_owned(), "0".to_owned()),
        ];
        let fb = presets.target("facebook", "FB-1", &extra).unwrap();
        assert_eq!(fb.stream_name, "FB-1?s_bl=1&s_sw=0");
    }

    #[test]
    fn no_target_is_built_with_a_bad_key_or_parameter() {
        let presets = Presets::load(&BTreeMap::new()).unwrap();
        for key in ["", "a\nb", "a\0b", "../x", &"k".repeat(3000)] {
            let err = presets.target("twitch", key, &[]).unwrap_err();
            assert!(matches!(err, PresetTargetError::Key(_)), "{key:?}: {err}");
        }
        let extra = vec![("s_bl".to_owned(), "1\n".to_owned())];
        assert!(matches!(
            presets.target("facebook", "FB-1", &extra),
            Err(PresetTargetError::Key(KeyError::ParamValue { .. }))
        ));
        let err = presets.target("nope", "k", &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("unknown preset `nope` (known: facebook,"),
            "{err}"
        );
    }

    #[test]
    fn bad_presets_are_refused() {
        let bad = |change: PresetOverride| {
            let mut overrides = BTreeMap::new();
            overrides.insert("x".to_owned(), change);
            Presets::load(&overrides).unwrap_err().to_string()
        };
        assert!(bad(PresetOverride::default()).contains("needs a url"));
        assert!(
            bad(PresetOverride {
                url: Some("http://example.com/app".into()),
                ..Default::default()
            })
            .contains("rtmp")
        );
        assert!(
            bad(PresetOverride {
                url: Some("rtmp://h/app".into()),
                param: Some("youtube".into()),
                ..Default::default()
            })
            .contains("also used")
        );
        assert!(
            bad(PresetOverride {
                url: Some("rtmp://h/app".into()),
                param: Some("my_cdn".into()),
                ..Default::default()
            })
            .contains("parameter")
        );
    }
}
