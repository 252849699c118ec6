//! One destination as a user asks for it (a user file's entry, a callback
//! answer's, an API body), its id, and the one check all three pass.

use std::fmt;

use serde::Deserialize;

use crate::mask::Masked;
use crate::presets::{PresetTargetError, Presets};
use crate::target::{Target, TargetError};
use crate::transcode::Profiles;

/// Longest destination id: it appears in URLs, status and metrics labels.
pub const MAX_ID_LEN: usize = 40;

/// One destination as a user asks for it: in a user file, in a publish
/// callback's answer, or in a `POST .../destinations` body. One type for the three so
/// they accept the same fields and are checked by the same [`validate_destination`].
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationRequest {
    /// The destination's id within its stream; derived from the preset when not
    /// given ([`assign_ids`]).
    #[serde(default)]
    pub id: Option<String>,
    /// A preset id (`youtube`); needs `key`.
    #[serde(default)]
    pub preset: Option<String>,
    /// The stream key for the preset.
    #[serde(default)]
    pub key: Option<String>,
    /// A full `rtmp://` or `rtmps://` URL ending in the stream name, instead of a preset.
    #[serde(default)]
    pub url: Option<String>,
    /// A re-encode profile name (built-in `720p30`, `1080p30`, `h264`, or from config).
    #[serde(default)]
    pub profile: Option<String>,
    /// `false` keeps a saved destination without starting it (default `true`).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Masks the key, and the URL (which ends in one), so that a request can be logged.
impl fmt::Debug for DestinationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationRequest")
            .field("id", &self.id)
            .field("preset", &self.preset)
            .field("key", &self.key.as_deref().map(Masked))
            .field("url", &self.url.as_deref().map(Masked))
            .field("profile", &self.profile)
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// Whether `id` may name a destination: 1 to [`MAX_ID_LEN`] ASCII letters,
/// digits, `-`, `_` or `.`, so that it is safe in a URL path and a metrics label.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The first of `base`, `base-2`, `base-3`... that `taken` says is free: the rule
/// every destination id follows, saved or started.
pub fn unique_id(base: &str, taken: impl Fn(&str) -> bool) -> String {
    std::iter::once(base.to_owned())
        .chain((2..).map(|n| format!("{base}-{n}")))
        .find(|id| !taken(id))
        .unwrap_or_else(|| base.to_owned())
}

/// Gives every destination without an `id` one: its preset's id, or `custom` for
/// a URL, made unique by [`unique_id`] against the ids written in the file and
/// those given before it. Refuses invalid and repeated written ids.
pub fn assign_ids(destinations: &mut [DestinationRequest]) -> Result<(), String> {
    let mut taken: Vec<String> = Vec::with_capacity(destinations.len());
    for (index, id) in destinations
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.id.as_deref().map(|id| (i, id)))
    {
        if !valid_id(id) {
            return Err(format!(
                "destination {}: an id is 1 to {MAX_ID_LEN} letters, digits, '-', '_' or '.'",
                index + 1
            ));
        }
        if taken.iter().any(|t| t == id) {
            return Err(format!("two destinations have the id `{id}`"));
        }
        taken.push(id.to_owned());
    }
    for destination in destinations.iter_mut().filter(|d| d.id.is_none()) {
        let base = destination.preset.as_deref().unwrap_or("custom");
        let id = unique_id(base, |id| taken.iter().any(|t| t == id));
        taken.push(id.clone());
        destination.id = Some(id);
    }
    Ok(())
}

/// Why a destination (a user file's, a callback answer's or an API request's) is
/// refused. Quotes no key and no URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// An unknown preset, or a key that breaks the key rules.
    #[error(transparent)]
    Preset(#[from] PresetTargetError),
    /// A full URL that is not a usable target.
    #[error(transparent)]
    Url(#[from] TargetError),
    /// `preset` without `key`.
    #[error("a preset needs a key")]
    NoKey,
    /// Neither form, or both.
    #[error("give either preset and key, or url")]
    Shape,
    /// An id that is not usable in a URL path or a metrics label.
    #[error("an id is 1 to {MAX_ID_LEN} letters, digits, '-', '_' or '.'")]
    Id,
    /// A profile nobody defined.
    #[error("unknown profile `{name}` (known: {known})")]
    UnknownProfile {
        /// The profile asked for (a name, not a secret).
        name: String,
        /// The known profiles.
        known: String,
    },
}

impl DestinationRequest {
    /// Whether it starts when its stream goes live (the on/off switch).
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// Where this destination publishes: the preset's ingest with the key, or the
    /// full URL. The key rules ([`crate::target::key`]) are checked on
    /// the way, so a target never holds a key an ingest must not get.
    pub fn target(&self, presets: &Presets) -> Result<Target, DestinationError> {
        match (&self.preset, &self.key, &self.url) {
            (Some(preset), Some(key), None) => Ok(presets.target(preset, key, &[])?),
            (None, None, Some(url)) => Ok(Target::from_full_url(url)?),
            (Some(_), None, None) => Err(DestinationError::NoKey),
            _ => Err(DestinationError::Shape),
        }
    }
}

/// Checks one destination (a user file's, a callback answer's or an API
/// request's): a known preset with a valid key, or a valid full URL, and a known
/// profile. One check for the three, so they refuse the same things for the same
/// reasons.
pub fn validate_destination(
    destination: &DestinationRequest,
    presets: &Presets,
    profiles: &Profiles,
) -> Result<(), DestinationError> {
    destination.target(presets)?;
    if destination.id.as_deref().is_some_and(|id| !valid_id(id)) {
        return Err(DestinationError::Id);
    }
    match &destination.profile {
        Some(profile) if !profiles.contains(profile) => Err(DestinationError::UnknownProfile {
            name: profile.clone(),
            known: profiles.names(),
        }),
        _ => Ok(()),
    }
}
