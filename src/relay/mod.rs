//! The relay: when a stream goes live, one supervised outbound session per
//! destination, each isolated from the others and from the publisher.
//!
//! [`Relay::authorize`] decides whether a stream key may publish (and whose it is);
//! [`Relay::start`] resolves the destinations (user file, then query string) and
//! spawns one task per destination in the shutdown tree. The returned
//! [`RelayHandle`] stops them when the publisher leaves.

pub mod backoff;
pub mod destination;
pub mod push;
pub mod status;
pub mod target;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Config;
use crate::hub::Hub;
use crate::mask::Masked;
use crate::presets::{PresetError, Presets};
use crate::rtmp::chunk::DecoderLimits;
use crate::stream_name::StreamName;
use crate::transcode::Profiles;
use crate::transcode::encoder::EncoderContext;
use crate::users::{User, Users, UsersError};
use backoff::BackoffPolicy;
use destination::resolve;
use status::{DestinationSnapshot, DestinationStatus};
use tokio::sync::Semaphore;

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
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Users are configured and the key is none of theirs.
    #[error("unknown stream key")]
    UnknownKey,
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
    /// Re-encode profiles.
    pub profiles: Profiles,
    /// What encoders share (ffmpeg, slots, their output hub).
    pub encoders: Arc<EncoderContext>,
}

/// The relay of every live stream.
pub struct Relay {
    ctx: Arc<RelayContext>,
    presets: Presets,
    users: Users,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Destinations of each live stream, by (app, name), for the status API.
    streams: DashMap<(String, String), Vec<Arc<DestinationStatus>>>,
}

impl Relay {
    /// Loads presets, user files and TLS roots.
    pub fn new(
        config: &Config,
        hub: Arc<Hub>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, RelayError> {
        let presets = Presets::load(&config.presets)?;
        let users = match &config.users.dir {
            Some(dir) => Users::load_dir(dir, &presets, &Profiles::new(&config.profiles))?,
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
        let relay = &config.relay;
        let profiles = Profiles::new(&config.profiles);
        let encoders = Arc::new(EncoderContext {
            hub: Arc::clone(&hub),
            output_hub: Hub::new(config.hub_limits()),
            ffmpeg: config.transcode.ffmpeg.clone(),
            slots: Arc::new(Semaphore::new(config.transcode.max_encoders)),
            stall_timeout: Duration::from_secs(config.transcode.stall_timeout_secs),
            restart_backoff: BackoffPolicy {
                initial: Duration::from_millis(config.transcode.restart_backoff_ms),
                ..BackoffPolicy::default()
            },
        });
        let ctx = RelayContext {
            hub,
            tls: tls::connector(config.tls.ca_file.as_deref())?,
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
            profiles,
            encoders,
        };
        Ok(Self {
            ctx: Arc::new(ctx),
            presets,
            users,
            tracker,
            shutdown,
            streams: DashMap::new(),
        })
    }

    /// Whether `name` may publish, and as which user.
    pub fn authorize(&self, name: &StreamName) -> Result<Option<User>, AuthError> {
        if self.users.is_empty() {
            return Ok(None);
        }
        self.users
            .authenticate(&name.name)
            .cloned()
            .map(Some)
            .ok_or(AuthError::UnknownKey)
    }

    /// Starts the destinations of a stream that just went live.
    pub fn start(self: &Arc<Self>, name: &StreamName, user: Option<&User>) -> RelayHandle {
        let resolution = resolve(&name.query, user, &self.presets, &self.ctx.profiles);
        for problem in &resolution.problems {
            tracing::warn!(stream = %name.masked(), "{problem}");
        }
        let stop = self.shutdown.child_token();
        let ended = CancellationToken::new();
        let mut statuses = Vec::with_capacity(resolution.destinations.len());
        for spec in resolution.destinations {
            let status = Arc::new(DestinationStatus::new(
                spec.id.clone(),
                spec.preset.clone(),
                spec.target.masked(),
                spec.profile.clone(),
            ));
            statuses.push(Arc::clone(&status));
            // A root span: the destination outlives nothing of the publisher's
            // connection but its stream, and its logs must not read as the publisher's.
            let span = tracing::info_span!(
                parent: None,
                "push",
                stream = %name.masked(),
                destination = %spec.id,
                url = %spec.target.masked(),
            );
            tracing::info!(parent: &span, "starting destination");
            self.tracker.spawn(
                push::run(
                    Arc::clone(&self.ctx),
                    name.app.clone(),
                    name.name.clone(),
                    spec,
                    status,
                    stop.clone(),
                    ended.clone(),
                )
                .instrument(span),
            );
        }
        let key = (name.app.clone(), name.name.clone());
        self.streams.insert(key.clone(), statuses);
        RelayHandle {
            relay: Arc::clone(self),
            key,
            ended,
        }
    }

    /// The destinations of a live stream.
    pub fn destinations(&self, app: &str, name: &str) -> Vec<DestinationSnapshot> {
        self.streams
            .get(&(app.to_owned(), name.to_owned()))
            .map(|list| list.iter().map(|s| s.snapshot()).collect())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("presets", &self.presets.ids().collect::<Vec<_>>())
            .field("users", &self.users.len())
            .field("live_streams", &self.streams.len())
            .finish()
    }
}

/// Stops a stream's destinations when dropped (the publisher left).
pub struct RelayHandle {
    relay: Arc<Relay>,
    key: (String, String),
    ended: CancellationToken,
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelayHandle({}/{})", self.key.0, Masked(&self.key.1))
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        // The hub already ended the destinations' queues (the publisher handle is
        // dropped first), so live ones drain and unpublish; this ends the ones that
        // are connecting or waiting to retry.
        self.ended.cancel();
        self.relay.streams.remove(&self.key);
    }
}
