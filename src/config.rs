//! Configuration: embedded defaults, then a TOML file, then `PRISM_*` environment
//! variables, then command-line flags, each layer overriding the one before.
//!
//! The defaults live in `config/default.toml`, compiled in, so `prism serve` runs with
//! no file at all and the documented defaults are the ones in effect.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::hub::{HubLimits, QueueLimits};
use crate::mask::Masked;
use crate::presets::PresetOverride;
use crate::rtmp::chunk::DecoderLimits;
use crate::transcode::Profile;

/// The embedded defaults (also the reference for every key).
pub const DEFAULTS: &str = include_str!("../config/default.toml");

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or variable did not parse or had the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value parsed but makes no sense.
    #[error("configuration: {key}: {reason}")]
    Invalid {
        /// The offending key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// All of prism's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The RTMP listener.
    pub rtmp: RtmpConfig,
    /// The optional RTMPS (TLS) listener for encoders and players.
    #[serde(default)]
    pub rtmps: RtmpsConfig,
    /// Bounds on what a peer can make prism hold.
    pub limits: LimitsConfig,
    /// Per-stream caches and queues.
    pub hub: HubConfig,
    /// Logging.
    pub log: LogConfig,
    /// Outbound destinations.
    pub relay: RelayConfig,
    /// TLS for outbound RTMPS.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Per-user destination files.
    #[serde(default)]
    pub users: UsersConfig,
    /// Preset overrides and additions, by preset id.
    #[serde(default)]
    pub presets: BTreeMap<String, PresetOverride>,
    /// Re-encoding.
    pub transcode: TranscodeConfig,
    /// The status and control API.
    pub http: HttpConfig,
    /// Re-encode profile overrides and additions, by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
    /// Publish authorization by HTTP callback.
    pub auth: AuthConfig,
    /// The async runtime's threads.
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

/// How many threads move prism's bytes.
///
/// Relaying is I/O: the work per packet is a few `writev`s, and on a multi-threaded
/// scheduler most of the rest is threads waking each other for it (measured in
/// BENCHMARKS.md). One thread, like an nginx worker, relays hundreds of
/// destinations; more help only with many RTMPS destinations or very many streams.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads: 1 runs everything on one thread; 0 means one per core.
    pub worker_threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self { worker_threads: 1 }
    }
}

impl RuntimeConfig {
    /// Builds the runtime this configuration asks for.
    pub fn build(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self.worker_threads {
            1 => tokio::runtime::Builder::new_current_thread(),
            0 => tokio::runtime::Builder::new_multi_thread(),
            n => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(n);
                builder
            }
        };
        builder.enable_all().build()
    }
}

/// Publish authorization by HTTP callback: every publish is POSTed to an
/// operator's service, which allows it (and may add destinations) or refuses it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The `http://` or `https://` URL to POST to; none disables the callback.
    /// Its query may carry a secret token, so it is only ever shown masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_url: Option<String>,
    /// How long a publish waits for the answer before it is refused.
    pub timeout_ms: u64,
}

/// Shows the callback URL with its query values and password masked.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "publish_url",
                &self.publish_url.as_deref().map(crate::auth::masked_url),
            )
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// The status and control API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Bearer token for control (and reads when protected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Whether reads need the token too.
    pub protect_reads: bool,
    /// HTTP connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Seconds for a request's line and headers to arrive, and how long an idle
    /// keep-alive connection stays open: a client that trickles its headers
    /// cannot hold a connection longer.
    pub header_timeout_secs: u64,
    /// Seconds for a request's body and its answer, and how long writing a
    /// response may stay blocked on a client that does not read.
    pub request_timeout_secs: u64,
}

/// Re-encoding through ffmpeg children.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodeConfig {
    /// The ffmpeg binary: a path, or a name looked up on PATH.
    pub ffmpeg: String,
    /// Encoders running at once; more destinations wait for a slot.
    pub max_encoders: usize,
    /// An encoder with no output for this long is restarted.
    pub stall_timeout_secs: u64,
    /// First restart delay after an encoder failure (then doubling, up to 30 s).
    pub restart_backoff_ms: u64,
}

/// Outbound destinations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Connect + handshake + publish deadline.
    pub connect_timeout_secs: u64,
    /// How long an ingest may stop reading.
    pub stall_timeout_secs: u64,
    /// First reconnect delay.
    pub backoff_initial_ms: u64,
    /// Largest reconnect delay.
    pub backoff_max_secs: u64,
    /// Uptime after which the backoff starts over.
    pub backoff_reset_after_secs: u64,
    /// Retry delay after a refusal.
    pub failed_retry_secs: u64,
    /// How long destinations wait for a publisher whose connection dropped.
    pub publisher_grace_secs: u64,
    /// Outgoing chunk size.
    pub chunk_size: u32,
}

