//! The RTMP protocol, free of I/O: handshake, chunk stream, AMF, messages, sessions.
//!
//! Every type here consumes bytes and produces bytes or events; the tokio layer in
//! [`crate::server`] only moves them. That keeps every edge case a unit test.

pub mod aggregate;
pub mod amf;
pub mod chunk;
pub mod client;
pub mod cue;
pub mod handshake;
pub mod message;
pub mod message_layer;
#[cfg(test)]
pub(crate) mod pair;
pub mod server;

/// AMF0 and AMF3 live in [`amf`]; these paths are what the rest of prism imports.
pub use amf::{amf0, amf3};
