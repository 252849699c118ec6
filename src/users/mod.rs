//! Per-user destination files and stream-key authentication.
//!
//! Each user has one TOML file in the configured directory: their stream key(s) and
//! where their stream goes. Publishing with a user's key starts that user's
//! destinations. When any user is configured, only their keys may publish.
//!
//! ```toml
//! name = "alice"                 # optional; defaults to the file name
//! stream_key = "alice-secret"    # or stream_keys = ["a", "b"]
//!
//! [[destinations]]
//! preset = "youtube"
//! key = "xxxx-xxxx-xxxx"
//!
//! [[destinations]]
//! url = "rtmps://my.server/live/streamkey"
//! profile = "720p30"
//! ```
//!
//! Error messages never quote the file's values: a wrong-typed or mistyped key
//! would otherwise end up in a log.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::mask::Masked;
use crate::presets::{PresetTargetError, Presets};
use crate::target::{Target, TargetError};
use crate::transcode::Profiles;

/// The most user files read from one directory; a bound on startup work and memory.
pub const MAX_USERS: usize = 10_000;

/// The most destinations one user may have; every one is a live outbound connection.
pub const MAX_DESTINATIONS_PER_USER: usize = 32;

/// Shortest stream key accepted: short keys can be guessed.
pub const MIN_KEY_LEN: usize = 8;

/// Why the user files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// The directory could not be read.
    #[error("users directory {dir}: {source}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// One file is invalid.
    #[error("user file {file}: {reason}")]
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong, without any value from the file.
        reason: String,
    },
    /// Too many files.
    #[error("users directory {0}: more than {MAX_USERS} user files")]
    TooMany(PathBuf),
}

/// One destination as a user asks for it: in a user file, in a publish
/// callback's answer, or in a `POST .../destinations` body. One type for the three so
/// they accept the same fields and are checked by the same [`validate_destination`].
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationRequest {
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
}

/// Masks the key, and the URL (which ends in one), so that a request can be logged.
impl fmt::Debug for DestinationRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationRequest")
            .field("preset", &self.preset)
            .field("key", &self.key.as_deref().map(Masked))
            .field("url", &self.url.as_deref().map(Masked))
            .field("profile", &self.profile)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    stream_key: Option<String>,
    #[serde(default)]
    stream_keys: Vec<String>,
    #[serde(default)]
    destinations: Vec<DestinationRequest>,
    #[serde(default)]
    standby: UserStandby,
}

/// A user's own standby settings, over `[standby]`: whether their destinations
/// get the slate, and which image or video it shows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserStandby {
    /// Overrides `standby.enabled`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Overrides `standby.file`.
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
}

/// A user: a name, the keys they publish with, and their destinations.
#[derive(Clone)]
pub struct User {
    /// The user's name (shown in status instead of the key).
    pub name: String,
    keys: Vec<String>,
    /// Where their stream goes.
    pub destinations: Vec<DestinationRequest>,
    /// Their standby settings.
    pub standby: UserStandby,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("destinations", &self.destinations.len())
            .finish_non_exhaustive()
    }
}

impl User {
    /// Whether `key` is one of this user's keys, compared in constant time so that
    /// response timing does not leak how much of a guessed key was right.
    fn has_key(&self, key: &str) -> bool {
        self.keys.iter().fold(false, |found, own| {
            found | bool::from(own.as_bytes().ct_eq(key.as_bytes()))
        })
    }
}

/// Every configured user.
#[derive(Debug, Clone, Default)]
pub struct Users {
    users: Vec<User>,
}

