//! The standby slate: what every destination of a stream receives while its
//! publisher is gone without a clean unpublish, so the platform sees one
//! uninterrupted stream.
//!
//! A slate is video and audio that match the live stream exactly (codec, profile,
//! level, size, frame rate; audio codec, rate, channels), so it can be spliced into
//! the stream with continuous timestamps and no new sequence header a platform
//! would treat as a new stream. This module turns "what the live stream carries"
//! into a cached, ready-to-play loop:
//!
//! - [`spec`]: [`SlateSpec`], from the hub's cached sequence headers and metadata;
//! - [`encoders`]: what the configured ffmpeg can encode (an HEVC or AV1 stream
//!   whose ffmpeg cannot encode or mux its codec gets a clear reason and keeps the
//!   grace behaviour);
//! - [`command`] and [`render`]: one ffmpeg run renders a 4-second loop, keyframes
//!   every 2 s, no B-frames, and [`slate`] cuts and verifies it (the rendered
//!   sequence header is parsed back and must match: never a silently wrong slate);
//! - [`cache`]: [`SlateCache`], rendering in the background when a stream goes live,
//!   one render at a time, bounded, failures remembered.
//!
//! The generated card is a dark background with "Stream will resume shortly" and the
//! stream's public title, over silence. It draws no clock: a slate is a cached loop
//! replayed for as long as the publisher is away, so any time drawn into it would
//! run backwards every 4 seconds, which looks more broken than no clock; a live
//! clock would mean encoding in real time for every stream on standby, the CPU this
//! cache exists to avoid.

pub mod cache;
pub mod command;
pub mod encoders;
pub mod error;
pub mod frame_rate;
pub mod parse;
pub mod render;
pub mod slate;
pub mod spec;

pub use cache::{CachedSlate, SlateCache, SlateUnavailable};
pub use encoders::{Capabilities, EncoderError};
pub use error::RenderError;
pub use frame_rate::FrameRate;
pub use render::render;
pub use slate::Slate;
pub use spec::{AudioSpec, SlateAudioCodec, SlateSpec, SlateVideoCodec, SpecError, VideoSpec};
