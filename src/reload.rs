//! Reloading the configuration of a running prism: on SIGHUP, `POST
//! /api/v1/reload` or `prism reload`, all three through one [`Reloader`].
//!
//! A reload reads the configuration again from where it came from and applies
//! what can change under live streams: presets, user files, profiles and the
//! publish authorization callback, for new streams. Everything else (listen addresses, limits, TLS) needs a restart; the
//! answer says which changed sections are waiting for one. A broken file is
//! refused whole and the running configuration stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::{Config, ConfigError, Overrides};
use crate::relay::{Relay, RelayError, Reloaded};

/// Where a reload reads the configuration from. `prism serve` reads its file,
/// `PRISM_*` environment and flags again ([`Self::file`]); an [`crate::App`]
/// started from a [`Config`] alone applies that same config again
/// ([`Self::fixed`], which still re-reads the user files it names).
///
/// A reload always reads this source, never a file the caller names: the source
/// keeps its file's path so that a reload that asks for another file (`prism
/// reload --config OTHER.toml`) is refused instead of silently reading this one.
#[derive(Clone)]
pub struct ConfigSource {
    /// The configuration file, as an absolute path when it could be resolved.
    file: Option<PathBuf>,
    load: Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>,
}

impl ConfigSource {
    /// The embedded defaults < `file` < `PRISM_*` environment < `overrides`, read
    /// again at every reload (what `prism serve` started with).
    pub fn file(file: Option<PathBuf>, overrides: Overrides) -> Self {
        let file = file.map(|path| absolute(&path));
        let path = file.clone();
        Self {
            file,
            load: Arc::new(move || Config::load(path.as_deref(), &overrides)),
        }
    }

    /// `config` again at every reload (its user files are still read again).
    pub fn fixed(config: Config) -> Self {
        Self {
            file: None,
            load: Arc::new(move || Ok(config.clone())),
        }
    }

    /// The configuration file a reload reads, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    fn load(&self) -> Result<Config, ConfigError> {
        (self.load)()
    }
}

impl std::fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSource")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// `path` resolved (symbolic links, `..`) when it exists, else made absolute
/// against the working directory, so that two spellings of one file compare equal.
pub fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_owned())
}

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
    /// The caller asked for a configuration file other than the one prism runs
    /// with. A reload only ever re-reads prism's own file, so reading it instead
    /// would apply something the caller did not ask for.
    #[error(
        "this prism runs with {running}, not {asked}: a reload re-reads the file \
         prism was started with (and its PRISM_* environment and flags), never \
         another one; edit that file and reload, or restart prism with --config {asked}"
    )]
    OtherFile {
        /// The file the caller named.
        asked: String,
        /// The file prism reads (`no configuration file` when it has none).
        running: String,
    },
}

/// What a reload did: the counts now in effect, and the changed sections that
/// only a restart applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// What was reloaded: always `presets`, `users`, `profiles`, `auth`.
    pub reloaded: Vec<&'static str>,
    /// The configuration file that was read again (absent: none, only the
    /// embedded defaults, environment and flags).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
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
        let config = self.source.load()?;
        self.apply_locked(&mut running, config)
    }

    /// [`Self::reload`] on tokio's blocking pool, for async callers (the runtime
    /// may have a single thread, which file reads must not hold up).
    pub async fn reload_off_runtime(self: &Arc<Self>) -> Result<ReloadReport, ReloadError> {
        self.reload_file_off_runtime(None).await
    }

    /// [`Self::reload_off_runtime`] for a caller that names the configuration
    /// file it means (`prism reload --config FILE`): refused, with nothing read or
    /// changed, unless it is the file this prism runs with.
    pub async fn reload_file_off_runtime(
        self: &Arc<Self>,
        asked: Option<&Path>,
    ) -> Result<ReloadReport, ReloadError> {
        if let Some(asked) = asked {
            check_file(&self.source, asked)?;
        }
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
            config_file: self.source.path().map(Path::to_owned),
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

/// Refuses a reload that names a file other than the source's.
fn check_file(source: &ConfigSource, asked: &Path) -> Result<(), ReloadError> {
    let running = source.path();
    if running == Some(absolute(asked).as_path()) {
        return Ok(());
    }
    Err(ReloadError::OtherFile {
        asked: asked.display().to_string(),
        running: running.map_or_else(
            || "no configuration file".to_owned(),
            |path| path.display().to_string(),
        ),
    })
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
        ("standby", differs(&old.standby, &new.standby)),
        ("record", differs(&old.record, &new.record)),
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
    fn a_reload_naming_another_file_is_refused_and_the_own_file_in_any_spelling_is_not() {
        let dir = std::env::temp_dir().join(format!("prism-reload-unit-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let own = dir.join("prism.toml");
        std::fs::write(&own, "").unwrap();
        let source = ConfigSource::file(Some(own.clone()), Overrides::default());
        assert!(check_file(&source, &own).is_ok());
        assert!(check_file(&source, &dir.join("sub").join("..").join("prism.toml")).is_ok());
        let other = dir.join("other.toml");
        let err = check_file(&source, &other).unwrap_err().to_string();
        assert!(
            err.contains("other.toml") && err.contains("prism.toml"),
            "{err}"
        );
        let fixed = ConfigSource::fixed(Config::defaults());
        let err = check_file(&fixed, &own).unwrap_err().to_string();
        assert!(err.contains("no configuration file"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

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
