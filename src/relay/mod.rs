//! The relay: when a stream goes live, one supervised outbound session per
//! destination, each isolated from the others and from the publisher.
//!
//! [`Relay::authorize`] decides whether a stream key may publish (and whose it is),
//! asking the authorization callback when one is configured; [`Relay::start`]
//! resolves the destinations (user file, callback answer, then query string) and
//! spawns one task per destination in the shutdown tree. The returned
//! [`RelayHandle`] stops them when the publisher leaves.

pub mod destination;
pub mod push;
pub mod status;
pub mod tls;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::auth::{CallbackError, PublishCallback, PublishRequest, SetupError};
use crate::backoff::BackoffPolicy;
use crate::config::Config;
use crate::hub::{AudioInfo, Hub, VideoInfo};
use crate::mask::Masked;
use crate::presets::{PresetError, Presets};
use crate::rtmp::chunk::DecoderLimits;
use crate::stream_name::StreamName;
use crate::transcode::Profiles;
use crate::transcode::encoder::EncoderContext;
use crate::users::{DestinationRequest, User, Users, UsersError, validate_destination};
use destination::{DestinationSpec, resolve};
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
    /// The authorization callback could not be set up.
    #[error(transparent)]
    Auth(#[from] SetupError),
}

/// What reloads: presets, user files, profiles and the authorization callback.
struct Tables {
    presets: Presets,
    users: Users,
    profiles: Profiles,
    callback: Option<PublishCallback>,
}

