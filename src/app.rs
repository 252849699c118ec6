//! The running application: listeners, the hub and the shutdown tree.
//!
//! Used by `prism serve` and by the integration tests, which run the real server
//! in-process on port 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::drain::DrainEnd;
use crate::cluster::{Cluster, Drain};
use crate::config::Config;
use crate::error::Error;
use crate::http::{self, HttpState};
use crate::hub::Hub;
use crate::relay::Relay;
use crate::reload::{ConfigSource, ReloadError, ReloadReport, Reloader};
use crate::rtmp::chunk::PendingBudget;
use crate::rtmp::server::ServerConfig;
use crate::server::per_ip::PerIpLimit;
use crate::server::standby::Standby;
use crate::server::waiting::WaitingPlayers;
use crate::server::{ConnectionContext, ConnectionLimits, PublisherGrace, RtmpListener, tls};

/// Loads and validates everything `prism serve` loads before it binds a port (the
/// log's level filter, the RTMPS certificate and key, outbound TLS roots, presets,
/// user files, profiles, the authorization callback), and drops it again: `prism
/// check-config`. The same [`crate::logging::levels`] and [`Loaded::load`] that
/// `serve` runs, so that the check cannot accept what `serve` refuses, and the
/// error is the same.
///
/// Call it within a tokio runtime, as `serve` does.
pub fn check(config: &Config) -> Result<(), Error> {
    // `serve` installs the logger first; its level filter is the one thing of it
    // that a configuration can get wrong.
    crate::logging::levels(config)?;
    Loaded::load(config)?;
    // A node whose listeners others cannot reach (a wildcard address and nothing
    // advertised) is refused at start; the listen addresses stand in for the bound
    // ones here.
    if config.cluster.redis_url.is_some() {
        crate::cluster::NodeInfo::of(
            &config.cluster,
            config.rtmp.proxy_protocol,
            config.rtmp.listen,
            config.http.listen,
        )?;
    }
    Ok(())
}

/// What `serve` loads from files before it binds anything.
struct Loaded {
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    hub: Arc<Hub>,
    relay: Arc<Relay>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Loaded {
    fn load(config: &Config) -> Result<Self, Error> {
        // rustls' process-wide provider: ring, which every TLS client prism builds
        // uses. A client built without an explicit configuration (reqwest's
        // default, which has no provider of its own here) then works too. Already
        // installed (a second App in one process) is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The TLS material first: a wrong path is reported before anything binds.
        let acceptor = match (
            &config.rtmps.listen,
            &config.rtmps.cert_file,
            &config.rtmps.key_file,
        ) {
            (Some(_), Some(cert), Some(key)) => {
                Some(tls::acceptor(cert, key, &config.rtmps.tls_versions)?)
            }
            _ => None,
        };
        let hub = Hub::new(config.hub_limits());
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let relay = Arc::new(Relay::new(
            config,
            Arc::clone(&hub),
            tracker.clone(),
            shutdown.clone(),
        )?);
        Ok(Self {
            acceptor,
            hub,
            relay,
            shutdown,
            tracker,
        })
    }
}

/// A started prism.
pub struct App {
    rtmp_addr: SocketAddr,
    rtmps_addr: Option<SocketAddr>,
    srt_addr: Option<SocketAddr>,
    http_addr: SocketAddr,
    hub: Arc<Hub>,
    relay: Arc<Relay>,
    reloader: Arc<Reloader>,
    http_connections: Arc<http::OpenConnections>,
    drain: Arc<Drain>,
    cluster: Option<Arc<Cluster>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Dropped after the tracker's tasks ended: stops the workers' threads.
    workers: Arc<crate::transport::Workers>,
}

impl App {
    /// Binds every listener and starts serving. A reload (API, SIGHUP) applies
    /// `config` again, re-reading the user files it names; use
    /// [`Self::start_with_source`] to reload from a file.
    pub async fn start(config: Config) -> Result<Self, Error> {
        let fixed = config.clone();
        Self::start_with_source(config, ConfigSource::fixed(fixed)).await
    }

