//! The I/O edge shared by the server (connections from encoders and players) and
//! the relay (connections to ingests): how bytes the sans-I/O sessions produce reach
//! a socket, written once for both directions.
//!
//! - [`write`]: an [`OutBuf`](crate::rtmp::chunk::OutBuf) to the socket with
//!   vectored writes, so shared payloads are never copied per connection, and
//!   [`within`], the stall deadline every write runs under.
//! - [`read`]: the input buffer's growth policy ([`ReadPolicy`]).
//! - [`socket`]: socket options for media (no Nagle; quick ACKs during a setup).
//! - [`workers`]: the single-threaded runtimes connections are spread over, one
//!   stream's fan-out on one of them.

pub mod read;
pub mod socket;
pub mod workers;
pub mod write;

pub use read::ReadPolicy;
pub use workers::{Incoming, Workers};
pub use write::{WriteError, poll_write_out, within, write_out};