impl Tables {
    /// `tls` is outbound TLS's client configuration, which the callback shares.
    fn load(config: &Config, tls: &rustls::ClientConfig) -> Result<Self, RelayError> {
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
        let callback = PublishCallback::new(&config.auth, tls.clone())?;
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

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Users are configured and the key is none of theirs.
    #[error("unknown stream key")]
    UnknownKey,
    /// The authorization callback refused it or could not be asked.
    #[error(transparent)]
    Callback(#[from] CallbackError),
}

impl AuthError {
    /// The onStatus code the encoder gets. OBS (librtmp) and ffmpeg end the publish
    /// on either; prism's own relay client takes both as "do not retry soon".
    pub fn status_code(&self) -> &'static str {
        match self {
            Self::UnknownKey => "NetStream.Publish.BadName",
            Self::Callback(_) => "NetStream.Publish.Denied",
        }
    }

    /// The onStatus description the encoder gets: no detail of prism's setup.
    pub fn peer_description(&self) -> &'static str {
        match self {
            Self::UnknownKey => "unknown stream key",
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
}

/// The relay of every live stream.
pub struct Relay {
    ctx: Arc<RelayContext>,
    /// Presets, users, profiles and the callback; replaced whole on reload.
    tables: RwLock<Arc<Tables>>,
    /// Outbound TLS's client configuration, kept for the callback on reload.
    tls: rustls::ClientConfig,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// The relay of each live stream, by (app, name), for status and control.
    streams: DashMap<(String, String), Arc<StreamRelay>>,
    /// The same relays by their random id, which the API and metrics use: a
    /// masked key can collide, an id cannot.
    by_id: DashMap<StreamId, Arc<StreamRelay>>,
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
        });
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
            encoders,
        };
        Ok(Self {
            ctx: Arc::new(ctx),
            tables: RwLock::new(Arc::new(tables)),
            tls,
            tracker,
            shutdown,
            streams: DashMap::new(),
            by_id: DashMap::new(),
        })
    }

    fn tables(&self) -> Arc<Tables> {
        Arc::clone(&self.tables.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reloads presets, user files, profiles and the authorization callback from
    /// `config`. New streams use them; live streams keep their destinations. On
    /// error the old ones stay.
    pub fn reload(&self, config: &Config) -> Result<Reloaded, RelayError> {
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

    /// Whether `name`, published from `addr`, may go live, as which user and with
    /// which extra destinations. The user files decide first (an unknown key is
    /// refused without asking anyone); then the callback, when configured, must
    /// allow it too. The callback is awaited here, on the caller's task, bounded by
    /// its timeout.
    pub async fn authorize(&self, name: &StreamName, addr: IpAddr) -> Result<Grant, AuthError> {
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

    /// Starts the destinations of a stream that just went live, as `grant` allows.
    /// `kick` is cancelled when an operator kicks the publisher.
    pub fn start(
        self: &Arc<Self>,
        name: &StreamName,
        grant: &Grant,
        kick: CancellationToken,
    ) -> RelayHandle {
        let user = grant.user.as_ref();
        let key = (name.app.clone(), name.name.clone());
        if let Some(stream) = self.streams.get(&key).map(|e| Arc::clone(e.value()))
            && stream.orphaned.swap(false, Ordering::AcqRel)
        {
            // The publisher came back within its grace period: its destinations
            // stayed connected and carry on with the new connection's packets.
            tracing::info!(stream = %name.masked(), "publisher back within its grace period; destinations continue");
            let generation = stream.generation.fetch_add(1, Ordering::AcqRel) + 1;
            *stream.kick.lock().unwrap_or_else(|p| p.into_inner()) = kick;
            return RelayHandle {
                relay: Arc::clone(self),
                key,
                stream,
                generation,
            };
        }
        let tables = self.tables();
        let resolution = resolve(
            &name.query,
            user,
            &grant.destinations,
            &tables.presets,
            &tables.profiles,
        );
        // One line per publish, however much was wrong with it: the problems are
        // already summarised (unknown parameters counted, not listed).
        if !resolution.problems.is_empty() {
            tracing::warn!(
                stream = %name.masked(),
                "destinations: {}",
                resolution.problems.join("; ")
            );
        }
        let stream = self.register(|id| StreamRelay {
            id,
            name: name.clone(),
            user: user.map(|u| u.name.clone()),
            stop: self.shutdown.child_token(),
            ended: CancellationToken::new(),
            kick: Mutex::new(kick),
            generation: AtomicU64::new(0),
            orphaned: AtomicBool::new(false),
            problems: resolution.problems_shown(),
            destinations: Mutex::new(Vec::new()),
        });
        for spec in resolution.destinations {
            self.spawn_destination(&stream, spec, 0, &tables);
        }
        self.streams.insert(key.clone(), Arc::clone(&stream));
        RelayHandle {
            relay: Arc::clone(self),
            key,
            stream,
            generation: 0,
        }
    }

    /// Creates a stream's relay under a fresh id and indexes it by that id. The
    /// id is drawn again in the (2^-128) event that a live stream has it, so ids
    /// are unique among live streams by construction, not only by probability.
    fn register(&self, make: impl FnOnce(StreamId) -> StreamRelay) -> Arc<StreamRelay> {
        let mut rng = rand::rng();
        loop {
            let id = StreamId::random(&mut rng);
            if let dashmap::mapref::entry::Entry::Vacant(slot) = self.by_id.entry(id.clone()) {
                let stream = Arc::new(make(id));
                slot.insert(Arc::clone(&stream));
                return stream;
            }
        }
    }

    fn spawn_destination(
        &self,
        stream: &Arc<StreamRelay>,
        spec: DestinationSpec,
        reconnects: u64,
        tables: &Tables,
    ) -> Arc<DestinationStatus> {
        let profile_args = spec
            .profile
            .as_deref()
            .and_then(|name| tables.profiles.get(name))
            .map(|profile| profile.args.clone());
        let status = Arc::new(DestinationStatus::new(
            spec.id.clone(),
            spec.preset.clone(),
            spec.target.masked(),
            spec.profile.clone(),
        ));
        for _ in 0..reconnects {
            status.count_reconnect();
        }
        let name = &stream.name;
        // A root span: the destination's logs must not read as the publisher's.
        let span = tracing::info_span!(
            parent: None,
            "push",
            stream = %name.masked(),
            stream_id = %stream.id,
            destination = %spec.id,
            url = %spec.target.masked(),
        );
        tracing::info!(parent: &span, "starting destination");
        let stop = stream.stop.child_token();
        stream.lock().push(DestinationEntry {
            spec: spec.clone(),
            status: Arc::clone(&status),
            stop: stop.clone(),
        });
        self.tracker.spawn(
            push::run(
                Arc::clone(&self.ctx),
                name.app.clone(),
                name.name.clone(),
                spec,
                profile_args,
                Arc::clone(&status),
                stop,
                stream.ended.clone(),
            )
            .instrument(span),
        );
        status
    }

    /// The destinations of a live stream, by app and stream key.
    pub fn destinations(&self, app: &str, name: &str) -> Vec<DestinationSnapshot> {
        self.streams
            .get(&(app.to_owned(), name.to_owned()))
            .map(|stream| stream.snapshots())
            .unwrap_or_default()
    }

    /// Every live stream's relay.
    pub fn streams(&self) -> Vec<Arc<StreamRelay>> {
        self.streams.iter().map(|e| Arc::clone(e.value())).collect()
    }

    /// The relay of the live stream shown as `display_name` (its user's name or its
    /// masked key) in `app`. A display name is not an identity: two keys can share
    /// a mask, and a user with several keys can publish twice. When more than one
    /// live stream has it, this refuses ([`ControlError::Ambiguous`]) rather than
    /// pick one, so that a control request never acts on the wrong stream.
    pub fn find(&self, app: &str, display_name: &str) -> Result<Arc<StreamRelay>, ControlError> {
        let matching: Vec<Arc<StreamRelay>> = self
            .streams
            .iter()
            .filter(|e| e.value().name.app == app && e.value().display_name() == display_name)
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
        let preset = request.preset.as_deref();
        let existing: Vec<DestinationSpec> = stream.lock().iter().map(|e| e.spec.clone()).collect();
        let spec = DestinationSpec::new_unique(
            &existing,
            preset,
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

    /// Disconnects the publisher of a stream.
    pub fn kick(&self, stream: &StreamRelay) {
        tracing::info!(stream = %stream.name.masked(), stream_id = %stream.id, "publisher kicked");
        stream
            .kick
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cancel();
    }

    /// What the status API shows as the stream's warnings: the problems of its
    /// publish (destinations refused, parameters ignored), then the platform
    /// constraints the stream breaks, per passthrough destination (known once
    /// the publisher's `video` and `audio` are).
    pub fn warnings(
        &self,
        stream: &StreamRelay,
        video: Option<&VideoInfo>,
        audio: Option<&AudioInfo>,
    ) -> Vec<String> {
        let list = stream.lock();
        let mut warnings = stream.problems.clone();
        for entry in list.iter().filter(|e| e.spec.profile.is_none()) {
            let c = &entry.spec.constraints;
            let id = &entry.spec.id;
            if let Some(codec) = video.and_then(|v| v.codec.as_deref())
                && !c.video_codecs.is_empty()
                && !c.video_codecs.iter().any(|ok| ok == codec)
            {
                warnings.push(format!(
                    "{id}: video codec {codec} is not accepted ({}); add a profile such as h264",
                    c.video_codecs.join(", ")
                ));
            }
            if let Some(codec) = audio.and_then(|a| a.codec.as_deref())
                && !c.audio_codecs.is_empty()
                && !c.audio_codecs.iter().any(|ok| ok == codec)
            {
                warnings.push(format!(
                    "{id}: audio codec {codec} is not accepted ({})",
                    c.audio_codecs.join(", ")
                ));
            }
            if let (Some(interval), Some(max)) = (
                video.and_then(|v| v.keyframe_interval_secs),
                c.keyframe_interval_max_secs,
            ) && interval > max + 0.1
            {
                warnings.push(format!(
                    "{id}: keyframe interval {interval:.1} s is over the platform's {max} s"
                ));
            }
        }
        warnings
    }

    /// Encoders running now.
    pub fn encoders_running(&self) -> usize {
        self.ctx.encoders.max_encoders - self.ctx.encoders.slots.available_permits()
    }
}

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
}

/// One destination of a live stream, with what it takes to stop it.
struct DestinationEntry {
    spec: DestinationSpec,
    status: Arc<DestinationStatus>,
    stop: CancellationToken,
}

/// A live stream's identity in the API and metrics: 128 bits from a CSPRNG,
/// as 32 lowercase hex digits. Unlike the masked key it is neither derived from
/// the key nor short enough to collide, and it lives as long as the stream's relay
/// (so a publisher that comes back within its grace period keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamId(String);

impl StreamId {
    /// A fresh id from `rng`, which must be cryptographically secure: an id must
    /// not be predictable from the ids seen before it.
    pub fn random<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for StreamId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The relay side of one live stream.
pub struct StreamRelay {
    /// Its id in the API and metrics.
    id: StreamId,
    name: StreamName,
    user: Option<String>,
    stop: CancellationToken,
    ended: CancellationToken,
    /// Cancels the current publisher's connection.
    kick: Mutex<CancellationToken>,
    /// Bumped when a returning publisher adopts the stream, so that the old
    /// publisher's handle no longer owns it.
    generation: AtomicU64,
    /// The publisher dropped and its grace period runs.
    orphaned: AtomicBool,
    /// What was wrong with the publish's destinations (refused keys, unknown
    /// parameters...), key-free and bounded: shown for as long as the stream
    /// lives, since the log line alone is easily missed.
    problems: Vec<String>,
    destinations: Mutex<Vec<DestinationEntry>>,
}

impl StreamRelay {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<DestinationEntry>> {
        self.destinations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stream's id: what the API and metrics identify it by.
    pub fn id(&self) -> &StreamId {
        &self.id
    }

    /// The app.
    pub fn app(&self) -> &str {
        &self.name.app
    }

    /// The stream key. Secret: for looking the stream up in the hub, never for display.
    pub fn key(&self) -> &str {
        &self.name.name
    }

    /// The user who publishes, if users are configured.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// What status shows as the stream's name: its user's name, or its masked key.
    pub fn display_name(&self) -> String {
        match &self.user {
            Some(user) => user.clone(),
            None => crate::mask::Masked(&self.name.name).to_string(),
        }
    }

    /// Takes destination `id` out of the stream and stops it (clean unpublish).
    fn stop_destination(&self, id: &str) -> Result<DestinationEntry, ControlError> {
        let entry = {
            let mut list = self.lock();
            let index = list
                .iter()
                .position(|e| e.spec.id == id)
                .ok_or_else(|| ControlError::NotFound(format!("no destination `{id}`")))?;
            list.remove(index)
        };
        entry.stop.cancel();
        Ok(entry)
    }

    /// Every destination's status.
    pub fn snapshots(&self) -> Vec<DestinationSnapshot> {
        self.lock().iter().map(|e| e.status.snapshot()).collect()
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

/// Stops a stream's destinations when dropped (the publisher left).
pub struct RelayHandle {
    relay: Arc<Relay>,
    key: (String, String),
    stream: Arc<StreamRelay>,
    generation: u64,
}

impl RelayHandle {
    /// The id of the stream this handle keeps relaying.
    pub fn stream_id(&self) -> &StreamId {
        self.stream.id()
    }

    /// The publisher dropped: keep the destinations for a returning publisher to
    /// adopt. Dropping the handle afterwards ends them unless one did.
    pub fn orphan(&self) {
        if self.stream.generation.load(Ordering::Acquire) == self.generation {
            self.stream.orphaned.store(true, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RelayHandle({}/{} {})",
            self.key.0,
            Masked(&self.key.1),
            self.stream.id
        )
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if self.stream.generation.load(Ordering::Acquire) != self.generation {
            // A returning publisher adopted the stream.
            return;
        }
        self.stream.orphaned.store(false, Ordering::Release);
        // The hub already ended the destinations' queues (the publisher handle is
        // dropped first), so live ones drain and unpublish; this ends the ones that
        // are connecting or waiting to retry.
        self.stream.ended.cancel();
        self.relay
            .streams
            .remove_if(&self.key, |_, current| Arc::ptr_eq(current, &self.stream));
        self.relay.by_id.remove_if(self.stream.id(), |_, current| {
            Arc::ptr_eq(current, &self.stream)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two stream keys with the same mask (`****` plus a 16-bit fingerprint):
    /// the collision the issue reported, found offline by brute force.
    const VICTIM: &str = "VICTIM-key-8842";
    const EVIL: &str = "evil46109";

    fn relay() -> Arc<Relay> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = Config::defaults();
        let hub = Hub::new(config.hub_limits());
        Arc::new(
            Relay::new(&config, hub, TaskTracker::new(), CancellationToken::new())
                .expect("the default relay starts"),
        )
    }

    fn go_live(relay: &Arc<Relay>, key: &str) -> (RelayHandle, CancellationToken) {
        let name = StreamName::parse("live", "", key).expect("a valid name");
        let kick = CancellationToken::new();
        (relay.start(&name, &Grant::default(), kick.clone()), kick)
    }

    #[test]
    fn stream_ids_are_128_random_bits_in_hex() {
        let mut rng = rand::rng();
        let a = StreamId::random(&mut rng);
        let b = StreamId::random(&mut rng);
        assert_eq!(a.as_str().len(), 32);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn colliding_masks_are_refused_by_name_and_told_apart_by_id() {
        assert_eq!(
            Masked(VICTIM).to_string(),
            Masked(EVIL).to_string(),
            "the two keys share a mask"
        );
        let relay = relay();
        let (victim, victim_kick) = go_live(&relay, VICTIM);
        let shown = Masked(VICTIM).to_string();
        let found = relay.find("live", &shown).expect("one stream: found");
        assert_eq!(found.id(), victim.stream_id());

        let (evil, evil_kick) = go_live(&relay, EVIL);
        assert_ne!(victim.stream_id(), evil.stream_id());
        match relay.find("live", &shown) {
            Err(ControlError::Ambiguous(message)) => {
                assert!(message.contains("id"), "{message}");
                assert!(!message.contains(VICTIM) && !message.contains(EVIL));
            }
            Err(other) => panic!("expected ambiguous, got {other}"),
            Ok(_) => panic!("expected ambiguous, got a stream"),
        }
        for (handle, key) in [(&victim, VICTIM), (&evil, EVIL)] {
            let stream = relay.find_by_id(handle.stream_id().as_str()).unwrap();
            assert_eq!(stream.key(), key, "the id names exactly one stream");
        }

        // Kicking by id cancels exactly that publisher.
        relay.kick(&relay.find_by_id(evil.stream_id().as_str()).unwrap());
        assert!(evil_kick.is_cancelled());
        assert!(!victim_kick.is_cancelled());

        // Once the other has gone, the name is unambiguous again; its id is gone.
        let evil_id = evil.stream_id().clone();
        drop(evil);
        assert!(matches!(
            relay.find_by_id(evil_id.as_str()),
            Err(ControlError::NotFound(_))
        ));
        assert_eq!(relay.find("live", &shown).unwrap().key(), VICTIM);
        drop(victim);
        assert!(matches!(
            relay.find("live", &shown),
            Err(ControlError::NotFound(_))
        ));
    }

    #[test]
    fn a_publishs_refused_destinations_stay_in_its_warnings_while_it_lives() {
        let relay = relay();
        let name = StreamName::parse(
            "live",
            "",
            "warn-key?youtube=yt-secret%0A&twitch=..%2Ftw-secret&colour=blue",
        )
        .expect("a valid name");
        let handle = relay.start(&name, &Grant::default(), CancellationToken::new());
        let stream = relay.find_by_id(handle.stream_id().as_str()).unwrap();
        assert!(stream.snapshots().is_empty(), "no destination started");
        let warnings = relay.warnings(&stream, None, None);
        assert_eq!(
            warnings,
            [
                "ignored 1 unknown query parameter (`colour`)",
                "youtube: the key contains a control character (such as a newline or NUL); \
                 destination not started",
                "twitch: the key contains a path separator ('/' or '\\'); destination not started",
            ]
        );
        // Still there on the next look, and while the publisher's grace period runs.
        handle.orphan();
        assert_eq!(relay.warnings(&stream, None, None), warnings);
        drop(handle);
        assert!(relay.find_by_id(stream.id().as_str()).is_err());
    }

    #[test]
    fn a_publisher_back_within_its_grace_period_keeps_the_stream_id() {
        let relay = relay();
        let (first, _) = go_live(&relay, "grace-key");
        let id = first.stream_id().clone();
        first.orphan();
        let (second, _) = go_live(&relay, "grace-key");
        assert_eq!(second.stream_id(), &id, "the same stream, the same id");
        drop(first);
        assert!(relay.find_by_id(id.as_str()).is_ok(), "still live");
        drop(second);
        assert!(relay.find_by_id(id.as_str()).is_err());
    }
}