    /// Binds every listener and starts serving; a reload reads the configuration
    /// from `source`. Everything read from files is loaded first, by
    /// [`check`]'s own [`Loaded::load`].
    pub async fn start_with_source(config: Config, source: ConfigSource) -> Result<Self, Error> {
        let Loaded {
            acceptor,
            hub,
            relay,
            shutdown,
            tracker,
        } = Loaded::load(&config)?;
        log_loaded(&config, &relay).await;
        let waiting = WaitingPlayers::new(config.max_waiting_players());
        let drain = Drain::new(Duration::from_secs(config.cluster.drain_timeout_secs));
        let ctx = Arc::new(ConnectionContext {
            hub: Arc::clone(&hub),
            relay: Arc::clone(&relay),
            session: ServerConfig {
                chunk_size: config.rtmp.chunk_size,
                window_ack_size: config.rtmp.window_ack_size,
                limits: config.decoder_limits(),
                // One budget for every inbound connection. Evicted connections close
                // within moments; the overdraft is only a backstop (see PendingBudget).
                pending_budget: Some(PendingBudget::new(
                    config.limits.max_pending_bytes_total,
                    config.limits.max_pending_bytes_total,
                )),
                handshake_timeout: config.handshake_timeout(),
                idle_timeout: config.idle_timeout(),
                max_commands_per_sec: config.limits.max_commands_per_sec,
            },
            grace: PublisherGrace::new(
                Duration::from_secs(config.relay.publisher_grace_secs),
                tracker.clone(),
                Arc::clone(&hub),
                Standby::new(
                    config.standby.clone(),
                    PathBuf::from(&config.transcode.ffmpeg),
                    tracker.clone(),
                    shutdown.clone(),
                ),
            ),
            publishers_per_ip: PerIpLimit::new(config.rtmp.max_publishers_per_ip),
            play_wait: config.play_wait(),
            play_by_key: config.rtmp.play_by_key,
            waiting: Arc::clone(&waiting),
            drain: Arc::clone(&drain),
            cluster: std::sync::OnceLock::new(),
        });
        let workers = Arc::new(
            crate::transport::Workers::start(config.runtime.connection_workers())
                .map_err(Error::Workers)?,
        );
        let limits = ConnectionLimits::new(
            config.rtmp.max_connections,
            config.rtmp.max_connections_per_ip,
        );
        let addr = config.rtmp.listen;
        let proxied = config.rtmp.proxy_protocol;
        let listener = RtmpListener::bind(addr, Arc::clone(&ctx), limits.clone(), None)
            .await
            .map_err(|source| Error::Bind { addr, source })?
            .with_proxy_protocol(proxied);
        let rtmp_addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let tls_listener = match (config.rtmps.listen, acceptor) {
            (Some(addr), Some(acceptor)) => {
                let listener = RtmpListener::bind(addr, Arc::clone(&ctx), limits, Some(acceptor))
                    .await
                    .map_err(|source| Error::Bind { addr, source })?
                    .with_proxy_protocol(proxied);
                let bound = listener
                    .local_addr()
                    .map_err(|source| Error::Bind { addr, source })?;
                Some((listener, bound))
            }
            _ => None,
        };
        let srt = match config.srt.listen {
            Some(addr) => Some(
                crate::server::srt::SrtIngest::bind(
                    addr,
                    &config.srt,
                    Arc::clone(&ctx),
                    config.transcode.ffmpeg.clone(),
                )
                .await
                .map_err(|source| Error::Bind { addr, source })?,
            ),
            None => None,
        };
        let reloader = Arc::new(Reloader::new(source, Arc::clone(&relay), config.clone()));
        let http_addr = config.http.listen;
        let http_listener = http::bind(http_addr).await.map_err(|source| Error::Bind {
            addr: http_addr,
            source,
        })?;
        let http_addr = http_listener.local_addr().map_err(|source| Error::Bind {
            addr: http_addr,
            source,
        })?;
        let cluster = Cluster::new(
            &config,
            rtmp_addr,
            http_addr,
            Arc::clone(&hub),
            Arc::clone(&drain),
            tracker.clone(),
            shutdown.clone(),
        )?;
        if let Some(cluster) = &cluster {
            // Before any connection: the listeners run below.
            let _ = ctx.cluster.set(Arc::clone(cluster));
            tracker.spawn(Arc::clone(cluster).run(shutdown.clone()));
            let node = cluster.node();
            tracing::info!(
                node = node.node_id,
                rtmp = node.rtmp,
                http = node.http,
                "cluster node (registry: {})",
                crate::auth::masked_url(config.cluster.redis_url.as_deref().unwrap_or_default())
            );
        }
        let http_connections = Arc::new(http::OpenConnections::default());
        let http_state = Arc::new(HttpState {
            hub: Arc::clone(&hub),
            relay: Arc::clone(&relay),
            token: config.http.token.clone(),
            protect_reads: config.http.protect_reads,
            connections: listener.open_connections(),
            waiting_players: waiting,
            http_connections: Arc::clone(&http_connections),
            reloader: Arc::clone(&reloader),
            drain: Arc::clone(&drain),
            cluster: cluster.clone(),
            ingest: config.http.ingest.then(|| {
                Arc::new(http::ingest::IngestContext {
                    inputs: Arc::clone(&ctx),
                    shutdown: shutdown.clone(),
                    ffmpeg: config.transcode.ffmpeg.clone(),
                    tracker: tracker.clone(),
                    sessions: Default::default(),
                })
            }),
            hls: config.hls.enabled.then(|| {
                let profiles = crate::transcode::Profiles::new(&config.profiles);
                // Checked when the configuration loaded.
                let ladder = config.hls.ladder_spec(&profiles).unwrap_or_default();
                Arc::new(crate::hls::HlsService::new(
                    Arc::clone(&hub),
                    config.hls.clone(),
                    ladder,
                    Arc::clone(relay.shared_encoders()),
                    tracker.clone(),
                    shutdown.clone(),
                ))
            }),
        });
        tracker.spawn(http::serve(
            http_listener,
            http_state,
            http::HttpLimits::from_config(&config.http),
            shutdown.clone(),
            tracker.clone(),
        ));
        tracing::info!(%http_addr, "http listening");
        tracker.spawn(listener.run(shutdown.clone(), tracker.clone(), Arc::clone(&workers)));
        tracing::info!(%rtmp_addr, workers = workers.len(), "rtmp listening");
        let rtmps_addr = tls_listener.map(|(listener, rtmps_addr)| {
            tracker.spawn(listener.run(shutdown.clone(), tracker.clone(), Arc::clone(&workers)));
            tracing::info!(%rtmps_addr, "rtmps listening");
            rtmps_addr
        });
        let srt_addr = srt.map(|ingest| {
            let srt_addr = ingest.local_addr();
            tracker.spawn(ingest.run(shutdown.clone(), tracker.clone()));
            tracing::info!(%srt_addr, "srt listening");
            srt_addr
        });
        Ok(Self {
            rtmp_addr,
            rtmps_addr,
            srt_addr,
            http_addr,
            hub,
            relay,
            reloader,
            http_connections,
            drain,
            cluster,
            shutdown,
            tracker,
            workers,
        })
    }

