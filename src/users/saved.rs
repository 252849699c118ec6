//! Saved destinations: edits of a user file's `[[destinations]]` made through the
//! API, written back the way a person would have.
//!
//! An edit is a change to the file's text ([`apply`]): the document is parsed
//! with `toml_edit`, so comments, blank lines, key order and every other
//! setting stay where they were, and only the entry concerned changes. The new
//! text is then read back by the same loader as at startup ([`super::load_text`]),
//! so an edit can never leave a file that `serve` would refuse. The file is
//! replaced atomically ([`write_atomically`]), and its version ([`version_of`],
//! a hash of its bytes) lets a client say which contents its edit is based on:
//! the caller compares it with the file's bytes before writing, so two edits
//! made from the same version cannot both land.

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

use super::{
    DestinationRequest, MAX_DESTINATIONS_PER_USER, User, UsersError, load_text, unique_id, valid_id,
};
use crate::presets::Presets;
use crate::transcode::Profiles;

/// A change to a saved destination, as the API asks for it.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Adds a destination at the end of the list.
    Add(DestinationRequest),
    /// Changes some fields of the destination with this id.
    Update {
        /// The destination's id.
        id: String,
        /// What changes.
        patch: DestinationPatch,
    },
    /// Removes the destination with this id.
    Remove {
        /// The destination's id.
        id: String,
    },
}

impl Edit {
    /// The id the edit is about, when it names one.
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Add(request) => request.id.as_deref(),
            Self::Update { id, .. } | Self::Remove { id } => Some(id),
        }
    }
}

/// The fields a `PATCH` changes; absent fields stay. A `url` replaces a preset
/// and key, a `preset` or `key` replaces a URL; `"profile": null` removes the
/// re-encode.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationPatch {
    /// A preset id.
    #[serde(default)]
    pub preset: Option<String>,
    /// The stream key for the preset.
    #[serde(default)]
    pub key: Option<String>,
    /// A full `rtmp://` or `rtmps://` URL.
    #[serde(default)]
    pub url: Option<String>,
    /// A profile, or `null` for none.
    #[serde(default, deserialize_with = "present")]
    pub profile: Option<Option<String>>,
    /// The on/off switch.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Masks the key and URL, as [`DestinationRequest`]'s `Debug` does.
impl std::fmt::Debug for DestinationPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationPatch")
            .field("preset", &self.preset)
            .field("key", &self.key.as_deref().map(crate::mask::Masked))
            .field("url", &self.url.as_deref().map(crate::mask::Masked))
            .field("profile", &self.profile)
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// A field that is present, `null` included (`Some(None)`), as opposed to absent
/// (`None`, through `#[serde(default)]`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Why an edit was refused. No message quotes a key or a URL.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// No saved destination has this id.
    #[error("no saved destination `{0}`")]
    NotFound(String),
    /// The id asked for is taken.
    #[error("a saved destination already has the id `{0}`")]
    IdTaken(String),
    /// Another saved destination already goes to the same place with the same
    /// profile.
    #[error("that destination is already saved as `{0}`")]
    Duplicate(String),
    /// The edit would make an invalid file (a bad key, an unknown preset...).
    #[error("{0}")]
    Invalid(String),
    /// The file's `destinations` are written in a form this editor does not
    /// change.
    #[error(
        "the user file's destinations are not a list of [[destinations]] tables; \
         edit it by hand"
    )]
    Layout,
    /// The file's own syntax is broken (edited by hand since it was loaded).
    #[error("the user file is not valid TOML: {0}")]
    Syntax(String),
}

/// The version of a file's contents: the first 16 hex digits of their SHA-256.
/// Any change to the bytes, whoever makes it, changes it.
pub fn version_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The new text of `file` (whose contents are `text`) after `edit`, with the
/// user it describes (read back by the startup loader), and the id the edit
/// concerned. Every destination without a written id gets one written
/// (`id = "..."`), so that removing an earlier entry cannot renumber a later one
/// while a live stream or a client knows it by that id.
pub fn apply(
    file: &Path,
    text: &str,
    edit: &Edit,
    presets: &Presets,
    profiles: &Profiles,
) -> Result<(String, User, String), EditError> {
    let before = load_text(file, text, presets, profiles).map_err(invalid)?;
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| EditError::Syntax(first_line(&e.to_string())))?;
    let tables = destinations_of(&mut doc)?;
    pin_ids(tables, &before);
    let id = match edit {
        Edit::Add(request) => {
            if before.destinations.len() >= MAX_DESTINATIONS_PER_USER {
                return Err(EditError::Invalid(format!(
                    "a user has at most {MAX_DESTINATIONS_PER_USER} destinations"
                )));
            }
            let id = match &request.id {
                Some(id) if before.destination(id).is_some() => {
                    return Err(EditError::IdTaken(id.clone()));
                }
                Some(id) if !valid_id(id) => {
                    return Err(EditError::Invalid(super::DestinationError::Id.to_string()));
                }
                Some(id) => id.clone(),
                None => unique_id(request.preset.as_deref().unwrap_or("custom"), |id| {
                    before.destination(id).is_some()
                }),
            };
            tables.push(new_entry(&id, request));
            id
        }
        Edit::Update { id, patch } => {
            let index = index_of(&before, id)?;
            let table = tables.get_mut(index).ok_or(EditError::Layout)?;
            patch_entry(table, patch);
            id.clone()
        }
        Edit::Remove { id } => {
            let index = index_of(&before, id)?;
            tables.remove(index);
            id.clone()
        }
    };
    let new_text = doc.to_string();
    let after = load_text(file, &new_text, presets, profiles).map_err(invalid)?;
    if !matches!(edit, Edit::Remove { .. }) {
        refuse_duplicate(&after, &id, presets)?;
    }
    Ok((new_text, after, id))
}

