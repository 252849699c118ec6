//! The server's status texts: read leniently, and masked so that the stream key, which
//! servers echo in their descriptions, never reaches an event, an error or a log.

use super::super::amf0::Amf0Value;
use super::super::message::Command;
use super::ClientSession;

/// What a masked stream name is replaced with.
const MASK: &str = "****";

/// onStatus codes that end a publish whatever their level, as OBS treats them
/// (some servers send them with level "status").
pub(super) const FATAL_CODES: &[&str] = &[
    "NetStream.Publish.BadName",
    "NetStream.Publish.Denied",
    "NetStream.Publish.Rejected",
    "NetStream.Publish.Failed",
    "NetStream.Failed",
    "NetConnection.Connect.Rejected",
    "NetConnection.Connect.InvalidApp",
    "NetConnection.Connect.Failed",
];

/// The `{level, code, description}` of an onStatus or `_error`, as sent (unmasked).
pub(super) struct StatusInfo {
    pub(super) level: String,
    pub(super) code: String,
    pub(super) description: String,
}

impl StatusInfo {
    /// Reads the info object leniently: the first argument that is an object, else
    /// the command object; a bare string argument serves as the description.
    pub(super) fn of(command: &Command) -> Self {
        let info = command
            .args
            .iter()
            .chain(std::iter::once(&command.object))
            .map(|value| value.clone().flatten_amf3())
            .find(|value| value.properties().is_some());
        let field = |key: &str| {
            info.as_ref()
                .and_then(|info| info.get(key))
                .and_then(Amf0Value::as_str)
                .map(str::to_owned)
        };
        let description = field("description")
            .or_else(|| command.first_string_arg().map(str::to_owned))
            .unwrap_or_default();
        Self {
            level: field("level").unwrap_or_default(),
            code: field("code").unwrap_or_default(),
            description,
        }
    }

    pub(super) fn is_failure(&self) -> bool {
        self.level.eq_ignore_ascii_case("error") || FATAL_CODES.contains(&self.code.as_str())
    }
}

impl ClientSession {
    /// `text` with the stream name, its bare key and its query replaced by `****`.
    pub(super) fn mask(&self, text: &str) -> String {
        mask_stream_name(text, &self.config.stream_name)
    }

    /// Status codes we know are constants that cannot carry the key, and
    /// [`ClientError::is_permanent`] matches on them: a short key that happens to
    /// occur inside one ("Publish") must not turn `NetStream.Publish.BadName` into
    /// something unrecognisable. Unknown codes are masked like any server text.
    pub(super) fn mask_code(&self, code: &str) -> String {
        if FATAL_CODES.contains(&code) {
            code.to_owned()
        } else {
            self.mask(code)
        }
    }
}

/// Replaces the stream name, the key before its `?` and the query after it, wherever
/// they occur in `text` (servers echo them in descriptions). The whole name goes
/// first so that it is masked as one. Public so that the relay can mask any other
/// text that may hold the key (a URL it logs, an ffmpeg command line).
pub fn mask_stream_name(text: &str, stream_name: &str) -> String {
    let (key, query) = stream_name.split_once('?').unwrap_or((stream_name, ""));
    let mut masked = text.to_owned();
    for secret in [stream_name, key, query] {
        if !secret.is_empty() && masked.contains(secret) {
            masked = masked.replace(secret, MASK);
        }
    }
    masked
}
