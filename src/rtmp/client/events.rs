//! What a client session reports to its driver.

#[cfg(doc)]
use super::ClientSession;

/// What the driver must know about.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// [`ClientSession::unpublish`] was called and its commands are queued: flush
    /// [`ClientSession::out`] and close. Reported at once rather than on the server's
    /// answer, because nginx answers nothing and the driver should not need a timer.
    Unpublished,
}
