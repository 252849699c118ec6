//! The relay: when a stream goes live, one supervised outbound session per
//! destination, each isolated from the others and from the publisher.
//!
//! [`Relay::authorize`] decides whether a stream key may publish (and whose it is),
//! asking the authorization callback when one is configured; [`Relay::start`]
//! resolves the destinations (user file, callback answer, then query string) and
//! spawns one task per destination in the shutdown tree. The returned
//! [`RelayHandle`] stops them when the publisher leaves.
//!
//! One file per concern: [`tables`] (what a reload replaces), [`authorize`],
//! [`supervise`] (starting a stream's destinations), [`control`] (the API's
//! operations on a live stream), [`warnings`], [`stream`] (a live stream's relay and
//! the publisher's handle on it), [`grace`] (keeping the destinations for a
//! publisher that dropped and comes back); [`push`] runs one destination,
//! [`destination`] resolves which destinations a publish starts.

pub mod authorize;
pub mod bans;
pub mod control;
pub mod cue;
pub mod destination;
pub mod grace;
pub mod playback;
pub mod push;
pub mod saved;
pub mod status;
pub mod stream;
pub mod supervise;
pub mod tables;
pub mod tls;
pub mod warnings;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::SetupError;
use crate::backoff::BackoffPolicy;
use crate::config::Config;
use crate::hub::Hub;
use crate::presets::PresetError;
use crate::record::RecordContext;
use crate::record::upload::{UploadSetupError, Uploader, UploadsSnapshot};
use crate::rtmp::chunk::DecoderLimits;
use crate::transcode::encoder::EncoderContext;
use crate::users::UsersError;
pub use authorize::{AuthError, Grant};
pub use control::ControlError;
pub use playback::Playback;
pub use stream::{RelayHandle, StreamId, StreamRelay};
pub use tables::Reloaded;
use tables::Tables;

