//! Publish authorization by HTTP callback (`[auth] publish_url`).
//!
//! When configured, every publish is POSTed to the operator's service before it
//! goes live, as nginx-rtmp's `on_publish` does, but with a JSON body:
//!
//! ```json
//! {"call": "publish", "app": "live", "name": "STREAM-KEY", "addr": "203.0.113.7",
//!  "query": {"youtube": "...", "token": "..."}, "user": "alice"}
//! ```
//!
//! (`user` only when a user file matched.) A 2xx answer allows the publish. Its body
//! may be empty, or a JSON object that lists destinations for the stream, in the
//! shape of a user file's:
//!
//! ```json
//! {"destinations": [{"preset": "youtube", "key": "xxxx"},
//!                   {"url": "rtmps://ingest.example.com/app/key", "profile": "720p30"}]}
//! ```
//!
//! They are started in addition to the user file's and the query string's (as
//! nginx-rtmp adds an `on_publish` relay to its static `push` lines); the same
//! destination given twice starts once. Any other answer refuses the publish: a
//! non-2xx status (redirects are not followed), an unreachable service, no answer
//! within the timeout, or a body that is not such an object.
//!
//! Secrets stay secret: the stream key is sent to the service (it is what the
//! service decides on) but never logged, errors never quote the answer's values
//! (they may hold destination keys), and the callback URL, whose query may carry
//! the service's own token, is only ever shown masked ([`masked_url`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration_key;
use crate::mask::Masked;
use crate::presets::Presets;
use crate::stream_name::StreamName;
use crate::transcode::Profiles;
use crate::users::{DestinationRequest, MAX_DESTINATIONS_PER_USER, validate_destination};

/// Largest answer body read. A list of 32 destinations fits many times over; a
/// service that sends more is broken, and prism must not buffer without bound.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Longest `timeout_ms` accepted: a publisher (and its connection slot) waits
/// this long at most, and encoders give up on a silent server well before.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// Publish authorization by HTTP callback: every publish is POSTed to an
/// operator's service, which allows it (and may add destinations) or refuses it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The `http://` or `https://` URL to POST to; none disables the callback.
    /// Its query may carry a secret token, so it is only ever shown masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_url: Option<String>,
    /// How long a publish waits for the answer before it is refused, in ms (or a
    /// duration such as `"3s"`).
    #[serde(deserialize_with = "duration_key::millis")]
    pub timeout_ms: u64,
}

/// Shows the callback URL with its query values and password masked.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("publish_url", &self.publish_url.as_deref().map(masked_url))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// Why the callback could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The URL is not usable (the URL itself is not quoted: it may hold a token).
    #[error("auth.publish_url: {0}")]
    Url(&'static str),
    /// The HTTP client could not be built.
    #[error("auth.publish_url: cannot build the HTTP client: {0}")]
    Client(String),
}

/// Why the callback refused a publish, or could not decide. Safe to log: no
/// message carries the stream key, a destination key or the callback's token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// The service answered with a status other than 2xx.
    #[error("the authorization callback answered {0}")]
    Denied(u16),
    /// No complete answer in time.
    #[error("the authorization callback did not answer within {0:?}")]
    Timeout(Duration),
    /// The request failed (connection refused, reset, TLS, DNS...).
    #[error("the authorization callback could not be reached: {0}")]
    Unreachable(String),
    /// The answer body is over [`MAX_ANSWER_BYTES`].
    #[error("the authorization callback's answer is over {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    /// The 2xx answer's body is not a valid destination list.
    #[error("the authorization callback's answer is invalid: {0}")]
    Malformed(String),
}

impl CallbackError {
    /// What the encoder is told (ffmpeg prints it as "Server error: ..."): whether
    /// the service said no, or could not be asked. The details stay in prism's log.
    pub fn peer_description(&self) -> &'static str {
        match self {
            Self::Denied(_) => "publish not authorized",
            _ => "publish authorization failed",
        }
    }
}

/// What is POSTed for each publish.
#[derive(Debug, Serialize)]
pub struct PublishRequest<'a> {
    /// Always `"publish"`, as nginx-rtmp's `call`, so one service can serve more.
    pub call: &'static str,
    /// The application (`live`).
    pub app: &'a str,
    /// The stream name: the stream key the service authorizes.
    pub name: &'a str,
    /// The publisher's IP address.
    pub addr: String,
    /// The publish URL's query parameters (from the app, tcUrl and stream name);
    /// a repeated name keeps its last value, as the relay does.
    pub query: BTreeMap<String, String>,
    /// The user whose file matched the key, when user files are configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
}

impl<'a> PublishRequest<'a> {
    /// The request for a publish of `name` from `addr`.
    pub fn new(name: &'a StreamName, addr: IpAddr, user: Option<&'a str>) -> Self {
        Self {
            call: "publish",
            app: &name.app,
            name: &name.name,
            addr: addr.to_string(),
            query: url::form_urlencoded::parse(name.query.as_bytes())
                .into_owned()
                .collect(),
            user,
        }
    }
}

/// A 2xx answer's body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    #[serde(default)]
    destinations: Vec<DestinationRequest>,
}

