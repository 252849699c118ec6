//! A user's saved destinations through the API: read from their file, edited
//! in it ([`crate::users::saved`]), the users table updated at once (the next
//! publish starts what the file now says), and, when the caller asks, the change
//! applied to the user's live streams.
//!
//! Edits are serialized by one lock, which a reload takes too, and each is a
//! compare-and-swap on the file's version: an edit based on a version that is no
//! longer the file's (someone else's edit, or a hand edit) is refused with the
//! current version, never applied over it.

use std::sync::Arc;

use serde::Serialize;

use crate::users::saved::{self, Edit, EditError, version_of};
use crate::users::{DestinationRequest, User, UsersError, load_text};

use super::Relay;
use super::destination::{DestinationSpec, IdsTaken};
use super::stream::StreamRelay;

/// Why a saved-destinations request was refused. No message quotes a key.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    /// No user by that name.
    #[error("no user `{0}`")]
    NoUser(String),
    /// The edit was based on another version of the file than the current one.
    #[error(
        "the destinations changed since version {expected} (now {current}): \
         read them again and repeat the change"
    )]
    Stale {
        /// The version the caller had.
        expected: String,
        /// The file's version now.
        current: String,
    },
    /// The edit itself was refused.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// The edited file no longer fits beside the other users' (a key or token
    /// clash after a hand edit).
    #[error(transparent)]
    Users(#[from] UsersError),
    /// The file could not be read or written.
    #[error("the user file could not be {doing}: {source}")]
    Io {
        /// `read` or `written`.
        doing: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The blocking file task failed.
    #[error("the edit task failed: {0}")]
    Task(String),
}

/// A saved destination as the API shows it: never its key (the URL is masked).
#[derive(Debug, Clone, Serialize)]
pub struct SavedDestination {
    /// Its id, the same as a live stream's destination started from it.
    pub id: String,
    /// The preset, if any.
    pub preset: Option<String>,
    /// The ingest URL with the stream name masked.
    pub url: String,
    /// The re-encode profile, if any.
    pub profile: Option<String>,
    /// Whether it starts when the user goes live.
    pub enabled: bool,
}

/// A user's saved destinations and the version of their file.
#[derive(Debug, Clone, Serialize)]
pub struct SavedList {
    /// The user.
    pub user: String,
    /// The file's version: send it back as `If-Match` with an edit.
    pub version: String,
    /// The destinations, in file order.
    pub destinations: Vec<SavedDestination>,
}

/// What an edit did.
#[derive(Debug, Clone, Serialize)]
pub struct SavedChange {
    /// The file's new version.
    pub version: String,
    /// The destination as it is now (`None` once removed).
    pub destination: Option<SavedDestination>,
    /// What happened on each of the user's live streams (empty unless asked).
    pub live: Vec<LiveChange>,
}

/// What an edit did to one live stream.
#[derive(Debug, Clone, Serialize)]
pub struct LiveChange {
    /// The live stream's id.
    pub stream_id: String,
    /// What happened to its destination of that id.
    pub result: LiveResult,
}

/// What happened to a live stream's destination after an edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveResult {
    /// It was not there and now pushes.
    Started,
    /// It pushed and was stopped (removed or switched off).
    Stopped,
    /// It pushed and was restarted with the new settings.
    Restarted,
    /// Nothing to do: it already matched.
    Unchanged,
    /// Not started: the stream already pushes to the same place with the same
    /// profile under another id.
    Duplicate,
}

impl Relay {
    /// The saved destinations of `user`, read from their file now (a hand edit
    /// not yet reloaded shows, with the version it has).
    pub async fn saved_destinations(self: &Arc<Self>, user: &str) -> Result<SavedList, SavedError> {
        let relay = Arc::clone(self);
        let user = user.to_owned();
        blocking(move || {
            let tables = relay.tables();
            let known = tables
                .users
                .named(&user)
                .ok_or_else(|| SavedError::NoUser(user.clone()))?;
            let bytes = read(known)?;
            let text = String::from_utf8_lossy(&bytes);
            let current = load_text(&known.file, &text, &tables.presets, &tables.profiles)?;
            Ok(SavedList {
                user: current.name.clone(),
                version: version_of(&bytes),
                destinations: current
                    .destinations
                    .iter()
                    .map(|d| shown(d, &tables.presets))
                    .collect(),
            })
        })
        .await
    }