/// The loader's reason, without the file name the API caller already knows.
fn invalid(err: UsersError) -> EditError {
    match err {
        UsersError::File { reason, .. } => EditError::Invalid(reason),
        other => EditError::Invalid(other.to_string()),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("invalid").to_owned()
}

/// The document's `[[destinations]]`, created when absent; an inline array
/// (`destinations = [{...}]`) becomes tables, an empty one too.
fn destinations_of(doc: &mut DocumentMut) -> Result<&mut ArrayOfTables, EditError> {
    let item = doc
        .entry("destinations")
        .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
    if !item.is_array_of_tables() {
        let taken = std::mem::take(item);
        *item = taken
            .into_array_of_tables()
            .map(Item::ArrayOfTables)
            .map_err(|_| EditError::Layout)?;
    }
    item.as_array_of_tables_mut().ok_or(EditError::Layout)
}

/// Writes each entry's id (as the loader gave it) into the entries that have
/// none, so that the ids stay what they are whatever is removed later.
fn pin_ids(tables: &mut ArrayOfTables, user: &User) {
    for (table, saved) in tables.iter_mut().zip(&user.destinations) {
        if !table.contains_key("id")
            && let Some(id) = &saved.id
        {
            table.insert("id", value(id.as_str()));
        }
    }
}

fn index_of(user: &User, id: &str) -> Result<usize, EditError> {
    user.destinations
        .iter()
        .position(|d| d.id.as_deref() == Some(id))
        .ok_or_else(|| EditError::NotFound(id.to_owned()))
}

fn new_entry(id: &str, request: &DestinationRequest) -> Table {
    let mut table = Table::new();
    table.insert("id", value(id));
    for (key, field) in [
        ("preset", &request.preset),
        ("key", &request.key),
        ("url", &request.url),
        ("profile", &request.profile),
    ] {
        if let Some(text) = field {
            table.insert(key, value(text.as_str()));
        }
    }
    if request.enabled == Some(false) {
        table.insert("enabled", value(false));
    }
    table
}

fn patch_entry(table: &mut Table, patch: &DestinationPatch) {
    if let Some(url) = &patch.url {
        table.remove("preset");
        table.remove("key");
        table.insert("url", value(url.as_str()));
    }
    if patch.preset.is_some() || patch.key.is_some() {
        table.remove("url");
    }
    for (key, field) in [("preset", &patch.preset), ("key", &patch.key)] {
        if let Some(text) = field {
            table.insert(key, value(text.as_str()));
        }
    }
    match &patch.profile {
        Some(Some(profile)) => {
            table.insert("profile", value(profile.as_str()));
        }
        Some(None) => {
            table.remove("profile");
        }
        None => {}
    }
    match patch.enabled {
        Some(false) => {
            table.insert("enabled", value(false));
        }
        Some(true) => {
            table.remove("enabled");
        }
        None => {}
    }
}

/// Refuses a destination that goes where another saved one goes, with the same
/// profile: both would start, and fight over one broadcast.
fn refuse_duplicate(user: &User, id: &str, presets: &Presets) -> Result<(), EditError> {
    let Some(edited) = user.destination(id) else {
        return Ok(());
    };
    let target = edited
        .target(presets)
        .map_err(|e| EditError::Invalid(e.to_string()))?;
    let twin = user.destinations.iter().find(|other| {
        other.id.as_deref() != Some(id)
            && other.profile == edited.profile
            && other.target(presets).is_ok_and(|t| t == target)
    });
    match twin.and_then(|d| d.id.clone()) {
        Some(twin) => Err(EditError::Duplicate(twin)),
        None => Ok(()),
    }
}

pub use crate::atomic_file::write_atomically;

#[cfg(test)]
mod tests;
