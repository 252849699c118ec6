//! Configuration: embedded defaults, then a TOML file, then `PRISM_*` environment
//! variables, then command-line flags, each layer overriding the one before.
//!
//! The defaults live in `config/default.toml`, compiled in, so `prism serve` runs with
//! no file at all and the documented defaults are the ones in effect.

pub mod env;
mod sections;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::auth::AuthConfig;
use crate::hub::{HubLimits, QueueLimits};
use crate::mask::Masked;
use crate::presets::PresetOverride;
use crate::rtmp::chunk::DecoderLimits;
use crate::transcode::Profile;

/// The embedded defaults (also the reference for every key).
pub const DEFAULTS: &str = include_str!("../../config/default.toml");

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or variable did not parse or had the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A `PRISM_*` variable names no key (a typo, or a variable meant for
    /// something else).
    #[error("configuration: {0}")]
    UnknownEnv(env::UnknownVar),
    /// A value parsed but makes no sense.
    #[error("configuration: {key}: {reason}")]
    Invalid {
        /// The offending key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

pub use sections::*;

/// All of prism's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The RTMP listener.
    pub rtmp: RtmpConfig,
    /// The optional RTMPS (TLS) listener for encoders and players.
    #[serde(default)]
    pub rtmps: RtmpsConfig,
    /// The optional SRT listener for encoders.
    #[serde(default)]
    pub srt: SrtConfig,
    /// Bounds on what a peer can make prism hold.
    pub limits: LimitsConfig,
    /// Per-stream caches and queues.
    pub hub: HubConfig,
    /// Logging.
    pub log: LogConfig,
    /// Outbound destinations.
    pub relay: RelayConfig,
    /// The standby slate.
    #[serde(default)]
    pub standby: StandbyConfig,
    /// Recording every broadcast to disk.
    #[serde(default)]
    pub record: crate::record::RecordConfig,
    /// HLS and LL-HLS of live streams.
    #[serde(default)]
    pub hls: crate::hls::HlsConfig,
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
    /// Several nodes behind a balancer; draining.
    #[serde(default)]
    pub cluster: ClusterConfig,
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
    /// query values and the HLS token secret are masked, because the output gets
    /// pasted into bug reports.
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
        mask("hls", "token_secret", |secret| Masked(secret).to_string());
        mask("auth", "publish_url", crate::auth::masked_url);
        mask("cluster", "redis_url", crate::auth::masked_url);
        toml::to_string_pretty(&value).map_err(|e| e.to_string())
    }

    /// Loads defaults < `file` < `PRISM_*` environment < `overrides`, then validates.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(env::provider());
        if let Some(listen) = overrides.rtmp_listen {
            figment = figment.merge(Serialized::default("rtmp.listen", listen));
        }
        if let Some(listen) = overrides.http_listen {
            figment = figment.merge(Serialized::default("http.listen", listen));
        }
        if let Some(listen) = overrides.rtmps_listen {
            figment = figment.merge(Serialized::default("rtmps.listen", listen));
        }
        let config: Config = figment.extract().map_err(explain_env)?;
        config.validate()?;
        Ok(config)
    }

    /// The defaults alone, for tests and tools.
    pub fn defaults() -> Self {
        Self::load(None, &Overrides::default()).unwrap_or_else(|e| {
            unreachable!("the embedded defaults are valid (a unit test checks): {e}")
        })
    }

    /// Every key prism has, dotted (`rtmp.chunk_size`): the candidates for "the
    /// nearest key". The keys the embedded defaults set, and the optional ones
    /// they leave out (`http.token`), asked from the configuration types
    /// themselves: a field that is not there is refused with the list of the
    /// fields that are. The environment plays no part, so that a bad variable
    /// cannot hide them.
    fn known_keys() -> Vec<String> {
        const PROBE: &str = "__prism_probe__";
        let fields_of = |table: &str| -> Vec<String> {
            let key = if table.is_empty() {
                PROBE.to_owned()
            } else {
                format!("{table}.{PROBE}")
            };
            let probe = Figment::from(Toml::string(DEFAULTS)).merge(Serialized::default(&key, 0));
            match probe.extract::<Config>().map_err(|err| err.kind) {
                Err(figment::error::Kind::UnknownField(_, expected)) => {
                    expected.iter().map(|field| (*field).to_owned()).collect()
                }
                _ => Vec::new(),
            }
        };
        let mut keys: std::collections::BTreeSet<String> = Figment::from(Toml::string(DEFAULTS))
            .extract::<Config>()
            .ok()
            .and_then(|config| toml::Value::try_from(config).ok())
            .map(|value| env::keys_of(&value).into_iter().collect())
            .unwrap_or_default();
        for section in fields_of("") {
            keys.extend(
                fields_of(&section)
                    .into_iter()
                    .map(|field| format!("{section}.{field}")),
            );
        }
        keys.into_iter().collect()
    }
}

/// figment's error, or when it is an unknown field from a `PRISM_*` variable, one
/// that names the variable and the nearest key.
fn explain_env(err: figment::Error) -> ConfigError {
    use figment::Provider;
    let from_env = err.metadata.as_ref().map(|m| &m.name) == Some(&env::provider().metadata().name);
    if let (true, figment::error::Kind::UnknownField(field, expected)) = (from_env, &err.kind) {
        let mut candidates = Config::known_keys();
        // The fields of the table the unknown one was found in, the optional ones
        // (absent from the defaults) included.
        let table = match err.path.split_last() {
            Some((last, table)) if last == field => table,
            _ => &err.path[..],
        };
        candidates.extend(expected.iter().map(|name| {
            let mut path = table.to_vec();
            path.push((*name).to_owned());
            path.join(".")
        }));
        // Keys, not sections: `PRISM_HUB` sets nothing.
        candidates.retain(|key| key.contains('.'));
        let vars = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
        if let Some(unknown) = env::explain(vars, &err.path, field, &candidates) {
            return ConfigError::UnknownEnv(unknown);
        }
    }
    ConfigError::Load(Box::new(err))
}

impl Config {
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
