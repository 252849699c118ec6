//! The hub's bounds and why it refuses something: what the registry checks and every
//! stream is built with.

use super::queue::QueueLimits;

/// Hub-wide bounds.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Largest GOP kept for joiners, in payload bytes.
    pub gop_max_bytes: usize,
    /// Largest GOP kept for joiners, in packets.
    pub gop_max_packets: usize,
    /// Each subscriber's queue bounds.
    pub queue: QueueLimits,
    /// How many streams may be live at once (published, or waiting for a dropped
    /// publisher within its grace period).
    pub max_streams: usize,
    /// How many streams that are not live may be awaited by players at once. Counted
    /// apart from `max_streams`, so players waiting for names nobody publishes can
    /// never keep a publisher out.
    pub max_awaited_streams: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        Self {
            gop_max_bytes: 16 << 20,
            gop_max_packets: 4096,
            queue: QueueLimits {
                max_bytes: 16 << 20,
                max_packets: 4096,
            },
            max_streams: 10_000,
            max_awaited_streams: 10_000,
        }
    }
}

/// Why the hub refused something.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    /// Someone already publishes under this name.
    #[error("stream is already being published")]
    AlreadyPublishing,
    /// The configured stream limit is reached.
    #[error("too many streams ({0})")]
    TooManyStreams(usize),
    /// Players already wait for as many streams that are not live as allowed.
    #[error("too many streams awaited by players ({0})")]
    TooManyAwaited(usize),
    /// A backup publisher came while nobody publishes the stream it backs up.
    #[error("no publisher to back up: publish the stream first, then its backup")]
    NoPrimary,
}