    /// Makes `edit` to `user`'s file when its version is still `expected` (any
    /// version when `None`), puts the new file in effect for their next publish,
    /// and with `apply_live` changes their live streams to match.
    pub async fn edit_saved(
        self: &Arc<Self>,
        user: &str,
        edit: Edit,
        expected: Option<String>,
        apply_live: bool,
    ) -> Result<SavedChange, SavedError> {
        let relay = Arc::clone(self);
        let name = user.to_owned();
        let (user, id, version) =
            blocking(move || relay.edit_file(&name, &edit, expected.as_deref())).await?;
        let tables = self.tables();
        let destination = user.destination(&id).map(|d| shown(d, &tables.presets));
        let live = if apply_live {
            self.streams()
                .into_iter()
                .filter(|stream| stream.user() == Some(user.name.as_str()))
                .map(|stream| LiveChange {
                    stream_id: stream.id().to_string(),
                    result: self.apply_saved(&stream, &user, &id),
                })
                .collect()
        } else {
            Vec::new()
        };
        tracing::info!(user = %user.name, destination = %id, version, live = live.len(), "saved destinations changed");
        Ok(SavedChange {
            version,
            destination,
            live,
        })
    }

    /// The read-compare-write of one edit, under the edit lock.
    fn edit_file(
        &self,
        name: &str,
        edit: &Edit,
        expected: Option<&str>,
    ) -> Result<(User, String, String), SavedError> {
        let _edits = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        let tables = self.tables();
        let known = tables
            .users
            .named(name)
            .ok_or_else(|| SavedError::NoUser(name.to_owned()))?;
        let bytes = read(known)?;
        let current = version_of(&bytes);
        if let Some(expected) = expected
            && expected != current
        {
            return Err(SavedError::Stale {
                expected: expected.to_owned(),
                current,
            });
        }
        let text = String::from_utf8_lossy(&bytes);
        let (new_text, user, id) =
            saved::apply(&known.file, &text, edit, &tables.presets, &tables.profiles)?;
        let users = tables.users.replaced(user.clone())?;
        saved::write_atomically(&known.file, &new_text).map_err(|source| SavedError::Io {
            doing: "written",
            source,
        })?;
        let mut updated = (*tables).clone();
        updated.users = users;
        *self.tables.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(updated);
        Ok((user, id, version_of(new_text.as_bytes())))
    }

    /// Makes `stream`'s destination `id` what `user`'s saved one now is: started,
    /// restarted with new settings, stopped (removed or switched off), or left.
    fn apply_saved(&self, stream: &Arc<StreamRelay>, user: &User, id: &str) -> LiveResult {
        let tables = self.tables();
        let (running, others): (Vec<DestinationSpec>, Vec<DestinationSpec>) = stream
            .lock()
            .iter()
            .map(|e| e.spec.clone())
            .partition(|spec| spec.id == id);
        let wanted = user
            .destination(id)
            .filter(|d| d.is_enabled())
            .and_then(|d| Some((d, d.target(&tables.presets).ok()?)));
        let spec = match wanted {
            None => None,
            Some((saved, target)) => {
                let taken = IdsTaken {
                    started: &others,
                    reserved: &[],
                };
                let spec = DestinationSpec::new_unique_as(
                    taken,
                    Some(id),
                    saved.preset.as_deref(),
                    target,
                    saved.profile.clone(),
                    &tables.presets,
                );
                match spec {
                    Some(spec) => Some(spec),
                    None => return LiveResult::Duplicate,
                }
            }
        };
        let result = match (running.first(), &spec) {
            (None, None) => return LiveResult::Unchanged,
            (Some(old), Some(new)) if old.target == new.target && old.profile == new.profile => {
                return LiveResult::Unchanged;
            }
            (Some(_), None) => LiveResult::Stopped,
            (Some(_), Some(_)) => LiveResult::Restarted,
            (None, Some(_)) => LiveResult::Started,
        };
        if !running.is_empty() {
            // Gone already (stopped by another request meanwhile) is fine.
            let _ = stream.stop_destination(id);
        }
        if let Some(spec) = spec {
            self.spawn_destination(stream, spec, 0, &tables);
        }
        tracing::info!(stream = %stream.name.masked(), stream_id = %stream.id, destination = id, ?result, "saved destination applied to the live stream");
        result
    }
}

/// How a saved destination is shown: its masked URL, never its key.
fn shown(destination: &DestinationRequest, presets: &crate::presets::Presets) -> SavedDestination {
    SavedDestination {
        id: destination.id.clone().unwrap_or_default(),
        preset: destination.preset.clone(),
        url: destination
            .target(presets)
            .map(|t| t.masked())
            .unwrap_or_else(|e| format!("(not usable: {e})")),
        profile: destination.profile.clone(),
        enabled: destination.is_enabled(),
    }
}

fn read(user: &User) -> Result<Vec<u8>, SavedError> {
    std::fs::read(&user.file).map_err(|source| SavedError::Io {
        doing: "read",
        source,
    })
}

/// Runs file work off the runtime's workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SavedError> + Send + 'static,
) -> Result<T, SavedError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SavedError::Task(e.to_string()))?
}
