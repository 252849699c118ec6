//! The RTMP handshake (C0/C1/C2 and S0/S1/S2), free of I/O, for both roles and both forms.
//!
//! Every RTMP connection starts with a fixed-size exchange: a version byte (C0/S0), a 1536-byte
//! packet each way (C1/S1) and an answer to the peer's packet (C2/S2). Two forms exist in the
//! wild and prism must speak both:
//!
//! * **plain** ("simple"): C1/S1 = 4-byte time, 4 zero bytes, 1528 random bytes; C2/S2 echo the
//!   peer's C1/S1. OBS uses it for every stream, and every ingest accepts it.
//! * **digest** ("complex", Flash Player 9): bytes 4..8 carry a non-zero version and a 32-byte
//!   HMAC-SHA256 digest hides inside the packet at an offset derived from the packet itself;
//!   the answer is 1504 random bytes followed by a signature keyed from the peer's digest.
//!   FFmpeg always sends this form, and validates the server's answer when *playing*.
//!
//! The state machines only consume bytes once a whole unit (C0+C1, C2, S0+S1, S2) is buffered,
//! and never consume past the handshake: whatever the peer pipelines after its last handshake
//! packet (typically its first chunk, right after C2) stays in the caller's buffer for the chunk
//! layer. All sizes are fixed, so nothing is allocated from a length read off the wire.
//!
//! prism's sessions ([`super::server::ServerSession`], [`super::client::ClientSession`]) run
//! these state machines themselves, before their first chunk. A caller that speaks the
//! handshake alone (a test peer, a probe) drives them like this, draining the output after
//! *every* `read`, including the one that returns `Done`, or the peer never sees S0+S1+S2 / C2:
//!
//! ```text
//! let mut hs = ServerHandshake::new(epoch_ms);
//! let mut buf = BytesMut::with_capacity(HANDSHAKE_READ_CAPACITY);
//! loop {
//!     while let Some(out) = hs.take_output() { socket.write_all(&out).await?; }
//!     if hs.is_done() { break; }
//!     if socket.read_buf(&mut buf).await? == 0 { return Err(eof()); }
//!     hs.read(&mut buf)?;
//! }
//! // `buf` now holds only post-handshake bytes, for the chunk decoder.
//! ```
//!
//! The files: what both roles share is here (sizes, errors, the random bytes, the version
//! check); `server.rs` and `client.rs` hold one role each, with the choices each makes and the
//! peers (ffmpeg, OBS, nginx, YouTube) that made them necessary; `digest.rs` holds the digest
//! scheme (its keys, the two layouts, the HMAC computations) that both roles use.

use std::collections::VecDeque;

use bytes::Bytes;

mod client;
mod digest;
mod server;
#[cfg(test)]
mod tests;

pub use client::{ClientForm, ClientHandshake};
pub use digest::DigestLayout;
pub use server::ServerHandshake;

/// The only C0/S0 version byte prism speaks: plain (unencrypted) RTMP.
pub const RTMP_VERSION: u8 = 3;

/// C0/S0 version byte of encrypted RTMPE as sent by ffmpeg and librtmp; recognised only to give
/// a clear error instead of a confusing "unsupported version".
const RTMPE_VERSION: u8 = 6;

/// The other RTMPE version byte librtmp documents ("0x08 is RTMPE as well").
const RTMPE_ALT_VERSION: u8 = 8;

/// Size of C1, S1, C2 and S2: fixed by the protocol, which is why no size from the wire is ever
/// used for allocation here.
pub const PACKET_SIZE: usize = 1536;

/// Size of the random part of C1/S1 after the 4-byte time and 4-byte version fields.
pub const RANDOM_SIZE: usize = PACKET_SIZE - HEADER_SIZE;

/// Size of a digest or of a response signature (HMAC-SHA256 output).
pub const DIGEST_SIZE: usize = 32;

/// Size of the random part of a digest-form C2/S2; the signature fills the remaining 32 bytes.
pub const RESPONSE_RANDOM_SIZE: usize = PACKET_SIZE - DIGEST_SIZE;

/// Bytes of C1/S1 before the random part: 4-byte time, 4-byte version.
const HEADER_SIZE: usize = 8;

/// C0+C1 (or S0+S1): the first unit each side sends.
const VERSION_AND_PACKET_SIZE: usize = 1 + PACKET_SIZE;