/// Why the relay could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A preset is invalid.
    #[error(transparent)]
    Preset(#[from] PresetError),
    /// The user files are invalid.
    #[error(transparent)]
    Users(#[from] UsersError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The authorization callback could not be set up.
    #[error(transparent)]
    Auth(#[from] SetupError),
    /// The recordings' uploader could not be set up.
    #[error(transparent)]
    Upload(#[from] UploadSetupError),
    /// A user's API token is the admin token, which would make that user an admin.
    #[error("a user file's api_token is the admin token ([http] token): give each its own")]
    TokenClash,
}

/// What every destination task shares.
pub struct RelayContext {
    /// The stream registry (destinations subscribe like players).
    pub hub: Arc<Hub>,
    /// TLS client setup for rtmps://.
    pub tls: TlsConnector,
    /// Reconnect delays.
    pub backoff: BackoffPolicy,
    /// A connection live this long resets the backoff.
    pub backoff_reset_after: Duration,
    /// Retry delay after a refusal (bad key).
    pub failed_retry: Duration,
    /// Connect + handshake + publish deadline.
    pub connect_timeout: Duration,
    /// How long an ingest may stop reading before the connection is dropped.
    pub stall_timeout: Duration,
    /// Outgoing chunk size.
    pub chunk_size: u32,
    /// Inbound bounds for what ingests send back.
    pub limits: DecoderLimits,
    /// The flashVer sent in connect.
    pub flash_ver: String,
    /// What encoders share (ffmpeg, slots, their output hub).
    pub encoders: Arc<EncoderContext>,
    /// The encoders destinations share, one per profile per stream.
    pub shared_encoders: Arc<crate::transcode::shared::SharedEncoders>,
    /// What recorders share (`[record]`).
    pub record: RecordContext,
    /// The shutdown tree's tracker: every destination task, and every task one starts
    /// (a re-encoded destination's encoder), runs on it, so that prism's shutdown
    /// waits for all of them.
    pub tracker: TaskTracker,
}

/// What a relay has loaded ([`Relay::inventory`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// Preset ids, built-in and configured.
    pub presets: Vec<String>,
    /// User files loaded.
    pub users: usize,
    /// Profile names, comma-separated.
    pub profiles: String,
}

/// The relay of every live stream.
pub struct Relay {
    ctx: Arc<RelayContext>,
    /// Presets, users, profiles and the callback; replaced whole on reload.
    tables: RwLock<Arc<Tables>>,
    /// Outbound TLS's client configuration, kept for the callback on reload.
    tls: rustls::ClientConfig,
    shutdown: CancellationToken,
    /// The relay of each live stream, by (app, name), for status and control.
    streams: DashMap<(String, String), Arc<StreamRelay>>,
    /// The same relays by their random id, which the API and metrics use: a
    /// masked key can collide, an id cannot.
    by_id: DashMap<StreamId, Arc<StreamRelay>>,
    /// Keys the operator disabled for a while (a kick with a ban).
    bans: bans::Bans,
    /// Held by an edit of a user file ([`saved`]) and by a reload, so that a
    /// reload cannot put back a user table read before an edit landed.
    edits: Mutex<()>,
}

impl Relay {
    /// Loads presets, user files and TLS roots.
    pub fn new(
        config: &Config,
        hub: Arc<Hub>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, RelayError> {
        let tls = tls::client_config(config.tls.ca_file.as_deref())?;
        let tables = Tables::load(config, &tls)?;
        let relay = &config.relay;
        let encoders = Arc::new(EncoderContext {
            hub: Arc::clone(&hub),
            output_hub: Hub::new(config.hub_limits()),
            ffmpeg: config.transcode.ffmpeg.clone(),
            slots: Arc::new(Semaphore::new(config.transcode.max_encoders)),
            max_encoders: config.transcode.max_encoders,
            stall_timeout: Duration::from_secs(config.transcode.stall_timeout_secs),
            restart_backoff: BackoffPolicy {
                initial: Duration::from_millis(config.transcode.restart_backoff_ms),
                ..BackoffPolicy::default()
            },
            outputs: AtomicU64::new(0),
        });
        let uploader = match &config.record.upload {
            Some(upload) => {
                let uploader = Arc::new(Uploader::new(upload, tls.clone(), &config.record.dir)?);
                uploader.spawn(&tracker, shutdown.clone());
                Some(uploader)
            }
            None => None,
        };
        let record = RecordContext {
            hub: Arc::clone(&hub),
            tracker: tracker.clone(),
            config: config.record.clone(),
            uploader,
        };
        let ctx = RelayContext {
            hub,
            tls: TlsConnector::from(Arc::new(tls.clone())),
            backoff: BackoffPolicy {
                initial: Duration::from_millis(relay.backoff_initial_ms),
                max: Duration::from_secs(relay.backoff_max_secs),
                ..BackoffPolicy::default()
            },
            backoff_reset_after: Duration::from_secs(relay.backoff_reset_after_secs),
            failed_retry: Duration::from_secs(relay.failed_retry_secs),
            connect_timeout: Duration::from_secs(relay.connect_timeout_secs),
            stall_timeout: Duration::from_secs(relay.stall_timeout_secs),
            chunk_size: relay.chunk_size,
            limits: config.decoder_limits(),
            flash_ver: "FMLE/3.0 (compatible; prism)".to_owned(),
            shared_encoders: Arc::new(crate::transcode::shared::SharedEncoders::new(Arc::clone(
                &encoders,
            ))),
            encoders,
            record,
            tracker,
        };
        Ok(Self {
            ctx: Arc::new(ctx),
            tables: RwLock::new(Arc::new(tables)),
            tls,
            shutdown,
            streams: DashMap::new(),
            by_id: DashMap::new(),
            bans: bans::Bans::default(),
            edits: Mutex::new(()),
        })
    }

    fn tables(&self) -> Arc<Tables> {
        Arc::clone(&self.tables.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reloads presets, user files, profiles and the authorization callback from
    /// `config`. New streams use them; live streams keep their destinations. On
    /// error the old ones stay.
    pub fn reload(&self, config: &Config) -> Result<Reloaded, RelayError> {
        let _edits = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        let tables = Tables::load(config, &self.tls)?;
        let reloaded = Reloaded {
            presets: tables.presets.ids().count(),
            users: tables.users.len(),
            profiles: tables.profiles.len(),
            auth_callback: tables.callback.is_some(),
        };
        *self.tables.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tables);
        tracing::info!(
            presets = reloaded.presets,
            users = reloaded.users,
            profiles = reloaded.profiles,
            auth_callback = reloaded.auth_callback,
            "presets, users, profiles and the authorization callback reloaded"
        );
        Ok(reloaded)
    }

    /// What the relay loaded, for `serve`'s startup log: preset ids, the number
    /// of user files (never their keys) and profile names.
    pub fn inventory(&self) -> Inventory {
        let tables = self.tables();
        Inventory {
            presets: tables.presets.ids().map(str::to_owned).collect(),
            users: tables.users.len(),
            profiles: tables.profiles.names(),
        }
    }

    /// The name of the user whose API token `token` is.
    pub fn user_by_token(&self, token: &str) -> Option<String> {
        self.tables().users.by_token(token).map(|u| u.name.clone())
    }

    /// Whether `user`'s HLS needs no token, when their file says.
    pub fn user_hls_public(&self, user: &str) -> Option<bool> {
        self.tables().users.named(user).and_then(|u| u.hls.public)
    }

    /// Every user's name.
    pub fn user_names(&self) -> Vec<String> {
        self.tables().users.names().map(str::to_owned).collect()
    }

    /// The recordings' uploads, when `[record.upload]` is set.
    pub fn uploads(&self) -> Option<UploadsSnapshot> {
        self.ctx.record.uploader.as_ref().map(|u| u.snapshot())
    }

    /// The stream's shared encoders, which the HLS ladder leases from too (one
    /// encode per profile per stream, whoever asks).
    pub fn shared_encoders(&self) -> &Arc<crate::transcode::shared::SharedEncoders> {
        &self.ctx.shared_encoders
    }

    /// Encoders (ffmpeg processes) running now.
    pub fn encoders_running(&self) -> usize {
        self.ctx.encoders.max_encoders - self.ctx.encoders.slots.available_permits()
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("users", &self.tables().users.len())
            .field("live_streams", &self.streams.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