    /// The RTMP address actually bound.
    pub fn rtmp_addr(&self) -> SocketAddr {
        self.rtmp_addr
    }

    /// The RTMPS address actually bound, when `[rtmps] listen` is set.
    pub fn rtmps_addr(&self) -> Option<SocketAddr> {
        self.rtmps_addr
    }

    /// The SRT address (UDP) actually bound, when `[srt] listen` is set.
    pub fn srt_addr(&self) -> Option<SocketAddr> {
        self.srt_addr
    }

    /// The HTTP address actually bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// HTTP connections being served now (at most `http.max_connections`).
    pub fn http_connections(&self) -> usize {
        self.http_connections.get()
    }

    /// The stream registry.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Applies a reloaded configuration: presets, user files, profiles and the
    /// authorization callback for new streams (live streams go on as they are).
    /// Listen addresses and limits need a restart. On error nothing changes.
    pub fn reload(&self, config: &Config) -> Result<ReloadReport, ReloadError> {
        self.reloader.apply(config.clone())
    }

    /// Reads the configuration again from its source and applies it, as SIGHUP
    /// and `POST /api/v1/reload` do (on a blocking thread: it reads files).
    pub async fn reload_from_source(&self) -> Result<ReloadReport, ReloadError> {
        self.reloader.reload_off_runtime().await
    }

    /// Begins draining (`POST /api/v1/drain` does the same): new publishes are
    /// refused, `/healthz` answers 503, live streams go on.
    pub fn drain(&self, why: &str) -> bool {
        self.drain.begin(why)
    }

    /// Resolves when a drain has finished: begun, and then every live stream ended
    /// or `[cluster] drain_timeout_secs` passed. Never resolves without a drain.
    pub async fn drained(&self) -> DrainEnd {
        let cluster = self.cluster.clone();
        let pulled = move || cluster.as_ref().map_or(0, |c| c.pulls_running());
        self.drain.finished(&self.hub, pulled).await
    }

