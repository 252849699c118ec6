//! What the API may do to a live stream: find it, add, remove and restart its
//! destinations, kick its publisher.

use std::sync::Arc;

use crate::users::{DestinationRequest, validate_destination};

use super::Relay;
use super::destination::{DestinationSpec, IdsTaken};
use super::status::DestinationSnapshot;
use super::stream::StreamRelay;

/// Why a control request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// Nothing by that name.
    #[error("{0}")]
    NotFound(String),
    /// It already exists.
    #[error("{0}")]
    Conflict(String),
    /// A name that more than one live stream has; the request must use an id.
    #[error("{0}")]
    Ambiguous(String),
    /// Too many requests of this kind for now.
    #[error("{message}; retry in {retry_after_secs} s")]
    TooSoon {
        /// What the limit is.
        message: String,
        /// Seconds until one more is taken.
        retry_after_secs: u64,
    },
}

impl Relay {
    /// Every live stream's relay.
    pub fn streams(&self) -> Vec<Arc<StreamRelay>> {
        self.streams.iter().map(|e| Arc::clone(e.value())).collect()
    }

    /// The key of `user`'s live stream in `app`, for a backup publisher that
    /// publishes with another of the user's keys; `None` when the user has no live
    /// stream there, or more than one (then the backup names its stream by key).
    pub fn live_key_of_user(&self, app: &str, user: &str) -> Option<String> {
        let mut keys = self
            .streams
            .iter()
            .filter(|e| e.key().0 == app && e.value().user() == Some(user))
            .map(|e| e.key().1.clone());
        let key = keys.next()?;
        keys.next().is_none().then_some(key)
    }

    /// The relay of the live stream shown as `display_name` (its user's name or its
    /// masked key) in `app`. A display name is not an identity: two keys can share
    /// a mask, and a user with several keys can publish twice. When more than one
    /// live stream has it, this refuses ([`ControlError::Ambiguous`]) rather than
    /// pick one, so that a control request never acts on the wrong stream.
    pub fn find(&self, app: &str, display_name: &str) -> Result<Arc<StreamRelay>, ControlError> {
        self.find_where(app, display_name, |_| true)
    }

    /// As [`Self::find`], among `user`'s live streams only.
    pub fn find_of_user(
        &self,
        app: &str,
        display_name: &str,
        user: &str,
    ) -> Result<Arc<StreamRelay>, ControlError> {
        self.find_where(app, display_name, |s| s.user() == Some(user))
    }

    fn find_where(
        &self,
        app: &str,
        display_name: &str,
        also: impl Fn(&StreamRelay) -> bool,
    ) -> Result<Arc<StreamRelay>, ControlError> {
        let matching: Vec<Arc<StreamRelay>> = self
            .streams
            .iter()
            .filter(|e| {
                let stream = e.value();
                stream.name.app == app && stream.display_name() == display_name && also(stream)
            })
            .map(|e| Arc::clone(e.value()))
            .collect();
        match <[_; 1]>::try_from(matching) {
            Ok([stream]) => Ok(stream),
            Err(matching) if matching.is_empty() => Err(ControlError::NotFound(format!(
                "no live stream {app}/{display_name}"
            ))),
            Err(matching) => Err(ControlError::Ambiguous(format!(
                "{} live streams in {app} are shown as {display_name}: name the one you mean \
                 by its id (the `id` of each stream in GET /api/v1/streams), \
                 e.g. /api/v1/streams/{{id}}",
                matching.len()
            ))),
        }
    }

    /// The relay of the live stream with this id.
    pub fn find_by_id(&self, id: &str) -> Result<Arc<StreamRelay>, ControlError> {
        self.by_id
            .get(id)
            .map(|e| Arc::clone(e.value()))
            .ok_or_else(|| ControlError::NotFound(format!("no live stream with id {id}")))
    }

    /// Adds a destination to a live stream.
    pub fn add_destination(
        &self,
        stream: &Arc<StreamRelay>,
        request: DestinationRequest,
    ) -> Result<DestinationSnapshot, ControlError> {
        let tables = self.tables();
        validate_destination(&request, &tables.presets, &tables.profiles)
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        let target = request
            .target(&tables.presets)
            .map_err(|e| ControlError::Invalid(e.to_string()))?;
        if !request.is_enabled() {
            return Err(ControlError::Invalid(
                "a switched-off destination is not added to a live stream; \
                 save it with /api/v1/users/{user}/destinations instead"
                    .into(),
            ));
        }
        let existing: Vec<DestinationSpec> = stream.lock().iter().map(|e| e.spec.clone()).collect();
        if let Some(id) = &request.id
            && existing.iter().any(|d| &d.id == id)
        {
            return Err(ControlError::Conflict(format!(
                "the stream already has a destination `{id}`"
            )));
        }
        let taken = IdsTaken {
            started: &existing,
            reserved: &[],
        };
        let spec = DestinationSpec::new_unique_as(
            taken,
            request.id.as_deref(),
            request.preset.as_deref(),
            target,
            request.profile,
            &tables.presets,
        )
        .ok_or_else(|| ControlError::Conflict("that destination already exists".into()))?;
        Ok(self.spawn_destination(stream, spec, 0, &tables).snapshot())
    }

    /// Stops a destination with a clean unpublish and forgets it.
    pub fn remove_destination(&self, stream: &StreamRelay, id: &str) -> Result<(), ControlError> {
        stream.stop_destination(id)?;
        tracing::info!(stream = %stream.name.masked(), stream_id = %stream.id, destination = id, "destination removed");
        Ok(())
    }

    /// Reconnects a destination from scratch (clean unpublish, then a new session).
    pub fn restart_destination(
        &self,
        stream: &Arc<StreamRelay>,
        id: &str,
    ) -> Result<(), ControlError> {
        let entry = stream.stop_destination(id)?;
        let reconnects = entry.status.snapshot().reconnects + 1;
        self.spawn_destination(stream, entry.spec, reconnects, &self.tables());
        tracing::info!(stream = %stream.name.masked(), stream_id = %stream.id, destination = id, "destination restarted");
        Ok(())
    }

    /// Disconnects the publisher of a stream; with `ban`, its key may not publish
    /// again for that long (an encoder reconnects on its own within seconds).
    pub fn kick(&self, stream: &StreamRelay, ban: Option<std::time::Duration>) {
        if let Some(period) = ban {
            self.bans.ban(&stream.name.name, period);
        }
        tracing::info!(stream = %stream.name.masked(), stream_id = %stream.id, ?ban, "publisher kicked");
        stream
            .kick
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cancel();
    }
}
