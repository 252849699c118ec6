//! The RTMP protocol, free of I/O: handshake, chunk stream, AMF, messages, sessions.
//!
//! Every type here consumes bytes and produces bytes or events; the tokio layer in
//! [`crate::server`] only moves them. That keeps every edge case a unit test.

pub mod aggregate;
pub mod amf0;
pub mod amf3;
pub mod chunk;
pub mod client;
pub mod handshake;
pub mod link;
pub mod message;
pub mod server;