/// TLS for outbound RTMPS.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Extra CA certificates (PEM) trusted beside the built-in roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Per-user destination files.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersConfig {
    /// The directory of user files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

/// The RTMP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Outgoing chunk size.
    pub chunk_size: u32,
    /// Acknowledgement window asked of peers.
    pub window_ack_size: u32,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Streams published at once from one IP address.
    pub max_publishers_per_ip: usize,
    /// Seconds for the handshake and the connect command.
    pub handshake_timeout_secs: u64,
    /// Seconds a connection may go without publishing or playing (whatever it sends), and
    /// seconds of silence allowed from a publisher.
    pub idle_timeout_secs: u64,
    /// Seconds a player may wait for a stream that is not live before it is closed
    /// (`NetStream.Play.StreamNotFound`).
    pub play_wait_secs: u64,
    /// Players waiting for streams that are not live, at most (and never more than
    /// half of `max_connections`); one more closes the one that has waited longest.
    pub max_waiting_players: usize,
}

/// The RTMPS listener: RTMP inside TLS, for encoders that publish over networks
/// their operators do not trust. Disabled unless `listen` is set; it shares the
/// RTMP listener's connection limits and timeouts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpsConfig {
    /// Listen address; `None` disables RTMPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// The certificate chain (PEM), leaf first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The TLS versions offered: an operator with old clients that cannot do one
    /// of them can leave it out (and one who must forbid 1.2 can too).
    #[serde(default = "TlsVersion::all")]
    pub tls_versions: Vec<TlsVersion>,
}

impl Default for RtmpsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            cert_file: None,
            key_file: None,
            tls_versions: TlsVersion::all(),
        }
    }
}

/// A TLS protocol version the RTMPS listener can offer, written as in the
/// configuration: `"1.2"` or `"1.3"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "1.3")]
    Tls13,
}

impl TlsVersion {
    /// Every version prism can offer, the default.
    pub fn all() -> Vec<Self> {
        vec![Self::Tls12, Self::Tls13]
    }
}

/// Bounds on what a peer can make prism buffer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest message accepted.
    pub max_message_len: u32,
    /// Chunk streams per peer.
    pub max_chunk_streams: usize,
    /// Bytes in partial messages per peer.
    pub max_pending_bytes: usize,
    /// Bytes in partial messages of all peers together.
    pub max_pending_bytes_total: usize,
    /// Smallest chunk size a peer may set.
    pub min_chunk_size: u32,
    /// Commands (and other non-media messages) a peer may send per second.
    pub max_commands_per_sec: u32,
}

/// Per-stream caches and per-subscriber queues.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// GOP cache bound in bytes.
    pub gop_cache_max_bytes: usize,
    /// GOP cache bound in packets.
    pub gop_cache_max_packets: usize,
    /// Subscriber queue bound in bytes.
    pub queue_max_bytes: usize,
    /// Subscriber queue bound in packets.
    pub queue_max_packets: usize,
    /// Streams at once.
    pub max_streams: usize,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter directive.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
    /// Lines waiting for stderr; beyond this they are dropped (and counted), so
    /// that a stalled stderr never holds up the relay.
    pub buffer_lines: usize,
    /// Lines one client address may cause at once.
    pub peer_burst: u32,
    /// Lines one client address may cause per minute after its burst.
    pub peer_lines_per_minute: u32,
    /// Lines all client addresses together may cause at once.
    pub all_peers_burst: u32,
    /// Lines all client addresses together may cause per second after the burst:
    /// the ceiling for an attacker with many addresses.
    pub all_peers_lines_per_sec: u32,
    /// Seconds between the summaries of suppressed and dropped lines.
    pub summary_secs: u64,
}

/// Command-line values that override everything else.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--rtmp ADDR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmp_listen: Option<SocketAddr>,
    /// `--http ADDR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<SocketAddr>,
    /// `--rtmps ADDR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtmps_listen: Option<SocketAddr>,
}

impl Config {
    /// The configuration as TOML, for `prism check-config`: the file that, loaded
    /// alone, gives these values. The API token and the callback URL's password and
    /// query values are masked, because the output gets pasted into bug reports.
    pub fn to_masked_toml(&self) -> Result<String, String> {
        let mut value = toml::Value::try_from(self).map_err(|e| e.to_string())?;
        let mut mask = |section: &str, key: &str, how: fn(&str) -> String| {
            if let Some(field) = value.get_mut(section).and_then(|table| table.get_mut(key))
                && let Some(text) = field.as_str()
            {
                *field = toml::Value::String(how(text));
            }
        };
        mask("http", "token", |token| Masked(token).to_string());
        mask("auth", "publish_url", crate::auth::masked_url);
        toml::to_string_pretty(&value).map_err(|e| e.to_string())
    }