/// Reads a 2xx answer's body: empty (or blank) allows with no destinations;
/// otherwise it must be a JSON object whose `destinations` are valid as in a user
/// file. Errors name fields and positions, never values.
pub fn parse_answer(
    body: &[u8],
    presets: &Presets,
    profiles: &Profiles,
) -> Result<Vec<DestinationRequest>, CallbackError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let answer: Answer =
        serde_json::from_slice(body).map_err(|e| CallbackError::Malformed(describe_json(&e)))?;
    if answer.destinations.len() > MAX_DESTINATIONS_PER_USER {
        return Err(CallbackError::Malformed(format!(
            "more than {MAX_DESTINATIONS_PER_USER} destinations"
        )));
    }
    for (index, destination) in answer.destinations.iter().enumerate() {
        validate_destination(destination, presets, profiles).map_err(|reason| {
            CallbackError::Malformed(format!("destination {}: {reason}", index + 1))
        })?;
    }
    Ok(answer.destinations)
}

/// A serde_json error without the values it may quote (`invalid type: string
/// "KEY"...`): its kind and position, and the field name for unknown or missing
/// fields.
fn describe_json(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("line {} column {}", error.line(), error.column());
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => format!("not JSON (at {at})"),
        Category::Data => {
            let message = error.to_string();
            let field = ["unknown field", "missing field"]
                .iter()
                .any(|kind| message.starts_with(kind))
                .then(|| {
                    message
                        .split([',', ' '])
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" ")
                });
            match field {
                Some(field) => format!("{field} (at {at})"),
                None => format!(
                    "expected {{\"destinations\": [{{\"preset\", \"key\"}} or {{\"url\"}}, ...]}} (at {at})"
                ),
            }
        }
    }
}

/// Checks a callback URL: `http://` or `https://` with a host. The reason never
/// quotes the URL.
pub fn check_url(url: &str) -> Result<url::Url, &'static str> {
    let parsed = url::Url::parse(url).map_err(|_| "not a valid URL")?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host");
    }
    Ok(parsed)
}

/// The URL with every query value and any password masked, for logs and debug
/// output: `http://auth:8000/publish?token=****1a2b`.
pub fn masked_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return Masked(url).to_string();
    };
    if parsed.password().is_some() {
        // Only fails for URLs that cannot have credentials, which this one has.
        let _ = parsed.set_password(Some("****"));
    }
    if parsed.query().is_some() {
        let masked: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| (name.into_owned(), Masked(&value).to_string()))
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(masked);
    }
    parsed.to_string()
}

/// The configured callback: an HTTP client and where to POST.
pub struct PublishCallback {
    client: reqwest::Client,
    url: url::Url,
    timeout: Duration,
}

impl fmt::Debug for PublishCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishCallback")
            .field("url", &masked_url(self.url.as_str()))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl PublishCallback {
    /// The callback of `config`, or `None` when no URL is set. `tls` is the client
    /// configuration outbound RTMPS uses (ring, the same trusted roots).
    pub fn new(config: &AuthConfig, tls: rustls::ClientConfig) -> Result<Option<Self>, SetupError> {
        let Some(url) = &config.publish_url else {
            return Ok(None);
        };
        let url = check_url(url).map_err(SetupError::Url)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            // A redirect is an answer other than 2xx: refused, never followed
            // (following would turn the POST into a GET elsewhere).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("prism/", env!("CARGO_PKG_VERSION")))
            .build()
            // Display only: reqwest's error may carry the URL, this one has none.
            .map_err(|e| SetupError::Client(e.without_url().to_string()))?;
        Ok(Some(Self {
            client,
            url,
            timeout: Duration::from_millis(config.timeout_ms),
        }))
    }

    /// The URL, masked.
    pub fn masked_url(&self) -> String {
        masked_url(self.url.as_str())
    }

    /// How long a publish waits for the answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Asks the service about one publish. `Ok` carries the destinations the answer
    /// adds (validated against `presets` and `profiles`); anything else refuses.
    pub async fn authorize(
        &self,
        request: &PublishRequest<'_>,
        presets: &Presets,
        profiles: &Profiles,
    ) -> Result<Vec<DestinationRequest>, CallbackError> {
        let body = tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .map_err(|_| CallbackError::Timeout(self.timeout))??;
        parse_answer(&body, presets, profiles)
    }

    /// POSTs the request and reads a 2xx answer's body, bounded.
    async fn exchange(&self, request: &PublishRequest<'_>) -> Result<Vec<u8>, CallbackError> {
        let mut response = self
            .client
            .post(self.url.clone())
            .json(request)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            return Err(CallbackError::Denied(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_ANSWER_BYTES as u64)
        {
            return Err(CallbackError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(CallbackError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A request error described without its URL (which may carry the token): what
/// failed, and the innermost cause (`Connection refused (os error 111)`).
fn unreachable(error: reqwest::Error) -> CallbackError {
    let error = error.without_url();
    let what = if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    let mut cause: &dyn std::error::Error = &error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    CallbackError::Unreachable(format!("{what}: {cause}"))
}

#[cfg(test)]
mod tests;
