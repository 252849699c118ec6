//! What a client session reports to its driver.

#[cfg(doc)]
use super::ClientSession;

/// What the driver must know about.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The server accepted connect; the stream is being created.
    Connected,
    /// The server accepted publish: metadata and media may be sent now.
    Publishing {
        /// The NetStream we publish on.
        stream_id: u32,
    },
    /// Any other status the server sent (warnings, notices), stream name masked.
    Status {
        /// "status", "warning"...
        level: String,
        /// E.g. `NetStream.Publish.Idle`.
        code: String,
        /// The server's text.
        description: String,
    },
    /// The server started the play (`NetStream.Play.Start`): media follows.
    Playing {
        /// The NetStream we play on.
        stream_id: u32,
    },
    /// An audio or video message of the stream played.
    Media {
        /// [`crate::rtmp::message::type_id::AUDIO`] or `VIDEO`.
        type_id: u8,
        /// Its timestamp in ms.
        timestamp: u32,
        /// The FLV tag body, shared with the read buffer's message.
        payload: bytes::Bytes,
    },
    /// The played stream's metadata (`onMetaData`, unwrapped from `@setDataFrame`).
    Metadata {
        /// The metadata object.
        metadata: super::super::amf0::Amf0Value,
    },
    /// Another data message of the played stream (cue points, text), as received.
    Data {
        /// Its timestamp in ms.
        timestamp: u32,
        /// The AMF0 body.
        payload: bytes::Bytes,
    },
    /// [`ClientSession::unpublish`] was called and its commands are queued: flush
    /// [`ClientSession::out`] and close. Reported at once rather than on the server's
    /// answer, because nginx answers nothing and the driver should not need a timer.
    Unpublished,
}