    /// Loads defaults < `file` < `PRISM_*` environment < `overrides`, then validates.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("PRISM_").split("__"));
        if let Some(listen) = overrides.rtmp_listen {
            figment = figment.merge(Serialized::default("rtmp.listen", listen));
        }
        if let Some(listen) = overrides.http_listen {
            figment = figment.merge(Serialized::default("http.listen", listen));
        }
        if let Some(listen) = overrides.rtmps_listen {
            figment = figment.merge(Serialized::default("rtmps.listen", listen));
        }
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// The defaults alone, for tests and tools.
    pub fn defaults() -> Self {
        Self::load(None, &Overrides::default()).unwrap_or_else(|e| {
            unreachable!("the embedded defaults are valid (a unit test checks): {e}")
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if !(128..=65_536).contains(&self.rtmp.chunk_size) {
            return invalid("rtmp.chunk_size", "must be between 128 and 65536");
        }
        if self.rtmp.max_connections == 0
            || self.rtmp.max_connections_per_ip == 0
            || self.rtmp.max_publishers_per_ip == 0
        {
            return invalid("rtmp.max_connections(_per_ip)", "must be at least 1");
        }
        if self.rtmp.handshake_timeout_secs == 0
            || self.rtmp.idle_timeout_secs == 0
            || self.rtmp.play_wait_secs == 0
        {
            return invalid("rtmp.*_timeout_secs", "timeouts must be at least 1 second");
        }
        if self.rtmps.listen.is_some()
            && (self.rtmps.cert_file.is_none() || self.rtmps.key_file.is_none())
        {
            return invalid(
                "rtmps.listen",
                "RTMPS needs rtmps.cert_file and rtmps.key_file (PEM)",
            );
        }
        if self.rtmps.tls_versions.is_empty() {
            return invalid(
                "rtmps.tls_versions",
                "list at least one TLS version: \"1.2\", \"1.3\"",
            );
        }
        if !(128..=0xFF_FFFF).contains(&self.limits.max_message_len) {
            return invalid("limits.max_message_len", "must be between 128 and 16777215");
        }
        if self.limits.max_chunk_streams < 4 {
            return invalid("limits.max_chunk_streams", "must be at least 4");
        }
        if self.limits.max_pending_bytes < self.limits.max_message_len as usize {
            return invalid(
                "limits.max_pending_bytes",
                "must be at least limits.max_message_len",
            );
        }
        if self.limits.max_pending_bytes_total < self.limits.max_pending_bytes {
            return invalid(
                "limits.max_pending_bytes_total",
                "must be at least limits.max_pending_bytes",
            );
        }
        if !(1..=4096).contains(&self.limits.min_chunk_size) {
            return invalid("limits.min_chunk_size", "must be between 1 and 4096");
        }
        if self.limits.max_commands_per_sec == 0 {
            return invalid("limits.max_commands_per_sec", "must be at least 1");
        }
        if self.hub.queue_max_packets == 0 || self.hub.queue_max_bytes == 0 {
            return invalid("hub.queue_max_*", "must be positive");
        }
        if !(128..=65_536).contains(&self.relay.chunk_size) {
            return invalid("relay.chunk_size", "must be between 128 and 65536");
        }
        if self.relay.connect_timeout_secs == 0 || self.relay.stall_timeout_secs == 0 {
            return invalid("relay.*_timeout_secs", "timeouts must be at least 1 second");
        }
        if self.relay.backoff_initial_ms == 0 || self.relay.backoff_max_secs == 0 {
            return invalid("relay.backoff_*", "backoff delays must be positive");
        }
        if self.transcode.max_encoders == 0 || self.transcode.stall_timeout_secs == 0 {
            return invalid(
                "transcode.max_encoders / stall_timeout_secs",
                "must be at least 1",
            );
        }
        if self.profiles.values().any(|p| p.args.is_empty()) {
            return invalid("profiles.*.args", "a profile needs ffmpeg output arguments");
        }
        if self.http.token.as_deref().is_some_and(|t| t.len() < 16) {
            return invalid("http.token", "use at least 16 characters");
        }
        if self.http.max_connections == 0 {
            return invalid("http.max_connections", "must be at least 1");
        }
        if self.http.header_timeout_secs == 0 || self.http.request_timeout_secs == 0 {
            return invalid("http.*_timeout_secs", "timeouts must be at least 1 second");
        }
        if self.http.protect_reads && self.http.token.is_none() {
            return invalid("http.protect_reads", "needs http.token");
        }
        if let Some(url) = &self.auth.publish_url
            && let Err(reason) = crate::auth::check_url(url)
        {
            return invalid("auth.publish_url", reason);
        }
        if !(1..=crate::auth::MAX_TIMEOUT_MS).contains(&self.auth.timeout_ms) {
            return invalid("auth.timeout_ms", "must be between 1 and 60000");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return invalid("log.format", "must be \"text\" or \"json\"");
        }
        let log = &self.log;
        for (key, value) in [
            ("log.buffer_lines", log.buffer_lines as u64),
            ("log.peer_burst", u64::from(log.peer_burst)),
            (
                "log.peer_lines_per_minute",
                u64::from(log.peer_lines_per_minute),
            ),
            ("log.all_peers_burst", u64::from(log.all_peers_burst)),
            (
                "log.all_peers_lines_per_sec",
                u64::from(log.all_peers_lines_per_sec),
            ),
            ("log.summary_secs", log.summary_secs),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        Ok(())
    }

    /// The chunk decoder's bounds.
    pub fn decoder_limits(&self) -> DecoderLimits {
        DecoderLimits {
            max_message_len: self.limits.max_message_len,
            max_chunk_streams: self.limits.max_chunk_streams,
            max_pending_bytes: self.limits.max_pending_bytes,
            min_chunk_size: self.limits.min_chunk_size,
        }
    }

    /// The hub's bounds.
    pub fn hub_limits(&self) -> HubLimits {
        HubLimits {
            gop_max_bytes: self.hub.gop_cache_max_bytes,
            gop_max_packets: self.hub.gop_cache_max_packets,
            queue: QueueLimits {
                max_bytes: self.hub.queue_max_bytes,
                max_packets: self.hub.queue_max_packets,
            },
            max_streams: self.hub.max_streams,
            // Streams players wait for are bounded apart, as many again at most: the
            // waiting players' own limit keeps them far below it in practice.
            max_awaited_streams: self.hub.max_streams,
        }
    }

    /// Handshake plus connect deadline.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.rtmp.handshake_timeout_secs)
    }

    /// Idle deadline.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.rtmp.idle_timeout_secs)
    }

    /// How long a player may wait for a stream that is not live.
    pub fn play_wait(&self) -> Duration {
        Duration::from_secs(self.rtmp.play_wait_secs)
    }

    /// Players that may wait for streams that are not live: `max_waiting_players`,
    /// but never more than half of the connection slots, so that waiting players
    /// always leave room for publishers whatever the two settings say.
    pub fn max_waiting_players(&self) -> usize {
        self.rtmp
            .max_waiting_players
            .min(self.rtmp.max_connections / 2)
    }
}

#[cfg(test)]
// figment's Jail closures return its large error type by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_load_and_validate() {
        let config = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(config.rtmp.listen.port(), 1935);
        assert_eq!(config.rtmp.chunk_size, 4096);
    }

    #[test]
    fn file_then_env_then_flags_override() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "prism.toml",
                "[rtmp]\nlisten = \"127.0.0.1:2000\"\nchunk_size = 8192\n",
            )?;
            let config =
                Config::load(Some(Path::new("prism.toml")), &Overrides::default()).unwrap();
            assert_eq!(config.rtmp.listen.port(), 2000);
            jail.set_env("PRISM_RTMP__LISTEN", "127.0.0.1:3000");
            let config =
                Config::load(Some(Path::new("prism.toml")), &Overrides::default()).unwrap();
            assert_eq!(config.rtmp.listen.port(), 3000);
            assert_eq!(config.rtmp.chunk_size, 8192);
            let overrides = Overrides {
                rtmp_listen: Some("127.0.0.1:4000".parse().unwrap()),
                ..Overrides::default()
            };
            let config = Config::load(Some(Path::new("prism.toml")), &overrides).unwrap();
            assert_eq!(config.rtmp.listen.port(), 4000);
            Ok(())
        });
    }

    #[test]
    fn every_example_config_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let config = Config::load(Some(&path), &Overrides::default())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let presets = crate::presets::Presets::load(&config.presets)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                if let Some(dir) = &config.users.dir {
                    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
                    crate::users::Users::load_dir(
                        &dir,
                        &presets,
                        &crate::transcode::Profiles::new(&config.profiles),
                    )
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                }
                checked += 1;
            }
        }
        assert!(checked >= 2, "examples/ has its configs");
    }

    #[test]
    fn limits_for_all_peers_are_checked_and_reach_the_decoder() {
        figment::Jail::expect_with(|jail| {
            let config = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(config.limits.max_pending_bytes_total, 256 << 20);
            assert_eq!(config.limits.max_commands_per_sec, 1000);
            assert_eq!(config.decoder_limits().min_chunk_size, 64);
            for (file, key) in [
                (
                    "[limits]\nmax_pending_bytes_total = 1048576\n",
                    "limits.max_pending_bytes_total",
                ),
                ("[limits]\nmin_chunk_size = 0\n", "limits.min_chunk_size"),
                ("[limits]\nmin_chunk_size = 5000\n", "limits.min_chunk_size"),
                (
                    "[limits]\nmax_commands_per_sec = 0\n",
                    "limits.max_commands_per_sec",
                ),
            ] {
                jail.create_file("limits.toml", file)?;
                let err = Config::load(Some(Path::new("limits.toml")), &Overrides::default())
                    .unwrap_err();
                assert!(err.to_string().contains(key), "{file}: {err}");
            }
            jail.create_file("limits.toml", "[limits]\nmin_chunk_size = 128\n")?;
            let config =
                Config::load(Some(Path::new("limits.toml")), &Overrides::default()).unwrap();
            assert_eq!(config.decoder_limits().min_chunk_size, 128);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("typo.toml", "[rtmp]\nlisten_addr = \"127.0.0.1:1\"\n")?;
            assert!(Config::load(Some(Path::new("typo.toml")), &Overrides::default()).is_err());
            jail.create_file("bad.toml", "[rtmp]\nchunk_size = 1\n")?;
            let err = Config::load(Some(Path::new("bad.toml")), &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("rtmp.chunk_size"), "{err}");
            assert!(Config::load(Some(Path::new("missing.toml")), &Overrides::default()).is_err());
            // A log budget of zero would silence every client, or every line.
            jail.create_file("quiet.toml", "[log]\nall_peers_lines_per_sec = 0\n")?;
            let err =
                Config::load(Some(Path::new("quiet.toml")), &Overrides::default()).unwrap_err();
            assert!(
                err.to_string().contains("log.all_peers_lines_per_sec"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn rtmps_is_off_by_default_and_needs_a_certificate_and_key() {
        figment::Jail::expect_with(|jail| {
            let config = Config::load(None, &Overrides::default()).unwrap();
            assert!(config.rtmps.listen.is_none(), "RTMPS is opt-in");
            let overrides = Overrides {
                rtmps_listen: Some("127.0.0.1:1936".parse().unwrap()),
                ..Overrides::default()
            };
            let err = Config::load(None, &overrides).unwrap_err();
            assert!(err.to_string().contains("rtmps.cert_file"), "{err}");
            jail.create_file(
                "tls.toml",
                "[rtmps]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n",
            )?;
            let config = Config::load(Some(Path::new("tls.toml")), &overrides).unwrap();
            assert_eq!(config.rtmps.listen.unwrap().port(), 1936);
            assert_eq!(
                config.rtmps.tls_versions,
                TlsVersion::all(),
                "both by default"
            );
            // No PRISM_RTMPS__* variable here: other tests of this binary load the
            // configuration from the same process environment at the same time.
            Ok(())
        });
    }

    #[test]
    fn tls_versions_are_validated() {
        figment::Jail::expect_with(|jail| {
            let load = |name: &str| Config::load(Some(Path::new(name)), &Overrides::default());
            jail.create_file("one.toml", "[rtmps]\ntls_versions = [\"1.2\"]\n")?;
            assert_eq!(
                load("one.toml").unwrap().rtmps.tls_versions,
                [TlsVersion::Tls12]
            );
            jail.create_file("none.toml", "[rtmps]\ntls_versions = []\n")?;
            let err = load("none.toml").unwrap_err().to_string();
            assert!(
                err.contains("rtmps.tls_versions") && err.contains("at least one"),
                "{err}"
            );
            jail.create_file("old.toml", "[rtmps]\ntls_versions = [\"1.1\", \"1.3\"]\n")?;
            let err = load("old.toml").unwrap_err().to_string();
            assert!(
                err.contains("tls_versions") && err.contains("1.1") && err.contains("1.2"),
                "names the key, the bad value and the known ones: {err}"
            );
            jail.create_file("number.toml", "[rtmps]\ntls_versions = [1.3]\n")?;
            assert!(load("number.toml").is_err(), "versions are strings");
            Ok(())
        });
    }
}
