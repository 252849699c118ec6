//! Where and as whom a client session publishes.

use std::fmt;
use std::time::Duration;

use super::super::chunk::DecoderLimits;

/// The flashVer we announce: the "FMLE/3.0 (compatible; ...)" form is what OBS and
/// ffmpeg send when publishing, and what ingests expect from an encoder.
pub const DEFAULT_FLASH_VER: &str = "FMLE/3.0 (compatible; prism)";

/// Our default outgoing chunk size: OBS's value, announced before connect like OBS
/// does. Larger chunks cost fewer header bytes per video frame.
pub const DEFAULT_CHUNK_SIZE: u32 = 4096;

/// Where and as whom to publish.
///
/// `Debug` masks the stream name: configs end up in logs.
#[derive(Clone)]
pub struct ClientConfig {
    /// The application (`live2` for YouTube, `app` for Twitch, `rtmp` for Facebook).
    pub app: String,
    /// `rtmp[s]://host[:port]/app`: SRS refuses a connect without it, and ingests
    /// route on it.
    pub tc_url: String,
    /// The stream key, with its `?query` if any (`key?backup=1`); sent verbatim.
    pub stream_name: String,
    /// The connect command's flashVer.
    pub flash_ver: String,
    /// Our outgoing chunk size (clamped to 128..=65536).
    pub chunk_size: u32,
    /// Bounds on what the server may make us buffer.
    pub limits: DecoderLimits,
    /// How long the server may take to accept the publish, counted from the start the
    /// session is given (the relay gives it the start of its TCP connect, so that one
    /// deadline covers connect, TLS, handshake and the publish exchange); `None` leaves
    /// the wait to the caller.
    pub publish_timeout: Option<Duration>,
    /// Play the stream (pull it from the server) instead of publishing it: connect,
    /// createStream and `play`, then the server's media comes out as events. The
    /// deadline above then covers the play's start.
    pub play: bool,
}

impl ClientConfig {
    /// A config from a server URL and a stream key, the way OBS takes them:
    /// `rtmp://a.rtmp.youtube.com/live2` + key gives app `live2`. Everything after
    /// the host is the app (it may hold a `/` or a `?query`, e.g. YouTube's
    /// `live2?backup=1`); a trailing `/` (Facebook's `.../rtmp/`) is dropped.
    pub fn new(server_url: &str, stream_name: &str) -> Self {
        let tc_url = server_url.trim_end_matches('/');
        let after_scheme = tc_url.split_once("://").map_or(tc_url, |(_, rest)| rest);
        let app = after_scheme.split_once('/').map_or("", |(_, app)| app);
        Self {
            app: app.to_owned(),
            tc_url: tc_url.to_owned(),
            stream_name: stream_name.to_owned(),
            flash_ver: DEFAULT_FLASH_VER.to_owned(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            limits: DecoderLimits::default(),
            publish_timeout: None,
            play: false,
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("app", &self.app)
            .field("tc_url", &self.tc_url)
            .field("stream_name", &crate::mask::Masked(&self.stream_name))
            .field("flash_ver", &self.flash_ver)
            .field("chunk_size", &self.chunk_size)
            .field("limits", &self.limits)
            .field("publish_timeout", &self.publish_timeout)
            .field("play", &self.play)
            .finish()
    }
}
