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
//! enabled = false                # saved, but not started (the on/off switch)
//! ```
//!
//! Each destination has an id (`id = "..."`, or the preset's id, `custom` for a
//! URL, with `-2`, `-3`... when taken), which a live stream's destination started
//! from it has too, so an edit can reach both. `api_token` (or `api_tokens`)
//! lets the user manage their own saved destinations ([`saved`]) and see their
//! own streams through the HTTP API, and nobody else's.
//!
//! Error messages never quote the file's values: a wrong-typed or mistyped key
//! would otherwise end up in a log.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::Deserialize;
use subtle::ConstantTimeEq;

pub mod destination;
pub mod saved;

pub use destination::{
    DestinationError, DestinationRequest, MAX_ID_LEN, assign_ids, unique_id, valid_id,
    validate_destination,
};

use crate::presets::Presets;
use crate::transcode::Profiles;

/// The most user files read from one directory; a bound on startup work and memory.
pub const MAX_USERS: usize = 10_000;

/// The most destinations one user may have; every one is a live outbound connection.
pub const MAX_DESTINATIONS_PER_USER: usize = 32;

/// Shortest stream key accepted: short keys can be guessed.
pub const MIN_KEY_LEN: usize = 8;

/// Shortest API token accepted: it guards a user's destinations (their platform
/// keys) against anyone who can reach the HTTP port.
pub const MIN_TOKEN_LEN: usize = 16;

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
    api_token: Option<String>,
    #[serde(default)]
    api_tokens: Vec<String>,
    #[serde(default)]
    destinations: Vec<DestinationRequest>,
    #[serde(default)]
    standby: UserStandby,
    #[serde(default)]
    record: crate::record::UserRecord,
    #[serde(default)]
    hls: crate::hls::UserHls,
    #[serde(default)]
    srt_passphrase: Option<String>,
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
    /// Tokens that let them use the HTTP API for their own streams and
    /// destinations.
    tokens: Vec<String>,
    /// Where their stream goes, each with its id.
    pub destinations: Vec<DestinationRequest>,
    /// Their standby settings.
    pub standby: UserStandby,
    /// Their recording settings.
    pub record: crate::record::UserRecord,
    /// Their HLS settings.
    pub hls: crate::hls::UserHls,
    /// The passphrase their SRT connections encrypt with, over `srt.passphrase`.
    pub srt_passphrase: Option<String>,
    /// The file they were read from, which [`saved`] edits.
    pub file: PathBuf,
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
        any_equal(&self.keys, key)
    }

    /// Whether `token` is one of this user's API tokens, in constant time.
    fn has_token(&self, token: &str) -> bool {
        any_equal(&self.tokens, token)
    }

    /// The saved destination with this id.
    pub fn destination(&self, id: &str) -> Option<&DestinationRequest> {
        self.destinations
            .iter()
            .find(|d| d.id.as_deref() == Some(id))
    }
}

/// Whether `given` is one of `secrets`, every one compared in constant time.
fn any_equal(secrets: &[String], given: &str) -> bool {
    secrets.iter().fold(false, |found, own| {
        found | bool::from(own.as_bytes().ct_eq(given.as_bytes()))
    })
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
            if let Some(reason) = clash(&user, &users) {
                return Err(file_error(&file, reason.into()));
            }
            users.push(user);
        }
        Ok(Self { users })
    }

    /// The same users with `user` (read again from its file) in place of the one
    /// of that name; refused, naming the file, when its keys or tokens now clash
    /// with another user's.
    pub fn replaced(&self, user: User) -> Result<Self, UsersError> {
        let others: Vec<User> = self
            .users
            .iter()
            .filter(|u| u.name != user.name)
            .cloned()
            .collect();
        if let Some(reason) = clash(&user, &others) {
            return Err(file_error(&user.file, reason.into()));
        }
        let mut users = self.users.clone();
        match users.iter_mut().find(|u| u.name == user.name) {
            Some(slot) => *slot = user,
            None => users.push(user),
        }
        Ok(Self { users })
    }

    /// The user whose API token this is, every user checked (constant time in
    /// which one matched).
    pub fn by_token(&self, token: &str) -> Option<&User> {
        self.users.iter().fold(None, |found, user| {
            if user.has_token(token) {
                Some(user)
            } else {
                found
            }
        })
    }

    /// Whether `secret` is some user's API token (the admin token must not be).
    pub fn any_token_is(&self, secret: &str) -> bool {
        self.by_token(secret).is_some()
    }

    /// Every user's name, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|u| u.name.as_str())
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

/// Why `user` cannot sit beside `others`: a stream key or API token they share
/// (or one user's key that is another's token), or the same name.
fn clash(user: &User, others: &[User]) -> Option<&'static str> {
    for other in others {
        if other.name == user.name {
            return Some("another user file has the same name");
        }
        if user.keys.iter().any(|k| other.has_key(k)) {
            return Some("a stream key is also another user's key");
        }
        if user
            .tokens
            .iter()
            .any(|t| other.has_token(t) || other.has_key(t))
            || user.keys.iter().any(|k| other.has_token(k))
        {
            return Some("an api_token is also another user's token or key");
        }
    }
    None
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
    let text = std::fs::read_to_string(file)
        .map_err(|e| file_error(file, format!("cannot be read: {e}")))?;
    load_text(file, &text, presets, profiles)
}

/// Reads one user from `text`, the contents of `file` (which names the user when
/// the text does not, and is where errors point).
pub fn load_text(
    file: &Path,
    text: &str,
    presets: &Presets,
    profiles: &Profiles,
) -> Result<User, UsersError> {
    let parsed: UserFile = Figment::from(Toml::string(text))
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
    let tokens: Vec<String> = parsed
        .api_token
        .into_iter()
        .chain(parsed.api_tokens)
        .collect();
    if tokens
        .iter()
        .any(|t| t.len() < MIN_TOKEN_LEN || t.chars().any(|c| !c.is_ascii_graphic()))
    {
        return Err(file_error(
            file,
            format!("api tokens need at least {MIN_TOKEN_LEN} printable characters and no spaces"),
        ));
    }
    if tokens.iter().any(|t| any_equal(&keys, t)) {
        return Err(file_error(
            file,
            "an api_token must not be one of the stream keys".into(),
        ));
    }
    let mut destinations = parsed.destinations;
    if destinations.len() > MAX_DESTINATIONS_PER_USER {
        return Err(file_error(
            file,
            format!("more than {MAX_DESTINATIONS_PER_USER} destinations"),
        ));
    }
    for (index, destination) in destinations.iter().enumerate() {
        validate_destination(destination, presets, profiles)
            .map_err(|reason| file_error(file, format!("destination {}: {reason}", index + 1)))?;
    }
    assign_ids(&mut destinations).map_err(|reason| file_error(file, reason))?;
    if parsed
        .srt_passphrase
        .as_ref()
        .is_some_and(|p| !(10..=79).contains(&p.len()))
    {
        return Err(file_error(
            file,
            "srt_passphrase is 10 to 79 characters".into(),
        ));
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
        tokens,
        destinations,
        standby: parsed.standby,
        record: parsed.record,
        hls: parsed.hls,
        srt_passphrase: parsed.srt_passphrase,
        file: file.to_owned(),
    })
}

#[cfg(test)]
mod tests;
