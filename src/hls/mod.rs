//! HLS and Low-Latency HLS of every live stream, served by prism's HTTP server
//! from memory: `/hls/{id}/index.m3u8`, and `/hls/{app}/{user}/index.m3u8` for a
//! user's stream.
//!
//! A stream is packaged on demand: the first request starts a packager, which
//! subscribes to the stream like a player (from the GOP cache's keyframe), and it
//! stops when no request came for `idle_secs`. Segments are CMAF (fragmented MP4
//! through [`crate::fmp4`]), cut at keyframes about `segment_secs` apart; each
//! is made of parts of at most `part_ms`, listed as `EXT-X-PART` and fetchable
//! while the segment is still being made, with `EXT-X-PRELOAD-HINT` for the next
//! one and blocking playlist reload (`_HLS_msn`, `_HLS_part`). The part target
//! and the target duration are fixed by the configuration, so they never change
//! during a stream. What is kept is a window of `window` segments per stream:
//! memory is bounded per stream whatever the audience.
//!
//! One file per concern: [`packager`] (cutting, sans-I/O), [`playlist`] (the
//! text), [`variant`] (what a master playlist says of a rendition), [`path`]
//! (what a URL asks for), [`token`] (signed access tokens), [`status`] (what
//! the API shows), [`live`] (the
//! packagers running and their lifecycle), [`ladder`] (the ABR ladder's
//! rungs, fed by the stream's shared encodes), [`timeline`] (decode times past
//! FLV's 32-bit wrap).

pub mod daterange;
pub mod ladder;
pub mod live;
pub mod packager;
pub mod path;
pub mod playlist;
pub mod rung;
pub mod status;
pub mod timeline;
pub mod token;
pub mod variant;

use serde::{Deserialize, Serialize};

pub use live::HlsService;

/// The source rendition's name: the stream as published.
pub const SOURCE: &str = "src";

/// `[hls]`: HLS of live streams.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsConfig {
    /// Serve HLS at `/hls/...`.
    pub enabled: bool,
    /// The segment target (s): segments end at the first keyframe after 3/4 of
    /// it. `EXT-X-TARGETDURATION` is one more.
    pub segment_secs: u64,
    /// The part target (ms): `EXT-X-PART-INF:PART-TARGET`; players stay three
    /// parts behind the live edge (`PART-HOLD-BACK`).
    pub part_ms: u64,
    /// Complete segments kept per stream.
    pub window: usize,
    /// Stop packaging a stream no request came for in this long (s).
    pub idle_secs: u64,
    /// Whether HLS needs no token (a user file's `[hls] public` overrides it).
    pub public: bool,
    /// The secret HLS tokens are signed with; random at each start when unset
    /// (tokens then end with the process, and differ between nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
    /// Origins whose pages may fetch HLS (`Access-Control-Allow-Origin`): `*`
    /// for any, a list of `https://host` origins, or empty for none (same-origin
    /// pages only, such as the dashboard).
    #[serde(default = "any_origin")]
    pub allow_origins: Vec<String>,
    /// The ABR ladder: re-encode profiles, one variant each beside the source,
    /// from one ffmpeg per stream shared with the stream's re-encoded
    /// destinations ([`ladder`]); empty for the source only.
    #[serde(default)]
    pub ladder: Vec<String>,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            segment_secs: 2,
            part_ms: 500,
            window: 6,
            idle_secs: 30,
            public: true,
            token_secret: None,
            allow_origins: any_origin(),
            ladder: Vec::new(),
        }
    }
}

fn any_origin() -> Vec<String> {
    vec!["*".to_owned()]
}

