//! Reloading the configuration of a running prism: on SIGHUP, `POST
//! /api/v1/reload` or `prism reload`, all three through one [`Reloader`].
//!
//! A reload reads the configuration again from where it came from and applies
//! what can change under live streams: presets, user files, profiles and the
//! publish authorization callback, for new streams. Everything else (listen addresses, limits, TLS) needs a restart; the
//! answer says which changed sections are waiting for one. A broken file is
//! refused whole and the running configuration stays.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::{Config, ConfigError};
use crate::relay::{Relay, RelayError, Reloaded};

/// Where a reload reads the configuration from. `prism serve` reads its file,
/// `PRISM_*` environment and flags again; an [`crate::App`] started from a
/// [`Config`] alone applies that same config again (which still re-reads the user
/// files it names).
pub type ConfigSource = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// Why a reload was refused. The running configuration is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration file or environment does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A preset, user file, profile or the authorization callback is invalid.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The blocking task that reads the files failed (panicked or was cancelled).
    #[error("the reload task failed: {0}")]
    Task(String),
}

/// What a reload did: the counts now in effect, and the changed sections that
/// only a restart applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// What was reloaded: always `presets`, `users`, `profiles`, `auth`.
    pub reloaded: Vec<&'static str>,
    /// Presets, users and profiles now in effect, and whether the callback is on.
    #[serde(flatten)]
    pub counts: Reloaded,
    /// Sections that differ from the running configuration but need a restart
    /// (e.g. `rtmp` for a new listen address).
    pub needs_restart: Vec<&'static str>,
}

/// Reloads serialized: a SIGHUP and an API call at once apply one after the other.
pub struct Reloader {
    source: ConfigSource,
    relay: Arc<Relay>,
    /// The configuration running now: what started, with reloaded parts replaced.
    running: Mutex<Config>,
}

impl Reloader {
    /// A reloader for the relay started with `running`.
    pub fn new(source: ConfigSource, relay: Arc<Relay>, running: Config) -> Self {
        Self {
            source,
            relay,
            running: Mutex::new(running),
        }
    }

    /// Reads the configuration from its source and applies it. Blocking (reads
    /// files): call it off the async workers.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let config = (self.source)()?;
        self.apply_locked(&mut running, config)
    }

    /// [`Self::reload`] on tokio's blocking pool, for async callers (the runtime
    /// may have a single thread, which file reads must not hold up).
    pub async fn reload_off_runtime(self: &Arc<Self>) -> Result<ReloadReport, ReloadError> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.reload())
            .await
            .unwrap_or_else(|err| Err(ReloadError::Task(err.to_string())))
    }

    /// Applies an already loaded configuration.
    pub fn apply(&self, config: Config) -> Result<ReloadReport, ReloadError> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        self.apply_locked(&mut running, config)
    }

    fn apply_locked(
        &self,
        running: &mut Config,
        config: Config,
    ) -> Result<ReloadReport, ReloadError> {
        let counts = self.relay.reload(&config)?;
        let needs_restart = restart_sections(running, &config);
        if !needs_restart.is_empty() {
            tracing::warn!(
                sections = needs_restart.join(", "),
                "changed settings need a restart to apply"
            );
        }
        running.presets = config.presets;
        running.users = config.users;
        running.profiles = config.profiles;
        running.auth = config.auth;
        Ok(ReloadReport {
            reloaded: vec!["presets", "users", "profiles", "auth"],
            counts,
            needs_restart,
        })
    }
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

/// The sections of `new` that differ from `old` and that a reload does not apply.
fn restart_sections(old: &Config, new: &Config) -> Vec<&'static str> {
    fn differs<T: Serialize>(a: &T, b: &T) -> bool {
        serde_json::to_value(a).ok() != serde_json::to_value(b).ok()
    }
    let sections = [
        ("rtmp", differs(&old.rtmp, &new.rtmp)),
        ("rtmps", differs(&old.rtmps, &new.rtmps)),
        ("limits", differs(&old.limits, &new.limits)),
        ("hub", differs(&old.hub, &new.hub)),
        ("log", differs(&old.log, &new.log)),
        ("relay", differs(&old.relay, &new.relay)),
        ("tls", differs(&old.tls, &new.tls)),
        ("transcode", differs(&old.transcode, &new.transcode)),
        ("http", differs(&old.http, &new.http)),
    ];
    sections
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_sections_that_need_a_restart_are_reported() {
        let old = Config::defaults();
        let mut new = old.clone();
        assert!(restart_sections(&old, &new).is_empty());
        new.rtmp.listen = "127.0.0.1:2000".parse().unwrap();
        new.http.token = Some("a-token-of-sixteen-chars".into());
        new.users.dir = Some("/somewhere".into());
        assert_eq!(restart_sections(&old, &new), vec!["rtmp", "http"]);
    }
}
