//! Re-encoding through supervised ffmpeg child processes.
//!
//! A destination with a profile takes a lease on its stream's encoder for that
//! profile ([`shared`]: one per profile per stream, shared by every destination
//! that asks for it); the encoder ([`encoder`]) takes the stream into ffmpeg as
//! FLV and publishes what comes back, which each destination then sends through
//! the same RTMP or RTMPS push and supervision as any destination. A
//! destination that needs video on an audio-only stream leases an encode of
//! a generated picture the same way ([`generated`]).

pub mod child;
pub mod encoder;
pub mod generated;
pub mod profile;
pub mod progress;
pub mod shared;
pub mod status;

pub use generated::AudioOnlyVideo;
pub use profile::{Profile, Profiles};
pub use status::{EncoderSnapshot, EncoderStatus};
