//! Why a push ended, and whether a retry can help.

use std::time::Duration;

use super::super::handshake::HandshakeError;
use super::super::message_layer::MessageLayerError;

/// Why a push ended. Server texts in it have the stream name masked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server's handshake bytes were not RTMP.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The server did not accept the publish within the config's `publish_timeout`.
    #[error("not publishing after {0:?}")]
    Timeout(Duration),
    /// The chunk stream or a message from the server was malformed.
    #[error(transparent)]
    MessageLayer(#[from] MessageLayerError),
    /// connect was refused (`_error`, or an onStatus `NetConnection.Connect.*` error).
    #[error("connect rejected by the server: {code}: {description}")]
    ConnectRejected {
        /// The status code, e.g. `NetConnection.Connect.InvalidApp`.
        code: String,
        /// The server's text.
        description: String,
    },
    /// createStream or publish was refused (`_error`, or an onStatus error such as
    /// `NetStream.Publish.BadName`), or the server ended the publish.
    #[error("publish rejected by the server: {code}: {description}")]
    PublishRejected {
        /// The status code, e.g. `NetStream.Publish.BadName`.
        code: String,
        /// The server's text.
        description: String,
    },
    /// The play was refused (`NetStream.Play.StreamNotFound`, `Play.Failed`).
    #[error("play rejected by the server: {code}: {description}")]
    PlayRejected {
        /// The status code.
        code: String,
        /// The server's text.
        description: String,
    },
    /// The server broke the command sequence.
    #[error("protocol violation by the server: {0}")]
    Protocol(&'static str),
}

impl ClientError {
    /// True for rejections a retry will not fix (bad or refused key, wrong app): the
    /// relay should stop and tell the user instead of reconnecting. Transport and
    /// protocol errors, `Connect.Failed` and unknown codes are worth a retry.
    ///
    /// A BadName whose text says the name is "already" in use is not permanent:
    /// that is how nginx-rtmp ("Already publishing"), prism and Wowza refuse a key
    /// still held by our own previous, dropped connection, which the server lets go
    /// after its timeout.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::ConnectRejected { code, .. } => matches!(
                code.as_str(),
                "NetConnection.Connect.Rejected" | "NetConnection.Connect.InvalidApp"
            ),
            Self::PublishRejected { code, description } => {
                matches!(
                    code.as_str(),
                    "NetStream.Publish.BadName"
                        | "NetStream.Publish.Denied"
                        | "NetStream.Publish.Rejected"
                ) && !description.to_ascii_lowercase().contains("already")
            }
            Self::PlayRejected { .. }
            | Self::Handshake(_)
            | Self::Timeout(_)
            | Self::MessageLayer(_)
            | Self::Protocol(_) => false,
        }
    }
}
