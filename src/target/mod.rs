//! Where one destination publishes: host, port, TLS or not, app, tcUrl and the
//! stream name (which carries the stream key, so it is never printed).

use std::fmt;

use url::Url;

use crate::mask::Masked;
pub mod key;

use key::{TextProblem, check_stream_name};

/// The default port of `rtmp://` (RFC-less, but every tool agrees).
pub const RTMP_PORT: u16 = 1935;
/// The default port of `rtmps://`.
pub const RTMPS_PORT: u16 = 443;

/// Why a destination URL is unusable. Never contains the URL itself: it may hold a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not a URL at all.
    #[error("not a valid URL ({0})")]
    Malformed(String),
    /// Not rtmp:// or rtmps://.
    #[error("unsupported scheme `{0}`: use rtmp:// or rtmps://")]
    Scheme(String),
    /// No host.
    #[error("the URL has no host")]
    NoHost,
    /// No app in the path.
    #[error("the URL has no application path (rtmp://host/APP)")]
    NoApp,
    /// A full URL without a stream name after the app.
    #[error("the URL has no stream name (rtmp://host/app/STREAM)")]
    NoStreamName,
    /// A full URL whose stream name breaks the key rules (too long, characters
    /// an ingest must not get); see [`crate::target::key`].
    #[error("the URL's stream name {0}")]
    StreamName(TextProblem),
}

/// A resolved RTMP publish target.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// `rtmps://`: TLS with SNI and certificate verification.
    pub tls: bool,
    /// Host name or IP address (also the TLS server name).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The RTMP application, with the URL's query if any.
    pub app: String,
    /// The tcUrl sent in connect.
    pub tc_url: String,
    /// The stream name to publish: the key, possibly with a query. Secret.
    pub stream_name: String,
}

impl Target {
    /// A target from an ingest URL (`rtmp[s]://host[:port]/app`) and a stream name.
    pub fn new(ingest_url: &str, stream_name: String) -> Result<Self, TargetError> {
        let url = parse(ingest_url)?;
        let app = path_and_query(&url);
        if app.is_empty() {
            return Err(TargetError::NoApp);
        }
        Self::build(&url, app, stream_name)
    }

    /// A target from a full URL whose last path segment is the stream name, as
    /// custom servers are usually given (`rtmp://host/live/streamkey`).
    pub fn from_full_url(full_url: &str) -> Result<Self, TargetError> {
        let url = parse(full_url)?;
        let path = url.path().trim_start_matches('/');
        let (app, name) = path.rsplit_once('/').ok_or(TargetError::NoStreamName)?;
        if app.is_empty() {
            return Err(TargetError::NoApp);
        }
        if name.is_empty() {
            return Err(TargetError::NoStreamName);
        }
        let name = match url.query() {
            Some(query) => format!("{name}?{query}"),
            None => name.to_owned(),
        };
        check_stream_name(&name).map_err(TargetError::StreamName)?;
        Self::build(&url, app.to_owned(), name)
    }

    fn build(url: &Url, app: String, stream_name: String) -> Result<Self, TargetError> {
        let tls = url.scheme() == "rtmps";
        let host = url.host_str().ok_or(TargetError::NoHost)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url
            .port()
            .unwrap_or(if tls { RTMPS_PORT } else { RTMP_PORT });
        let tc_url = format!(
            "{}://{}:{port}/{app}",
            url.scheme(),
            url.host_str().unwrap_or("")
        );
        Ok(Self {
            tls,
            host,
            port,
            app,
            tc_url,
            stream_name,
        })
    }

    /// The URL with the stream name masked: safe for logs and status.
    pub fn masked(&self) -> String {
        format!("{}/{}", self.tc_url, Masked(&self.stream_name))
    }
}

fn parse(text: &str) -> Result<Url, TargetError> {
    let url = Url::parse(text.trim()).map_err(|e| TargetError::Malformed(e.to_string()))?;
    match url.scheme() {
        "rtmp" | "rtmps" => Ok(url),
        other => Err(TargetError::Scheme(other.to_owned())),
    }
}

fn path_and_query(url: &Url) -> String {
    let path = url.path().trim_matches('/');
    match url.query() {
        Some(query) if !path.is_empty() => format!("{path}?{query}"),
        _ => path.to_owned(),
    }
}

/// Never prints the stream name.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_urls_get_default_ports() {
        let t = Target::new("rtmp://live.twitch.tv/app", "live_1".into()).unwrap();
        assert_eq!((t.tls, t.port, t.app.as_str()), (false, 1935, "app"));
        assert_eq!(t.tc_url, "rtmp://live.twitch.tv:1935/app");
        let t = Target::new("rtmps://a.rtmps.youtube.com/live2", "k".into()).unwrap();
        assert_eq!((t.tls, t.port), (true, 443));
        let t = Target::new("rtmp://b.rtmp.youtube.com/live2?backup=1", "k".into()).unwrap();
        assert_eq!(t.app, "live2?backup=1");
        let t = Target::new("rtmp://[::1]:1940/live", "k".into()).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 1940));
    }

    #[test]
    fn full_urls_split_app_and_stream_name() {
        let t = Target::from_full_url("rtmp://my.server:1936/live/sub/secretkey?x=1").unwrap();
        assert_eq!(t.app, "live/sub");
        assert_eq!(t.stream_name, "secretkey?x=1");
        assert_eq!(t.port, 1936);
        assert_eq!(
            Target::from_full_url("rtmp://h/live"),
            Err(TargetError::NoStreamName)
        );
        assert_eq!(
            Target::from_full_url("rtmp://h/live/"),
            Err(TargetError::NoStreamName)
        );
    }

    #[test]
    fn a_full_urls_stream_name_follows_the_key_rules() {
        let long = format!("rtmp://h/live/{}", "k".repeat(3000));
        assert_eq!(
            Target::from_full_url(&long),
            Err(TargetError::StreamName(TextProblem::TooLong { len: 3000 }))
        );
        assert_eq!(
            Target::from_full_url("rtmp://h/live/key?next=a/b"),
            Err(TargetError::StreamName(TextProblem::PathSeparator))
        );
        assert_eq!(
            Target::from_full_url("rtmp://h/live/a\\b"),
            Err(TargetError::StreamName(TextProblem::PathSeparator))
        );
        // The URL parser escapes what it must and drops newlines before the
        // check sees the name: nothing raw reaches the ingest either way.
        let t = Target::from_full_url("rtmp://h/live/a b%0A").unwrap();
        assert_eq!(t.stream_name, "a%20b%0A");
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        assert!(matches!(
            Target::new("http://h/app", "k".into()),
            Err(TargetError::Scheme(_))
        ));
        assert_eq!(Target::new("rtmp://h", "k".into()), Err(TargetError::NoApp));
        let err = Target::from_full_url("rtmp://secret key@/x")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn masked_and_debug_hide_the_key() {
        let t = Target::new("rtmp://h/app", "supersecret".into()).unwrap();
        let shown = format!("{} {t:?}", t.masked());
        assert!(shown.starts_with("rtmp://h:1935/app/****"), "{shown}");
        assert!(!shown.contains("supersecret"));
    }
}