impl HlsConfig {
    /// The ladder as the encoder runs it, from `profiles` (the built-ins and
    /// `[profiles]`); `Err` names a rung that is no profile.
    pub fn ladder_spec(
        &self,
        profiles: &crate::transcode::Profiles,
    ) -> Result<Option<ladder::LadderSpec>, String> {
        if self.ladder.is_empty() {
            return Ok(None);
        }
        let rungs = self
            .ladder
            .iter()
            .map(|name| {
                let profile = profiles.get(name).ok_or_else(|| {
                    format!("{name:?} is no profile (known: {})", profiles.names())
                })?;
                Ok(ladder::RungSpec {
                    name: name.clone(),
                    args: profile.args.clone(),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Some(ladder::LadderSpec { rungs }))
    }

    /// The CORS policy of `/hls/`: GET from the allowed origins, with the
    /// `Authorization` header (a private stream's bearer token) and `Range`.
    pub fn cors(&self) -> tower_http::cors::CorsLayer {
        use axum::http::{HeaderValue, Method, header};
        use tower_http::cors::{AllowOrigin, CorsLayer};
        let origins = if self.allow_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                self.allow_origins
                    .iter()
                    .filter_map(|o| o.parse::<HeaderValue>().ok()),
            )
        };
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET])
            .allow_headers([header::AUTHORIZATION, header::RANGE])
    }

    /// The packagers' timing.
    pub fn timing(&self) -> packager::Timing {
        packager::Timing {
            segment_ms: self.segment_secs * 1000,
            part_ms: self.part_ms,
            window: self.window,
        }
    }

    /// What is wrong with these settings, as (key, reason).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if !(1..=10).contains(&self.segment_secs) {
            return Some(("hls.segment_secs", "must be 1 to 10".into()));
        }
        if !(100..=2000).contains(&self.part_ms) || self.part_ms * 2 > self.segment_secs * 1000 {
            return Some((
                "hls.part_ms",
                "must be 100 to 2000 and at most half of segment_secs".into(),
            ));
        }
        if !(3..=60).contains(&self.window) {
            return Some(("hls.window", "must be 3 to 60 segments".into()));
        }
        if self.idle_secs == 0 {
            return Some(("hls.idle_secs", "must be at least 1".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for rung in &self.ladder {
            let name_ok = !rung.is_empty()
                && rung.len() <= 64
                && rung
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !name_ok || rung == SOURCE || !seen.insert(rung) {
                return Some((
                    "hls.ladder",
                    format!(
                        "{rung:?}: rungs are distinct profile names of letters, digits, - and _ (not \"src\")"
                    ),
                ));
            }
        }
        let origin_ok = |o: &String| {
            o == "*"
                || ((o.starts_with("http://") || o.starts_with("https://"))
                    && !o.ends_with('/')
                    && o.parse::<axum::http::HeaderValue>().is_ok())
        };
        if let Some(bad) = self.allow_origins.iter().find(|o| !origin_ok(o)) {
            return Some((
                "hls.allow_origins",
                format!("{bad:?}: \"*\" or origins such as \"https://example.com\" (no path)"),
            ));
        }
        if self.token_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Some(("hls.token_secret", "must be at least 32 characters".into()));
        }
        None
    }
}

/// A user file's `[hls]`, over `[hls]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserHls {
    /// Overrides `hls.public`.
    #[serde(default)]
    pub public: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_named() {
        let problem = |tune: fn(&mut HlsConfig)| {
            let mut config = HlsConfig::default();
            tune(&mut config);
            config.problem().map(|(key, _)| key)
        };
        assert_eq!(problem(|_| {}), None);
        assert_eq!(problem(|c| c.segment_secs = 0), Some("hls.segment_secs"));
        assert_eq!(problem(|c| c.part_ms = 1500), Some("hls.part_ms"));
        assert_eq!(problem(|c| c.window = 2), Some("hls.window"));
        assert_eq!(
            problem(|c| c.ladder = vec!["src".into()]),
            Some("hls.ladder")
        );
        assert_eq!(
            problem(|c| c.ladder = vec!["720p30".into(), "720p30".into()]),
            Some("hls.ladder")
        );
        assert_eq!(
            problem(|c| c.allow_origins = vec!["https://a.example/".into()]),
            Some("hls.allow_origins")
        );
        assert_eq!(
            problem(|c| c.allow_origins = vec!["ftp://a.example".into()]),
            Some("hls.allow_origins")
        );
        assert_eq!(
            problem(|c| c.token_secret = Some("short".into())),
            Some("hls.token_secret")
        );
    }
}
