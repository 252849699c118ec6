//! prism: a live-streaming relay. One RTMP publish in, every platform out.
//!
//! The crate is layered so that the protocol can be tested without sockets:
//! [`rtmp`] and [`flv`] are sans-I/O codecs and session state machines, [`hub`] fans
//! packets out to subscribers, [`server`] drives sessions over tokio transports, and
//! [`app`] wires them into a running process with one shutdown tree.

pub mod app;
pub mod atomic_file;
pub mod auth;
pub mod backoff;
pub mod cluster;
pub mod config;
pub mod duration_key;
pub mod error;
pub mod event_log;
pub mod flv;
pub mod fmp4;
pub mod hls;
pub mod http;
pub mod hub;
pub mod logging;
pub mod mask;
pub mod presets;
pub mod rate;
pub mod record;
pub mod relay;
pub mod reload;
pub mod rtmp;
pub mod server;
pub mod standby;
pub mod stream_name;
pub mod target;
pub mod timestamp;
pub mod transcode;
pub mod transport;
pub mod users;

pub use app::App;
pub use config::Config;
pub use error::Error;
