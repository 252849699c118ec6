//! What a reload replaces: presets, user files, profiles (and the generated
//! picture for audio-only streams) and the authorization
//! callback, loaded together so that a broken file leaves all of them as they were.

use std::sync::Arc;

use crate::auth::PublishCallback;
use crate::config::Config;
use crate::presets::Presets;
use crate::transcode::{AudioOnlyVideo, Profiles};
use crate::users::Users;

use super::RelayError;

/// What reloads: presets, user files, profiles and the authorization callback.
/// Cloned (the callback shared) when one user file changes through the API.
#[derive(Clone)]
pub(super) struct Tables {
    pub(super) presets: Presets,
    pub(super) users: Users,
    pub(super) profiles: Profiles,
    /// What destinations that need video get on an audio-only stream.
    pub(super) audio_only_video: AudioOnlyVideo,
    pub(super) callback: Option<Arc<PublishCallback>>,
}

impl Tables {
    /// `tls` is outbound TLS's client configuration, which the callback shares.
    pub(super) fn load(config: &Config, tls: &rustls::ClientConfig) -> Result<Self, RelayError> {
        let presets = Presets::load(&config.presets)?;
        let profiles = Profiles::new(&config.profiles);
        let users = match &config.users.dir {
            Some(dir) => Users::load_dir(dir, &presets, &profiles)?,
            None => Users::default(),
        };
        if users.is_empty() {
            tracing::warn!(
                "no users configured: ANY stream key may publish and use the relay; \
                 set [users] dir to restrict publishing"
            );
        } else {
            tracing::info!(users = users.len(), "user files loaded");
        }
        if let Some(admin) = &config.http.token
            && users.any_token_is(admin)
        {
            return Err(RelayError::TokenClash);
        }
        let callback = PublishCallback::new(&config.auth, tls.clone())?.map(Arc::new);
        if let Some(callback) = &callback {
            tracing::info!(
                url = %callback.masked_url(),
                timeout = ?callback.timeout(),
                "every publish is authorized by the callback"
            );
        }
        Ok(Self {
            presets,
            users,
            profiles,
            audio_only_video: config.transcode.audio_only_video.clone(),
            callback,
        })
    }
}

/// What a reload put in effect, for the operator who asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Reloaded {
    /// Presets now known (built-in and configured).
    pub presets: usize,
    /// User files loaded (0: any key may publish).
    pub users: usize,
    /// Re-encode profiles now known (built-in and configured).
    pub profiles: usize,
    /// Whether publishes are authorized by the callback (`[auth] publish_url`).
    pub auth_callback: bool,
}