/// Why a handshake cannot proceed. Both are fatal for the connection; anything else odd about
/// the peer (a digest or echo that does not validate) is only recorded, never fatal, because
/// real peers (YouTube's S1, ffmpeg's C2 to a plain server) routinely send such packets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The peer asked for RTMPE (C0/S0 = 6 or 8), whose Diffie-Hellman + RC4 layer prism does
    /// not implement; RTMPS is the supported way to encrypt.
    #[error("encrypted RTMPE not supported (peer sent version byte {version} in {packet})")]
    EncryptedUnsupported {
        /// Which packet carried the byte ("C0" or "S0").
        packet: &'static str,
        /// The version byte received.
        version: u8,
    },
    /// The peer's version byte is neither plain RTMP (3) nor RTMPE: it is not speaking RTMP
    /// (e.g. an HTTP or TLS client on the plain port).
    #[error("unsupported RTMP version byte {version} in {packet} (expected 3)")]
    UnsupportedVersion {
        /// Which packet carried the byte ("C0" or "S0").
        packet: &'static str,
        /// The version byte received.
        version: u8,
    },
}

/// What a call to `read` achieved; the caller loops on `NeedMore` and hands the buffer to the
/// chunk layer on `Done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A complete handshake unit is not buffered yet; nothing more was consumed.
    NeedMore,
    /// The handshake is over; the rest of the buffer belongs to the chunk layer.
    Done,
}

/// The random bytes one handshake needs, drawn up front so tests can inject fixed values and
/// the state machines never touch an RNG themselves.
#[derive(Clone)]
pub struct HandshakeRandom {
    /// Fills C1/S1 after the time and version fields.
    packet: [u8; RANDOM_SIZE],
    /// Fills a digest-form C2/S2 before its signature.
    response: [u8; RESPONSE_RANDOM_SIZE],
}

impl HandshakeRandom {
    /// Draws fresh bytes from the thread-local CSPRNG; what production code uses.
    pub fn generate() -> Self {
        Self::from_rng(&mut rand::rng())
    }

    /// Draws the bytes from any RNG, e.g. a seeded one for reproducible tests.
    pub fn from_rng<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        let mut random = Self::from_bytes([0; RANDOM_SIZE], [0; RESPONSE_RANDOM_SIZE]);
        rng.fill_bytes(&mut random.packet);
        rng.fill_bytes(&mut random.response);
        random
    }

    /// Uses exactly these bytes, so tests can predict every byte of the output.
    pub fn from_bytes(packet: [u8; RANDOM_SIZE], response: [u8; RESPONSE_RANDOM_SIZE]) -> Self {
        Self { packet, response }
    }
}

impl std::fmt::Debug for HandshakeRandom {
    /// Elides 3 KB of noise from debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandshakeRandom { .. }")
    }
}

/// Output waiting for the I/O layer. At most two packets are ever queued (a client's C0+C1 and
/// C2 if the caller did not drain in between), so the queue is preallocated exactly.
#[derive(Debug)]
struct Outbox(VecDeque<Bytes>);

impl Outbox {
    /// Most packets a handshake can have queued at once.
    const CAPACITY: usize = 2;

    fn new() -> Self {
        Self(VecDeque::with_capacity(Self::CAPACITY))
    }
}

/// Accepts only plain RTMP, naming RTMPE explicitly so an operator knows why the peer failed.
fn check_version(version: u8, packet: &'static str) -> Result<(), HandshakeError> {
    match version {
        RTMP_VERSION => Ok(()),
        RTMPE_VERSION | RTMPE_ALT_VERSION => {
            Err(HandshakeError::EncryptedUnsupported { packet, version })
        }
        _ => Err(HandshakeError::UnsupportedVersion { packet, version }),
    }
}

/// The whole 1536-byte packet starting at `start`, or `None` if not all of it is buffered yet.
fn packet_at(buf: &[u8], start: usize) -> Option<&[u8; PACKET_SIZE]> {
    let end = start.checked_add(PACKET_SIZE)?;
    buf.get(start..end)?.try_into().ok()
}

/// Lays out C1/S1: big-endian time, version field, random bytes.
fn handshake_packet(time: u32, version: [u8; 4], random: &[u8; RANDOM_SIZE]) -> [u8; PACKET_SIZE] {
    let mut packet = [0u8; PACKET_SIZE];
    packet[..4].copy_from_slice(&time.to_be_bytes());
    packet[4..HEADER_SIZE].copy_from_slice(&version);
    packet[HEADER_SIZE..].copy_from_slice(random);
    packet
}

/// Bytes 4..8 of C1/S1: zero in the plain form, a Flash/server version in the digest form.
fn version_field(packet: &[u8; PACKET_SIZE]) -> [u8; 4] {
    [packet[4], packet[5], packet[6], packet[7]]
}

/// Whether a plain-form C2/S2 echoes the random part of the packet we sent. Only bytes 8.. are
/// compared: the spec makes bytes 4..8 the time our packet was read, and ffmpeg's server zeroes
/// them, so a whole-packet comparison would flag correct peers.
fn echoes_random(response: &[u8; PACKET_SIZE], sent: &[u8]) -> bool {
    response.get(HEADER_SIZE..) == sent.get(HEADER_SIZE..)
}