impl Users {
    /// Reads every `*.toml` file in `dir`.
    pub fn load_dir(
        dir: &Path,
        presets: &Presets,
        profiles: &Profiles,
    ) -> Result<Self, UsersError> {
        let entries = std::fs::read_dir(dir).map_err(|source| UsersError::Dir {
            dir: dir.to_owned(),
            source,
        })?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|source| UsersError::Dir {
                    dir: dir.to_owned(),
                    source,
                })?
                .path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
            if files.len() > MAX_USERS {
                return Err(UsersError::TooMany(dir.to_owned()));
            }
        }
        files.sort();
        let mut users: Vec<User> = Vec::with_capacity(files.len());
        for file in files {
            let user = load_file(&file, presets, profiles)?;
            let clash = user
                .keys
                .iter()
                .any(|key| users.iter().any(|other| other.has_key(key)));
            if clash {
                return Err(file_error(
                    &file,
                    "a stream key is also another user's key".into(),
                ));
            }
            users.push(user);
        }
        Ok(Self { users })
    }

    /// The user called `name` (a player names a user's stream by it).
    pub fn named(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The user whose key this is. Every user is checked, so the time taken does not
    /// depend on which user (if any) matched.
    pub fn authenticate(&self, key: &str) -> Option<&User> {
        self.users.iter().fold(
            None,
            |found, user| if user.has_key(key) { Some(user) } else { found },
        )
    }

    /// Whether no user is configured (then any key may publish).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.users.len()
    }
}

fn file_error(file: &Path, reason: String) -> UsersError {
    UsersError::File {
        file: file.to_owned(),
        reason,
    }
}

/// A figment error described without the values it may quote.
fn describe(error: &figment::Error) -> String {
    use figment::error::Kind;
    let at = if error.path.is_empty() {
        String::new()
    } else {
        format!(" at `{}`", error.path.join("."))
    };
    let what = match &error.kind {
        Kind::InvalidType(_, expected) => format!("wrong type, expected {expected}"),
        Kind::MissingField(field) => format!("missing field `{field}`"),
        Kind::UnknownField(field, _) => format!("unknown field `{field}`"),
        Kind::DuplicateField(field) => format!("duplicate field `{field}`"),
        // TOML syntax errors quote the offending line after the first line.
        Kind::Message(message) => message.lines().next().unwrap_or("invalid").to_owned(),
        _ => "invalid value".to_owned(),
    };
    format!("{what}{at}")
}

fn load_file(file: &Path, presets: &Presets, profiles: &Profiles) -> Result<User, UsersError> {
    let parsed: UserFile = Figment::from(Toml::file_exact(file))
        .extract()
        .map_err(|e| file_error(file, describe(&e)))?;
    let name = parsed.name.clone().unwrap_or_else(|| {
        file.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let keys: Vec<String> = parsed
        .stream_key
        .into_iter()
        .chain(parsed.stream_keys)
        .collect();
    if keys.is_empty() {
        return Err(file_error(file, "no stream_key".into()));
    }
    if keys.iter().any(|k| {
        k.len() < MIN_KEY_LEN || k.contains(['?', '/', '&']) || k.chars().any(char::is_control)
    }) {
        return Err(file_error(
            file,
            format!(
                "stream keys need at least {MIN_KEY_LEN} characters and no '?', '/', '&' or control characters"
            ),
        ));
    }
    if parsed.destinations.len() > MAX_DESTINATIONS_PER_USER {
        return Err(file_error(
            file,
            format!("more than {MAX_DESTINATIONS_PER_USER} destinations"),
        ));
    }
    for (index, destination) in parsed.destinations.iter().enumerate() {
        validate_destination(destination, presets, profiles)
            .map_err(|reason| file_error(file, format!("destination {}: {reason}", index + 1)))?;
    }
    if let Some(standby) = &parsed.standby.file
        && !standby.is_file()
    {
        return Err(file_error(
            file,
            format!("standby.file {} is not a readable file", standby.display()),
        ));
    }
    Ok(User {
        name,
        keys,
        destinations: parsed.destinations,
        standby: parsed.standby,
    })
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
    match &destination.profile {
        Some(profile) if !profiles.contains(profile) => Err(DestinationError::UnknownProfile {
            name: profile.clone(),
            known: profiles.names(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
