//! Per-destination re-encoding through supervised ffmpeg child processes.
//!
//! A destination with a profile gets its own encoder ([`encoder`]): the stream goes
//! into ffmpeg as FLV and comes back as FLV, then leaves through the same RTMP or
//! RTMPS push and supervision as any destination.

pub mod encoder;
pub mod profile;
pub mod progress;
pub mod status;

pub use profile::{Profile, Profiles};
pub use status::{EncoderSnapshot, EncoderStatus};
