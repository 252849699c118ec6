//! The hub: one entry per live stream, fanning the publisher's packets out to every
//! subscriber (players, relay destinations, encoders).
//!
//! Each stream keeps what a newcomer needs to start cleanly (metadata, the audio and
//! video sequence headers, the GOP cache) and a list of subscriber queues. The
//! publisher pushes each packet once; subscribers get `Bytes` handles to the same
//! payload. A push never waits: a full queue makes that subscriber drop frames.
//!
//! Where things are:
//! - [`registry`]: the [`Hub`] itself: admitting publishers and players by (app,
//!   name) within the [`limits`] on how many streams may be live or awaited;
//!   `directory` is its table, which whatever ends gives its entry back to;
//! - [`stream`]: one stream's state (caches, subscribers, counters) and the rules
//!   that decide where a subscriber may start;
//! - [`status`]: what a stream looks like from the outside ([`StreamInfo`]);
//! - [`publisher`]: the publishing side: classifying packets, caching; `fan_out`:
//!   queuing a packet for every subscriber, and inserting a data message (a cue
//!   point) that no input sent;
//! - [`grace`]: a dropped publisher's grace period, on the hub's side ([`Orphan`]);
//! - [`inputs`]: which input is on air (publisher, backup, standby slate) and the
//!   one timeline across switches;
//! - [`subscriber`]: the receiving side, and `subscriber_list`: the stream's
//!   subscribers, shared so that the publisher writes to them outside the lock;
//! - [`queue`]: each subscriber's bounded queue, its drop policy and direct writes;
//! - [`gop`], [`media_info`], [`tracks`], [`packet`]: the GOP cache, what a stream
//!   carries (and whether it has video at all), and the unit the hub moves.

pub mod arena;
mod directory;
mod fan_out;
pub mod gop;
pub mod grace;
pub mod inputs;
pub mod limits;
pub mod media_info;
pub mod packet;
pub mod publisher;
pub mod queue;
pub mod registry;
pub mod status;
pub mod stream;
pub mod subscriber;
mod subscriber_list;
#[cfg(test)]
mod tests;
pub mod tracks;

pub use gop::GopCache;
pub use grace::Orphan;
pub use inputs::InputRole;
pub use limits::{HubError, HubLimits};
pub use media_info::{AudioInfo, MediaInfo, VideoInfo};
pub use packet::{Packet, PacketKind};
pub use publisher::Publisher;
pub use queue::{DirectSink, PushOutcome, QueueLimits, SubscriberQueue};
pub use registry::Hub;
pub use status::StreamInfo;
pub use stream::Stream;
pub use subscriber::{Subscriber, SubscriberKind};
pub use tracks::Tracks;