    /// The relay (destination status).
    pub fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }

    /// Stops accepting, ends every connection and waits up to `grace` for them.
    /// Returns false if some task outlived the grace period.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.tracker.close();
        let done = tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok();
        // The connection workers' threads end once their tasks did.
        drop(self.workers);
        done
    }
}

/// One log line per thing `serve` loaded, so that an operator sees at start what
/// is in effect: presets (count and ids), users (count, never keys), profiles
/// (names), and the ffmpeg found with its version, or a warning that re-encoding
/// and the standby slate are unavailable (prism serves anyway).
///
/// The ffmpeg check is awaited before anything listens, so that its `ffmpeg
/// -version` child is gone by the time a client (or a test counting prism's
/// ffmpeg children) can connect; it takes a fraction of a second, and
/// [`FFMPEG_VERSION_TIMEOUT`] at worst.
async fn log_loaded(config: &Config, relay: &Relay) {
    let inventory = relay.inventory();
    tracing::info!(
        count = inventory.presets.len(),
        ids = inventory.presets.join(", "),
        "presets loaded"
    );
    match &config.users.dir {
        Some(dir) => tracing::info!(
            count = inventory.users,
            dir = %dir.display(),
            "users loaded"
        ),
        None => tracing::info!(count = 0, "users loaded (none: users.dir is not set)"),
    }
    tracing::info!(names = inventory.profiles, "profiles loaded");
    let ffmpeg = &config.transcode.ffmpeg;
    match ffmpeg_version(ffmpeg).await {
        Ok(version) => tracing::info!(
            path = %on_path(ffmpeg).display(),
            version,
            "ffmpeg found"
        ),
        Err(err) => tracing::warn!("re-encoding and the standby slate are unavailable: {err}"),
    }
}

/// Where a bare program name (`ffmpeg`) is found on `PATH`, as the OS would run
/// it; a name with a `/` (or one not found) as it is.
fn on_path(program: &str) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// How long `ffmpeg -version` may take before the check gives up on it.
const FFMPEG_VERSION_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the configured ffmpeg cannot re-encode.
#[derive(Debug, thiserror::Error)]
pub enum FfmpegError {
    /// It could not be started (not found, not executable).
    #[error(
        "transcode.ffmpeg: cannot run `{ffmpeg} -version` ({reason}); re-encoded \
         destinations (a `profile`, in a user file, a query string or the API) would \
         never start: install ffmpeg or point transcode.ffmpeg (PRISM_TRANSCODE__FFMPEG) \
         at it"
    )]
    Spawn {
        /// The configured binary.
        ffmpeg: String,
        /// The I/O error.
        reason: String,
    },
    /// It started but failed or did not answer.
    #[error(
        "transcode.ffmpeg: `{ffmpeg} -version` {reason}; re-encoded destinations would \
         fail: check the binary transcode.ffmpeg names"
    )]
    Failed {
        /// The configured binary.
        ffmpeg: String,
        /// What happened.
        reason: String,
    },
}

/// Runs `ffmpeg -version` and returns its first line (`ffmpeg version 5.1...`).
///
/// Re-encoding is never configured away: any publish may ask for a built-in profile
/// in its query string, so a prism whose ffmpeg does not run has destinations that
/// can never start. `prism check-config` reports it rather than the first stream.
pub async fn ffmpeg_version(ffmpeg: &str) -> Result<String, FfmpegError> {
    let child = tokio::process::Command::new(ffmpeg)
        .arg("-version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| FfmpegError::Spawn {
            ffmpeg: ffmpeg.to_owned(),
            reason: err.to_string(),
        })?;
    let failed = |reason: String| FfmpegError::Failed {
        ffmpeg: ffmpeg.to_owned(),
        reason,
    };
    let output = tokio::time::timeout(FFMPEG_VERSION_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| failed(format!("did not finish within {FFMPEG_VERSION_TIMEOUT:?}")))?
        .map_err(|err| failed(err.to_string()))?;
    if !output.status.success() {
        return Err(failed(format!("exited with {}", output.status)));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let first = text.lines().next().unwrap_or_default().trim();
    if !first.starts_with("ffmpeg version") {
        return Err(failed("printed no `ffmpeg version` line".into()));
    }
    Ok(first.to_owned())
}
