//! Whether a stream key may publish, and as whom: the user files first, then the
//! authorization callback when one is configured.

use std::net::IpAddr;

use crate::auth::{CallbackError, PublishRequest};
use crate::stream_name::StreamName;
use crate::users::{DestinationRequest, User};

use super::Relay;

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Users are configured and the key is none of theirs.
    #[error("unknown stream key")]
    UnknownKey,
    /// The operator disabled this key for a while (a kick with a ban).
    #[error("stream key disabled by the operator for now")]
    Banned,
    /// The authorization callback refused it or could not be asked.
    #[error(transparent)]
    Callback(#[from] CallbackError),
}

impl AuthError {
    /// The onStatus code the encoder gets. OBS (librtmp) and ffmpeg end the publish
    /// on either; prism's own relay client takes both as "do not retry soon".
    pub fn status_code(&self) -> &'static str {
        match self {
            Self::UnknownKey | Self::Banned => "NetStream.Publish.BadName",
            Self::Callback(_) => "NetStream.Publish.Denied",
        }
    }

    /// The onStatus description the encoder gets: no detail of prism's setup.
    pub fn peer_description(&self) -> &'static str {
        match self {
            Self::UnknownKey => "unknown stream key",
            Self::Banned => "this stream key is disabled for now",
            Self::Callback(err) => err.peer_description(),
        }
    }
}

/// A publish that may go ahead: whose it is, and the destinations the
/// authorization callback's answer adds.
#[derive(Debug, Default)]
pub struct Grant {
    /// The user whose key it is, when users are configured.
    pub user: Option<User>,
    /// Destinations from the callback's answer.
    pub destinations: Vec<DestinationRequest>,
}

impl Relay {
    /// The name of the user whose stream key `key` is, when users are configured
    /// and it is one of theirs.
    pub fn user_of_key(&self, key: &str) -> Option<String> {
        self.tables()
            .users
            .authenticate(key)
            .map(|u| u.name.clone())
    }

    /// The SRT passphrase of the user whose key `key` is, if they set one.
    pub fn srt_passphrase_of_key(&self, key: &str) -> Option<String> {
        self.tables()
            .users
            .authenticate(key)
            .and_then(|u| u.srt_passphrase.clone())
    }

    /// Whether users are configured (then only their keys may publish).
    pub fn has_users(&self) -> bool {
        !self.tables().users.is_empty()
    }

    /// Whether `name`, published from `addr`, may go live, as which user and with
    /// which extra destinations. The user files decide first (an unknown key is
    /// refused without asking anyone); then the callback, when configured, must
    /// allow it too. The callback is awaited here, on the caller's task, bounded by
    /// its timeout.
    pub async fn authorize(&self, name: &StreamName, addr: IpAddr) -> Result<Grant, AuthError> {
        if self.bans.is_banned(&name.name) {
            return Err(AuthError::Banned);
        }
        let tables = self.tables();
        let user = if tables.users.is_empty() {
            None
        } else {
            let user = tables.users.authenticate(&name.name).cloned();
            Some(user.ok_or(AuthError::UnknownKey)?)
        };
        let destinations = match &tables.callback {
            Some(callback) => {
                let request = PublishRequest::new(name, addr, user.as_ref().map(|u| &*u.name));
                let destinations = callback
                    .authorize(&request, &tables.presets, &tables.profiles)
                    .await?;
                tracing::info!(
                    stream = %name.masked(),
                    destinations = destinations.len(),
                    "publish allowed by the authorization callback"
                );
                destinations
            }
            None => Vec::new(),
        };
        Ok(Grant { user, destinations })
    }
}
