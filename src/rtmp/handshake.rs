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
//! Driving loop for a thin async layer (drain output after *every* `read`, including the one
//! that returns `Done`, or the peer never sees S0+S1+S2 / C2):
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
//! Facts (layouts, keys, offsets, what ffmpeg/OBS/nginx do) come from
//! `rtmp-interop.md` section 1; the policy decisions are documented on the types below.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

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

/// S0+S1+S2: prism's server answer, written in one go as SRS and nginx do.
const SERVER_ANSWER_SIZE: usize = 1 + 2 * PACKET_SIZE;

/// Each digest layout hides the digest inside a 764-byte block whose first 4 bytes select the
/// position; 728 = 764 - 4 - 32 keeps the 32-byte digest inside the block.
const DIGEST_OFFSET_MODULUS: usize = 728;

/// Size of the field whose byte sum selects the digest position.
const DIGEST_OFFSET_FIELD_SIZE: usize = 4;

/// Public text part of the Flash Player key; C1 digests are keyed with exactly these 30 bytes.
const PLAYER_KEY_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";

/// Public text part of the Flash Media Server key; S1 digests are keyed with these 36 bytes.
const SERVER_KEY_TEXT: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";

/// Constant tail of the "full" keys, used only to derive response-signature keys.
const KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];

/// Full player key: keys the C2 signature (derived from the server's S1 digest).
const PLAYER_KEY_FULL: [u8; 62] = join_key(PLAYER_KEY_TEXT);

/// Full server key: keys the S2 signature (derived from the client's C1 digest).
const SERVER_KEY_FULL: [u8; 68] = join_key(SERVER_KEY_TEXT);

/// Version prism puts in a digest-form S1. Its first byte must be >= 3, because that is what
/// makes ffmpeg (playing) validate the digest we send; the value is nginx-rtmp's, which every
/// client already accepts.
const SERVER_DIGEST_VERSION: [u8; 4] = [0x0D, 0x0E, 0x0A, 0x0D];

/// Version a digest-form client puts in C1: ffmpeg's 9.0.124.2, the most widely tested.
const CLIENT_DIGEST_VERSION: [u8; 4] = [9, 0, 124, 2];

/// Layout a digest-form client uses for its C1 digest (ffmpeg's choice).
const CLIENT_DIGEST_LAYOUT: DigestLayout = DigestLayout::OffsetAt8;

/// Builds a full key (text + constant tail) at compile time, so no runtime concatenation or
/// length check exists that could fail.
const fn join_key<const TEXT: usize, const FULL: usize>(text: &[u8; TEXT]) -> [u8; FULL] {
    let mut key = [0u8; FULL];
    let mut i = 0;
    while i < TEXT {
        key[i] = text[i];
        i += 1;
    }
    while i < FULL {
        key[i] = KEY_TAIL[i - TEXT];
        i += 1;
    }
    key
}

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

/// Where a digest sits in a C1/S1. Two layouts exist and verifiers try both, so the answer has
/// to say which one matched (the server answers in the same layout as the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestLayout {
    /// Offset field at bytes 8..12, digest at 12 + (sum % 728). ffmpeg's and nginx's choice.
    OffsetAt8,
    /// Offset field at bytes 772..776, digest at 776 + (sum % 728).
    OffsetAt772,
}

impl DigestLayout {
    /// Order in which verifiers try the layouts (nginx and ffmpeg start with 772).
    const SEARCH_ORDER: [DigestLayout; 2] = [DigestLayout::OffsetAt772, DigestLayout::OffsetAt8];

    /// First byte of the 4-byte field whose sum selects the digest position.
    const fn offset_field_start(self) -> usize {
        match self {
            DigestLayout::OffsetAt8 => 8,
            DigestLayout::OffsetAt772 => 772,
        }
    }
}

/// Which form a server handshake ended up in; lets the session log what the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeMode {
    /// Plain form: S1 has zero version bytes and S2 echoes C1.
    Plain,
    /// Digest form: the client's C1 digest validated in this layout, and S1 carries a server
    /// digest in the same layout.
    Digest(DigestLayout),
}

/// Which form a client handshake offers in C1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientForm {
    /// Zero version, no digest, like OBS: accepted by every ingest; the default.
    Plain,
    /// Version 9.0.124.2 with a C1 digest, like ffmpeg: for servers that insist on it.
    Digest,
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

/// Server side of the handshake: reads C0+C1, answers S0+S1+S2 at once, then reads C2.
///
/// It answers in digest form only when C1 has a non-zero version *and* a client digest
/// validates (nginx's rule); everything else gets the plain form with zero S1 version bytes,
/// because ffmpeg validates an S1 digest whenever S1 byte 4 is >= 3. A C2 that does not match
/// is only recorded (ffmpeg's own server merely warns), never fatal.
#[derive(Debug)]
pub struct ServerHandshake {
    epoch: u32,
    random: HandshakeRandom,
    state: ServerState,
    outbox: Outbox,
    mode: Option<HandshakeMode>,
    c2_verified: Option<bool>,
}

/// Where the server is in the exchange.
#[derive(Debug)]
enum ServerState {
    /// Waiting for C0 and the whole of C1.
    AwaitC0C1,
    /// S0+S1+S2 sent; waiting for C2, which should answer this S1.
    AwaitC2 {
        /// The S1 sent (a view of the output, not a copy).
        s1: Bytes,
        /// The digest embedded in S1, when answering in digest form.
        s1_digest: Option<[u8; DIGEST_SIZE]>,
    },
    /// Finished; further reads consume nothing.
    Done,
    /// Failed; further reads repeat the error.
    Failed(HandshakeError),
}

impl ServerHandshake {
    /// Starts a server handshake with fresh randomness; `epoch` (ms) goes into S1's time field,
    /// passed in because the codec never reads a clock.
    pub fn new(epoch: u32) -> Self {
        Self::with_random(epoch, HandshakeRandom::generate())
    }

    /// Starts a server handshake with the given random bytes (deterministic tests).
    pub fn with_random(epoch: u32, random: HandshakeRandom) -> Self {
        Self {
            epoch,
            random,
            state: ServerState::AwaitC0C1,
            outbox: Outbox::new(),
            mode: None,
            c2_verified: None,
        }
    }

    /// Consumes complete handshake units from the front of `buf` and queues the answers.
    ///
    /// Consumes nothing until a whole unit is buffered, and never anything after C2. A bad C0 is
    /// reported as soon as its single byte arrives (no need to wait for C1). After an error the
    /// same error is returned again.
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Progress, HandshakeError> {
        loop {
            match &self.state {
                ServerState::Failed(error) => return Err(error.clone()),
                ServerState::Done => return Ok(Progress::Done),
                ServerState::AwaitC0C1 => {
                    let Some(&version) = buf.first() else {
                        return Ok(Progress::NeedMore);
                    };
                    if let Err(error) = check_version(version, "C0") {
                        self.state = ServerState::Failed(error.clone());
                        return Err(error);
                    }
                    let Some(c1) = packet_at(buf, 1) else {
                        return Ok(Progress::NeedMore);
                    };
                    self.state = self.answer_c1(c1);
                    buf.advance(VERSION_AND_PACKET_SIZE);
                }
                ServerState::AwaitC2 { s1, s1_digest } => {
                    let Some(c2) = packet_at(buf, 0) else {
                        return Ok(Progress::NeedMore);
                    };
                    let verified = echoes_random(c2, s1)
                        || s1_digest
                            .is_some_and(|digest| signature_matches(c2, &digest, &PLAYER_KEY_FULL));
                    if !verified {
                        tracing::debug!("RTMP handshake: C2 does not answer our S1; ignored");
                    }
                    self.c2_verified = Some(verified);
                    buf.advance(PACKET_SIZE);
                    self.state = ServerState::Done;
                }
            }
        }
    }

    /// Next bytes to send to the client (S0+S1+S2 as one `Bytes`), if any.
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.outbox.0.pop_front()
    }

    /// Whether the handshake finished (the chunk layer may take over the buffer).
    pub fn is_done(&self) -> bool {
        matches!(self.state, ServerState::Done)
    }

    /// Form chosen for the answer, once C1 has been read; useful for logging the client kind.
    pub fn mode(&self) -> Option<HandshakeMode> {
        self.mode
    }

    /// Whether C2 answered our S1: it echoes S1's random bytes, or (digest form only) carries
    /// the signature keyed from our S1 digest. Both count, because ffmpeg publishing echoes S1
    /// even after a digest handshake while nginx signs. `None` until C2 is read. Informational
    /// only: a mismatch never fails the handshake.
    pub fn c2_verified(&self) -> Option<bool> {
        self.c2_verified
    }

    /// Builds and queues S0+S1+S2 for this C1; returns the state awaiting C2.
    fn answer_c1(&mut self, c1: &[u8; PACKET_SIZE]) -> ServerState {
        let client_digest = if version_field(c1) == [0; 4] {
            None
        } else {
            find_digest(c1, PLAYER_KEY_TEXT)
        };
        let mut out = BytesMut::with_capacity(SERVER_ANSWER_SIZE);
        out.put_u8(RTMP_VERSION);
        let s1_digest = match client_digest {
            Some((layout, c1_digest)) => {
                let mut s1 =
                    handshake_packet(self.epoch, SERVER_DIGEST_VERSION, &self.random.packet);
                let s1_digest = write_digest(&mut s1, layout, SERVER_KEY_TEXT);
                out.put_slice(&s1);
                put_signed_response(
                    &mut out,
                    &self.random.response,
                    &c1_digest,
                    &SERVER_KEY_FULL,
                );
                self.mode = Some(HandshakeMode::Digest(layout));
                Some(s1_digest)
            }
            None => {
                let s1 = handshake_packet(self.epoch, [0; 4], &self.random.packet);
                out.put_slice(&s1);
                out.put_slice(c1);
                self.mode = Some(HandshakeMode::Plain);
                None
            }
        };
        tracing::debug!(
            mode = ?self.mode,
            client_version = ?version_field(c1),
            "RTMP handshake: answering C1"
        );
        let out = out.freeze();
        let s1 = out.slice(1..VERSION_AND_PACKET_SIZE);
        self.outbox.0.push_back(out);
        ServerState::AwaitC2 { s1, s1_digest }
    }
}

/// Client side of the handshake: C0+C1 are queued by the constructor; reads S0+S1 (and sends
/// C2 right away, as the spec allows once S1 is in), then S2.
///
/// Never fails because the server's digest or signature does not validate: YouTube sends a
/// non-zero S1 version without a digest, and ingests accept an echoed C2 anyway. What was
/// found is recorded in [`ClientHandshake::server_digest`] and [`ClientHandshake::s2_verified`].
#[derive(Debug)]
pub struct ClientHandshake {
    response_random: [u8; RESPONSE_RANDOM_SIZE],
    /// The C1 sent (a view of the C0+C1 output), for checking an echoed S2.
    c1: Bytes,
    /// The digest embedded in C1 (digest form only), for checking a signed S2.
    c1_digest: Option<[u8; DIGEST_SIZE]>,
    state: ClientState,
    outbox: Outbox,
    server_digest: Option<DigestLayout>,
    s2_verified: Option<bool>,
}

/// Where the client is in the exchange.
#[derive(Debug)]
enum ClientState {
    /// C0+C1 sent; waiting for S0 and the whole of S1.
    AwaitS0S1,
    /// C2 sent; waiting for S2, checked against a signature if S1 carried a valid digest.
    AwaitS2 {
        /// Valid S1 digest, when the server answered in digest form.
        s1_digest: Option<[u8; DIGEST_SIZE]>,
    },
    /// Finished; further reads consume nothing.
    Done,
    /// Failed; further reads repeat the error.
    Failed(HandshakeError),
}

impl ClientHandshake {
    /// Starts a plain-form client (like OBS), which every ingest accepts; C0+C1 are queued at
    /// once. `epoch` (ms) goes into C1's time field.
    pub fn new(epoch: u32) -> Self {
        Self::with_random(epoch, ClientForm::Plain, HandshakeRandom::generate())
    }

    /// Starts a digest-form client (like ffmpeg) for servers that require the FP9 handshake.
    pub fn new_digest(epoch: u32) -> Self {
        Self::with_random(epoch, ClientForm::Digest, HandshakeRandom::generate())
    }

    /// Starts a client of the given form with the given random bytes (deterministic tests).
    pub fn with_random(epoch: u32, form: ClientForm, random: HandshakeRandom) -> Self {
        let (c1, c1_digest) = match form {
            ClientForm::Plain => (handshake_packet(epoch, [0; 4], &random.packet), None),
            ClientForm::Digest => {
                let mut c1 = handshake_packet(epoch, CLIENT_DIGEST_VERSION, &random.packet);
                let digest = write_digest(&mut c1, CLIENT_DIGEST_LAYOUT, PLAYER_KEY_TEXT);
                (c1, Some(digest))
            }
        };
        let mut c0c1 = BytesMut::with_capacity(VERSION_AND_PACKET_SIZE);
        c0c1.put_u8(RTMP_VERSION);
        c0c1.put_slice(&c1);
        let c0c1 = c0c1.freeze();
        let mut outbox = Outbox::new();
        outbox.0.push_back(c0c1.clone());
        Self {
            response_random: random.response,
            c1: c0c1.slice(1..),
            c1_digest,
            state: ClientState::AwaitS0S1,
            outbox,
            server_digest: None,
            s2_verified: None,
        }
    }

    /// Consumes complete handshake units from the front of `buf` and queues C2.
    ///
    /// Consumes nothing until a whole unit is buffered, and never anything after S2. A bad S0 is
    /// reported as soon as its byte arrives. After an error the same error is returned again.
    pub fn read(&mut self, buf: &mut BytesMut) -> Result<Progress, HandshakeError> {
        loop {
            match &self.state {
                ClientState::Failed(error) => return Err(error.clone()),
                ClientState::Done => return Ok(Progress::Done),
                ClientState::AwaitS0S1 => {
                    let Some(&version) = buf.first() else {
                        return Ok(Progress::NeedMore);
                    };
                    if let Err(error) = check_version(version, "S0") {
                        self.state = ClientState::Failed(error.clone());
                        return Err(error);
                    }
                    if buf.len() < VERSION_AND_PACKET_SIZE {
                        return Ok(Progress::NeedMore);
                    }
                    let s0s1 = buf.split_to(VERSION_AND_PACKET_SIZE).freeze();
                    self.state = self.answer_s1(s0s1.slice(1..));
                }
                ClientState::AwaitS2 { s1_digest } => {
                    let Some(s2) = packet_at(buf, 0) else {
                        return Ok(Progress::NeedMore);
                    };
                    let signed = s1_digest.is_some().then_some(self.c1_digest).flatten();
                    let verified = echoes_random(s2, &self.c1)
                        || signed
                            .is_some_and(|digest| signature_matches(s2, &digest, &SERVER_KEY_FULL));
                    if !verified {
                        tracing::debug!("RTMP handshake: S2 does not answer our C1; ignored");
                    }
                    self.s2_verified = Some(verified);
                    buf.advance(PACKET_SIZE);
                    self.state = ClientState::Done;
                }
            }
        }
    }

    /// Next bytes to send to the server (C0+C1 first, then C2), if any.
    pub fn take_output(&mut self) -> Option<Bytes> {
        self.outbox.0.pop_front()
    }

    /// Whether the handshake finished (the chunk layer may take over the buffer).
    pub fn is_done(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }

    /// Layout of a valid server digest found in S1 (digest-form clients only; plain clients do
    /// not look). `None` is normal for plain servers and YouTube.
    pub fn server_digest(&self) -> Option<DigestLayout> {
        self.server_digest
    }

    /// Whether S2 answered our C1: it echoes C1's random bytes, or (when S1 had a valid digest)
    /// carries the signature keyed from our C1 digest. `None` until S2 is read. Informational
    /// only: a mismatch never fails the handshake.
    pub fn s2_verified(&self) -> Option<bool> {
        self.s2_verified
    }

    /// Queues C2 for this S1; returns the state awaiting S2.
    fn answer_s1(&mut self, s1: Bytes) -> ClientState {
        let s1_digest = match (&self.c1_digest, <&[u8; PACKET_SIZE]>::try_from(s1.as_ref())) {
            (Some(_), Ok(s1_packet)) if version_field(s1_packet) != [0; 4] => {
                find_digest(s1_packet, SERVER_KEY_TEXT)
            }
            _ => None,
        };
        self.server_digest = s1_digest.map(|(layout, _)| layout);
        let c2 = match s1_digest {
            Some((_, digest)) => {
                let mut c2 = BytesMut::with_capacity(PACKET_SIZE);
                put_signed_response(&mut c2, &self.response_random, &digest, &PLAYER_KEY_FULL);
                c2.freeze()
            }
            // Echo S1 without copying: it is a view of the bytes just read.
            None => s1,
        };
        tracing::debug!(server_digest = ?self.server_digest, "RTMP handshake: answering S1");
        self.outbox.0.push_back(c2);
        ClientState::AwaitS2 {
            s1_digest: s1_digest.map(|(_, digest)| digest),
        }
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

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_SIZE] {
    // HMAC (RFC 2104) accepts keys of any length and hmac's `new_from_slice` never fails for
    // it; the `else` exists only to keep this path panic-free. An all-zero result would merely
    // be a digest that does not validate, which every caller already tolerates.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return [0; DIGEST_SIZE];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Position of the digest in `packet` for `layout`: (sum of the 4 offset-field bytes) % 728,
/// past the field. Always at most 1503, so the 32-byte digest ends within the packet.
pub(crate) fn digest_offset(packet: &[u8; PACKET_SIZE], layout: DigestLayout) -> usize {
    let field = layout.offset_field_start();
    let sum: usize = packet
        .iter()
        .skip(field)
        .take(DIGEST_OFFSET_FIELD_SIZE)
        .map(|&byte| usize::from(byte))
        .sum();
    field + DIGEST_OFFSET_FIELD_SIZE + sum % DIGEST_OFFSET_MODULUS
}

/// The digest `packet` should carry for `layout`: HMAC-SHA256 under `key` of all 1536 bytes
/// except the 32 digest bytes themselves.
pub(crate) fn compute_digest(
    packet: &[u8; PACKET_SIZE],
    layout: DigestLayout,
    key: &[u8],
) -> [u8; DIGEST_SIZE] {
    let offset = digest_offset(packet, layout);
    let before = packet.get(..offset).unwrap_or_default();
    let after = packet.get(offset + DIGEST_SIZE..).unwrap_or_default();
    hmac_sha256(key, &[before, after])
}

/// The 32 bytes sitting where `layout` says the digest is.
pub(crate) fn embedded_digest(
    packet: &[u8; PACKET_SIZE],
    layout: DigestLayout,
) -> Option<[u8; DIGEST_SIZE]> {
    let offset = digest_offset(packet, layout);
    packet.get(offset..offset + DIGEST_SIZE)?.try_into().ok()
}

/// Finds a digest valid under `key`, trying the 772 layout and then the 8 layout as nginx and
/// ffmpeg do; returns the layout and the digest (which keys the response signature).
pub(crate) fn find_digest(
    packet: &[u8; PACKET_SIZE],
    key: &[u8],
) -> Option<(DigestLayout, [u8; DIGEST_SIZE])> {
    DigestLayout::SEARCH_ORDER.into_iter().find_map(|layout| {
        let embedded = embedded_digest(packet, layout)?;
        (embedded == compute_digest(packet, layout, key)).then_some((layout, embedded))
    })
}

/// Computes the digest for `layout` and stores it in place; returns it for the caller to keep.
pub(crate) fn write_digest(
    packet: &mut [u8; PACKET_SIZE],
    layout: DigestLayout,
    key: &[u8],
) -> [u8; DIGEST_SIZE] {
    let digest = compute_digest(packet, layout, key);
    let offset = digest_offset(packet, layout);
    if let Some(slot) = packet.get_mut(offset..offset + DIGEST_SIZE) {
        slot.copy_from_slice(&digest);
    }
    digest
}

/// Signature closing a digest-form C2/S2: HMAC-SHA256 of its first 1504 bytes, keyed with
/// HMAC-SHA256(peer's digest) under the full key of the signing side.
pub(crate) fn response_signature(
    peer_digest: &[u8; DIGEST_SIZE],
    full_key: &[u8],
    random: &[u8],
) -> [u8; DIGEST_SIZE] {
    let signing_key = hmac_sha256(full_key, &[peer_digest]);
    hmac_sha256(&signing_key, &[random])
}

/// Appends a digest-form C2/S2: the random bytes and their signature.
fn put_signed_response(
    out: &mut BytesMut,
    random: &[u8; RESPONSE_RANDOM_SIZE],
    peer_digest: &[u8; DIGEST_SIZE],
    full_key: &[u8],
) {
    out.put_slice(random);
    out.put_slice(&response_signature(peer_digest, full_key, random));
}

/// Whether a plain-form C2/S2 echoes the random part of the packet we sent. Only bytes 8.. are
/// compared: the spec makes bytes 4..8 the time our packet was read, and ffmpeg's server zeroes
/// them, so a whole-packet comparison would flag correct peers.
fn echoes_random(response: &[u8; PACKET_SIZE], sent: &[u8]) -> bool {
    response.get(HEADER_SIZE..) == sent.get(HEADER_SIZE..)
}

/// Whether a digest-form C2/S2 carries the signature expected for `peer_digest`.
fn signature_matches(
    response: &[u8; PACKET_SIZE],
    peer_digest: &[u8; DIGEST_SIZE],
    full_key: &[u8],
) -> bool {
    let (random, signature) = response.split_at(RESPONSE_RANDOM_SIZE);
    response_signature(peer_digest, full_key, random) == signature
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ---- Spec re-statements, written independently of the code under test ----

    const SPEC_PLAYER_TEXT: &[u8] = b"Genuine Adobe Flash Player 001";
    const SPEC_SERVER_TEXT: &[u8] = b"Genuine Adobe Flash Media Server 001";
    const SPEC_TAIL_HEX: &str = "F0EEC24A8068BEE82E00D0D1029E7E576EEC5D2D29806FAB93B8E636CFEB31AE";

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn spec_full_key(text: &[u8]) -> Vec<u8> {
        [text, &hex(SPEC_TAIL_HEX)].concat()
    }

    fn spec_hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }

    /// Offset = (sum of the 4 bytes at `field`) mod 728 + field + 4.
    fn spec_offset(packet: &[u8], field: usize) -> usize {
        let sum: usize = packet[field..field + 4].iter().map(|&b| b as usize).sum();
        sum % 728 + field + 4
    }

    fn spec_digest(packet: &[u8], field: usize, key: &[u8]) -> Vec<u8> {
        let offset = spec_offset(packet, field);
        let mut message = packet[..offset].to_vec();
        message.extend_from_slice(&packet[offset + 32..]);
        spec_hmac(key, &message)
    }

    fn spec_digest_is_valid(packet: &[u8], field: usize, key: &[u8]) -> bool {
        let offset = spec_offset(packet, field);
        packet[offset..offset + 32] == spec_digest(packet, field, key)[..]
    }

    /// Signature = HMAC(first 1504 bytes, key = HMAC(peer digest, full key)).
    fn spec_signature(response: &[u8], peer_digest: &[u8], full_key: &[u8]) -> Vec<u8> {
        spec_hmac(&spec_hmac(full_key, peer_digest), &response[..1504])
    }

    /// A C1 built by hand as ffmpeg does: time, version 9.0.124.2, pattern bytes, and a digest
    /// at the layout whose offset field starts at `field`.
    fn hand_built_digest_c1(field: usize) -> (Vec<u8>, Vec<u8>) {
        let mut c1: Vec<u8> = (0..1536).map(|i| (i * 7 + 3) as u8).collect();
        c1[..4].copy_from_slice(&[0, 0, 0x12, 0x34]);
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        let offset = spec_offset(&c1, field);
        let digest = spec_digest(&c1, field, SPEC_PLAYER_TEXT);
        c1[offset..offset + 32].copy_from_slice(&digest);
        (c1, digest)
    }

    // ---- Helpers driving the state machines ----

    fn fixed_random(seed: u8) -> HandshakeRandom {
        let mut packet = [0u8; RANDOM_SIZE];
        let mut response = [0u8; RESPONSE_RANDOM_SIZE];
        for (i, byte) in packet.iter_mut().enumerate() {
            *byte = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
        for (i, byte) in response.iter_mut().enumerate() {
            *byte = (i as u8).wrapping_mul(17) ^ seed;
        }
        HandshakeRandom::from_bytes(packet, response)
    }

    fn drain_server(server: &mut ServerHandshake) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(bytes) = server.take_output() {
            out.extend_from_slice(&bytes);
        }
        out
    }

    fn drain_client(client: &mut ClientHandshake) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(bytes) = client.take_output() {
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Everything each side sent, captured while running both in memory.
    struct Transcript {
        client_sent: Vec<u8>,
        server_sent: Vec<u8>,
    }

    fn run_pair(client: &mut ClientHandshake, server: &mut ServerHandshake) -> Transcript {
        let mut to_server = BytesMut::new();
        let mut to_client = BytesMut::new();
        let mut transcript = Transcript {
            client_sent: Vec::new(),
            server_sent: Vec::new(),
        };
        for _ in 0..8 {
            let sent = drain_client(client);
            transcript.client_sent.extend_from_slice(&sent);
            to_server.extend_from_slice(&sent);
            server.read(&mut to_server).unwrap();
            let sent = drain_server(server);
            transcript.server_sent.extend_from_slice(&sent);
            to_client.extend_from_slice(&sent);
            client.read(&mut to_client).unwrap();
        }
        assert!(client.is_done() && server.is_done());
        assert!(to_server.is_empty() && to_client.is_empty());
        transcript
    }

    fn c1_of(transcript: &Transcript) -> &[u8] {
        &transcript.client_sent[1..1537]
    }
    fn c2_of(transcript: &Transcript) -> &[u8] {
        &transcript.client_sent[1537..]
    }
    fn s1_of(transcript: &Transcript) -> &[u8] {
        &transcript.server_sent[1..1537]
    }
    fn s2_of(transcript: &Transcript) -> &[u8] {
        &transcript.server_sent[1537..]
    }

    // ---- Known vectors ----

    #[test]
    fn hmac_matches_rfc4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            mac.to_vec(),
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }

    #[test]
    fn full_keys_are_text_plus_documented_tail() {
        assert_eq!(PLAYER_KEY_FULL.to_vec(), spec_full_key(SPEC_PLAYER_TEXT));
        assert_eq!(SERVER_KEY_FULL.to_vec(), spec_full_key(SPEC_SERVER_TEXT));
        assert_eq!(PLAYER_KEY_TEXT.as_slice(), SPEC_PLAYER_TEXT);
        assert_eq!(SERVER_KEY_TEXT.as_slice(), SPEC_SERVER_TEXT);
    }

    fn packet_with_field(field: usize, bytes: [u8; 4]) -> [u8; PACKET_SIZE] {
        let mut packet = [0u8; PACKET_SIZE];
        packet[field..field + 4].copy_from_slice(&bytes);
        packet
    }

    #[test]
    fn digest_offsets_follow_both_layouts() {
        let cases = [
            ([0, 0, 0, 0], 12, 776),
            ([0xFF; 4], 12 + 1020 - 728, 776 + 1020 - 728),
            ([255, 255, 217, 0], 739, 1503), // sum 727: the largest offset
            ([255, 255, 218, 0], 12, 776),   // sum 728 wraps to 0
        ];
        for (field_bytes, early, late) in cases {
            let packet = packet_with_field(8, field_bytes);
            assert_eq!(digest_offset(&packet, DigestLayout::OffsetAt8), early);
            let packet = packet_with_field(772, field_bytes);
            assert_eq!(digest_offset(&packet, DigestLayout::OffsetAt772), late);
        }
    }

    #[test]
    fn digest_offsets_never_let_the_digest_leave_its_half() {
        for sum in 0..=1020usize {
            let a = sum.min(255);
            let b = (sum - a).min(255);
            let c = (sum - a - b).min(255);
            let d = sum - a - b - c;
            let bytes = [a as u8, b as u8, c as u8, d as u8];
            let early = digest_offset(&packet_with_field(8, bytes), DigestLayout::OffsetAt8);
            assert!((12..=772 - 32).contains(&early));
            let late = digest_offset(&packet_with_field(772, bytes), DigestLayout::OffsetAt772);
            assert!((776..=PACKET_SIZE - 32).contains(&late));
        }
    }

    // ---- Server with clients built by hand ----

    fn server_answer_to(c0c1: &[u8]) -> (ServerHandshake, Vec<u8>) {
        let mut server = ServerHandshake::with_random(0x0102_0304, fixed_random(5));
        let mut buf = BytesMut::from(c0c1);
        assert_eq!(server.read(&mut buf), Ok(Progress::NeedMore));
        assert!(buf.is_empty());
        let answer = drain_server(&mut server);
        assert_eq!(answer.len(), 3073, "S0+S1+S2 are sent together");
        (server, answer)
    }

    #[test]
    fn server_answers_hand_built_digest_c1_in_digest_form() {
        for (field, layout) in [
            (8, DigestLayout::OffsetAt8),
            (772, DigestLayout::OffsetAt772),
        ] {
            let (c1, c1_digest) = hand_built_digest_c1(field);
            let (server, answer) = server_answer_to(&[&[3u8][..], &c1].concat());
            assert_eq!(server.mode(), Some(HandshakeMode::Digest(layout)));
            assert_eq!(answer[0], 3);
            let s1 = &answer[1..1537];
            let s2 = &answer[1537..];
            assert_eq!(&s1[..4], &[1, 2, 3, 4], "S1 time is the epoch");
            assert!(s1[4] >= 3, "ffmpeg only validates S1 when byte 4 >= 3");
            assert!(spec_digest_is_valid(s1, field, SPEC_SERVER_TEXT));
            let expected = spec_signature(s2, &c1_digest, &spec_full_key(SPEC_SERVER_TEXT));
            assert_eq!(&s2[1504..], &expected[..]);
            assert_ne!(s2, &c1[..], "digest-form S2 is not an echo");
        }
    }

    #[test]
    fn server_falls_back_to_plain_for_nonzero_version_without_digest() {
        let mut c1: Vec<u8> = (0..1536).map(|i| (i * 13) as u8).collect();
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        let (server, answer) = server_answer_to(&[&[3u8][..], &c1].concat());
        assert_eq!(server.mode(), Some(HandshakeMode::Plain));
        assert_eq!(&answer[1 + 4..1 + 8], &[0, 0, 0, 0]);
        assert_eq!(&answer[1537..], &c1[..], "plain S2 echoes C1");
    }

    #[test]
    fn server_treats_valid_digest_with_zero_version_as_plain() {
        let (mut c1, _) = hand_built_digest_c1(8);
        c1[4..8].copy_from_slice(&[0; 4]);
        // Re-sign with zero version so the digest is valid: nginx still answers plain.
        let offset = spec_offset(&c1, 8);
        let digest = spec_digest(&c1, 8, SPEC_PLAYER_TEXT);
        c1[offset..offset + 32].copy_from_slice(&digest);
        let (server, _) = server_answer_to(&[&[3u8][..], &c1].concat());
        assert_eq!(server.mode(), Some(HandshakeMode::Plain));
    }

    #[test]
    fn plain_s1_is_time_zero_version_and_random() {
        let c1 = [0u8; 1536];
        let (_, answer) = server_answer_to(&[&[3u8][..], &c1].concat());
        let mut expected = vec![1, 2, 3, 4, 0, 0, 0, 0];
        expected.extend_from_slice(&fixed_random(5).packet);
        assert_eq!(&answer[1..1537], &expected[..]);
    }

    #[test]
    fn server_tolerates_c2_that_does_not_echo_s1() {
        let (mut server, _) = server_answer_to(&[0x03; 1537]);
        let mut buf = BytesMut::from(&[0xAB; 1536][..]);
        assert_eq!(server.read(&mut buf), Ok(Progress::Done));
        assert_eq!(server.c2_verified(), Some(false));
    }

    #[test]
    fn server_leaves_pipelined_bytes_after_c2() {
        let chunk_start = [0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9F, 0x14];
        let (mut server, answer) = server_answer_to(&[0x03; 1537]);
        let mut buf = BytesMut::from(&answer[1..1537]); // C2 = echo of S1
        buf.extend_from_slice(&chunk_start);
        assert_eq!(server.read(&mut buf), Ok(Progress::Done));
        assert_eq!(&buf[..], &chunk_start);
        assert_eq!(server.c2_verified(), Some(true));
        assert_eq!(server.read(&mut buf), Ok(Progress::Done));
        assert_eq!(&buf[..], &chunk_start, "reads after Done consume nothing");
    }

    #[test]
    fn server_completes_from_one_buffer_holding_c0_c1_c2_and_more() {
        let mut server = ServerHandshake::with_random(0, fixed_random(1));
        let mut buf = BytesMut::from(&[3u8; 1 + 1536 + 1536 + 3][..]);
        assert_eq!(server.read(&mut buf), Ok(Progress::Done));
        assert_eq!(buf.len(), 3);
        assert_eq!(drain_server(&mut server).len(), 3073);
    }

    #[test]
    fn server_rejects_bad_c0_at_once_and_keeps_failing() {
        for version in [0u8, 1, 2, 4, 5, 0x16, 0x47, 255] {
            let mut server = ServerHandshake::with_random(0, fixed_random(0));
            let mut buf = BytesMut::from(&[version][..]);
            let expected = HandshakeError::UnsupportedVersion {
                packet: "C0",
                version,
            };
            assert_eq!(server.read(&mut buf), Err(expected.clone()));
            assert_eq!(buf.len(), 1, "nothing consumed on error");
            assert_eq!(server.read(&mut buf), Err(expected));
            assert!(server.take_output().is_none());
            assert!(!server.is_done());
        }
    }

    #[test]
    fn server_rejects_rtmpe_with_a_clear_error() {
        for version in [6u8, 8] {
            let mut server = ServerHandshake::with_random(0, fixed_random(0));
            let error = server
                .read(&mut BytesMut::from(&[version][..]))
                .unwrap_err();
            assert_eq!(
                error,
                HandshakeError::EncryptedUnsupported {
                    packet: "C0",
                    version
                }
            );
            assert!(error.to_string().contains("encrypted RTMPE not supported"));
        }
    }

    // ---- Client against servers built by hand ----

    #[test]
    fn plain_client_sends_c0_c1_at_once() {
        let mut client =
            ClientHandshake::with_random(0xAABB_CCDD, ClientForm::Plain, fixed_random(9));
        let c0c1 = drain_client(&mut client);
        let mut expected = vec![3, 0xAA, 0xBB, 0xCC, 0xDD, 0, 0, 0, 0];
        expected.extend_from_slice(&fixed_random(9).packet);
        assert_eq!(c0c1, expected);
    }

    #[test]
    fn digest_client_c1_carries_an_ffmpeg_style_digest() {
        let mut client = ClientHandshake::with_random(7, ClientForm::Digest, fixed_random(9));
        let c0c1 = drain_client(&mut client);
        assert_eq!(c0c1.len(), 1537);
        assert_eq!(&c0c1[5..9], &[9, 0, 124, 2]);
        assert!(spec_digest_is_valid(&c0c1[1..], 8, SPEC_PLAYER_TEXT));
    }

    #[test]
    fn digest_client_tolerates_youtube_like_s1_without_digest() {
        let mut client = ClientHandshake::with_random(0, ClientForm::Digest, fixed_random(2));
        let c1 = drain_client(&mut client)[1..].to_vec();
        let mut s1: Vec<u8> = (0..1536).map(|i| (i * 11) as u8).collect();
        s1[4..8].copy_from_slice(&[4, 0, 0, 1]); // non-zero version, no digest
        let mut buf = BytesMut::from(&[&[3u8][..], &s1, &c1].concat()[..]);
        assert_eq!(client.read(&mut buf), Ok(Progress::Done));
        assert_eq!(client.server_digest(), None);
        assert_eq!(client.s2_verified(), Some(true));
        assert_eq!(drain_client(&mut client), s1, "C2 echoes S1");
    }

    #[test]
    fn client_tolerates_bad_s2_signature() {
        let mut client = ClientHandshake::with_random(0, ClientForm::Digest, fixed_random(2));
        let mut server = ServerHandshake::with_random(0, fixed_random(3));
        let mut to_server = BytesMut::from(&drain_client(&mut client)[..]);
        server.read(&mut to_server).unwrap();
        let mut answer = drain_server(&mut server);
        let last = answer.len() - 1;
        answer[last] ^= 1;
        let mut buf = BytesMut::from(&answer[..]);
        assert_eq!(client.read(&mut buf), Ok(Progress::Done));
        assert!(client.server_digest().is_some());
        assert_eq!(client.s2_verified(), Some(false));
    }

    #[test]
    fn client_sends_c2_once_s1_is_in_without_waiting_for_s2() {
        let mut client = ClientHandshake::with_random(0, ClientForm::Plain, fixed_random(2));
        drain_client(&mut client);
        let s1 = [0x42u8; 1536];
        let mut buf = BytesMut::from(&[&[3u8][..], &s1].concat()[..]);
        assert_eq!(client.read(&mut buf), Ok(Progress::NeedMore));
        assert_eq!(drain_client(&mut client), s1.to_vec());
        assert!(!client.is_done());
    }

    #[test]
    fn client_leaves_bytes_after_s2() {
        let extra = [0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x01];
        let mut client = ClientHandshake::with_random(0, ClientForm::Plain, fixed_random(2));
        drain_client(&mut client);
        let mut buf = BytesMut::from(&[3u8; 3073][..]);
        buf.extend_from_slice(&extra);
        assert_eq!(client.read(&mut buf), Ok(Progress::Done));
        assert_eq!(&buf[..], &extra);
        assert_eq!(
            client.s2_verified(),
            Some(false),
            "S2 was not an echo of C1"
        );
    }

    #[test]
    fn client_rejects_bad_s0() {
        let mut client = ClientHandshake::with_random(0, ClientForm::Plain, fixed_random(2));
        let mut buf = BytesMut::from(&[4u8, 0, 0][..]);
        let expected = HandshakeError::UnsupportedVersion {
            packet: "S0",
            version: 4,
        };
        assert_eq!(client.read(&mut buf), Err(expected.clone()));
        assert_eq!(client.read(&mut buf), Err(expected));
        assert_eq!(buf.len(), 3);
        let mut buf = BytesMut::from(&[6u8][..]);
        let mut client = ClientHandshake::with_random(0, ClientForm::Plain, fixed_random(2));
        assert!(matches!(
            client.read(&mut buf),
            Err(HandshakeError::EncryptedUnsupported { .. })
        ));
    }

    // ---- Both roles together ----

    #[test]
    fn plain_client_and_server_agree() {
        let mut client = ClientHandshake::with_random(100, ClientForm::Plain, fixed_random(1));
        let mut server = ServerHandshake::with_random(200, fixed_random(2));
        let t = run_pair(&mut client, &mut server);
        assert_eq!(server.mode(), Some(HandshakeMode::Plain));
        assert_eq!(&s1_of(&t)[4..8], &[0, 0, 0, 0]);
        assert_eq!(s2_of(&t), c1_of(&t));
        assert_eq!(c2_of(&t), s1_of(&t));
        assert_eq!(client.server_digest(), None);
        assert_eq!(client.s2_verified(), Some(true));
        assert_eq!(server.c2_verified(), Some(true));
    }

    #[test]
    fn digest_client_and_server_agree() {
        let mut client = ClientHandshake::with_random(100, ClientForm::Digest, fixed_random(1));
        let mut server = ServerHandshake::with_random(200, fixed_random(2));
        let t = run_pair(&mut client, &mut server);
        assert_eq!(
            server.mode(),
            Some(HandshakeMode::Digest(DigestLayout::OffsetAt8))
        );
        assert_eq!(client.server_digest(), Some(DigestLayout::OffsetAt8));
        assert_eq!(client.s2_verified(), Some(true));
        assert_eq!(server.c2_verified(), Some(true));
        // C2 checked independently: signed with the S1 digest and the full player key.
        let s1 = s1_of(&t);
        let offset = spec_offset(s1, 8);
        let expected = spec_signature(
            c2_of(&t),
            &s1[offset..offset + 32],
            &spec_full_key(SPEC_PLAYER_TEXT),
        );
        assert_eq!(&c2_of(&t)[1504..], &expected[..]);
    }

    #[test]
    fn digest_client_and_plain_form_server_still_agree_on_echoes() {
        // A server answering a digest C1 in plain form (like one without FP9 support).
        let mut client = ClientHandshake::with_random(0, ClientForm::Digest, fixed_random(1));
        let c1 = drain_client(&mut client)[1..].to_vec();
        let s1 = [0x55u8; 1536];
        let mut buf = BytesMut::from(&[&[3u8][..], &s1, &c1].concat()[..]);
        assert_eq!(client.read(&mut buf), Ok(Progress::Done));
        assert_eq!(client.s2_verified(), Some(true));
        assert_eq!(drain_client(&mut client), s1.to_vec());
    }

    #[test]
    fn digest_server_accepts_echoed_c2_like_ffmpeg_publishing() {
        let (c1, _) = hand_built_digest_c1(8);
        let (mut server, answer) = server_answer_to(&[&[3u8][..], &c1].concat());
        let mut c2 = BytesMut::from(&answer[1..1537]);
        assert_eq!(server.read(&mut c2), Ok(Progress::Done));
        assert_eq!(server.c2_verified(), Some(true));
    }

    #[test]
    fn digest_server_records_c2_that_is_neither_echo_nor_signature() {
        let (c1, _) = hand_built_digest_c1(8);
        let (mut server, answer) = server_answer_to(&[&[3u8][..], &c1].concat());
        let mut c2 = BytesMut::from(&answer[1..1537]);
        c2[1535] ^= 0x80;
        assert_eq!(server.read(&mut c2), Ok(Progress::Done));
        assert_eq!(server.c2_verified(), Some(false));
    }

    #[test]
    fn digest_client_accepts_s2_echo_with_zeroed_time2_like_ffmpeg_server() {
        let mut client = ClientHandshake::with_random(9, ClientForm::Digest, fixed_random(1));
        let mut s2 = drain_client(&mut client)[1..].to_vec();
        s2[4..8].copy_from_slice(&[0; 4]);
        let s1 = [0x33u8; 1536];
        let mut buf = BytesMut::from(&[&[3u8][..], &s1, &s2].concat()[..]);
        assert_eq!(client.read(&mut buf), Ok(Progress::Done));
        assert_eq!(client.s2_verified(), Some(true));
    }

    fn run_byte_by_byte(form: ClientForm) -> Transcript {
        let mut client = ClientHandshake::with_random(1, form, fixed_random(1));
        let mut server = ServerHandshake::with_random(2, fixed_random(2));
        let mut to_server = BytesMut::new();
        let mut to_client = BytesMut::new();
        let mut client_sent = Vec::new();
        let mut server_sent = Vec::new();
        let mut pending_to_server = Vec::new();
        let mut pending_to_client = Vec::new();
        for _ in 0..4 * 3073 {
            let out = drain_client(&mut client);
            client_sent.extend_from_slice(&out);
            pending_to_server.extend(out);
            let out = drain_server(&mut server);
            server_sent.extend_from_slice(&out);
            pending_to_client.extend(out);
            if !pending_to_server.is_empty() {
                to_server.put_u8(pending_to_server.remove(0));
                server.read(&mut to_server).unwrap();
            }
            if !pending_to_client.is_empty() {
                to_client.put_u8(pending_to_client.remove(0));
                client.read(&mut to_client).unwrap();
            }
        }
        assert!(client.is_done() && server.is_done());
        assert_eq!(client.s2_verified(), Some(true));
        assert_eq!(server.c2_verified(), Some(true));
        Transcript {
            client_sent,
            server_sent,
        }
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_bytes() {
        for form in [ClientForm::Plain, ClientForm::Digest] {
            let slow = run_byte_by_byte(form);
            let mut client = ClientHandshake::with_random(1, form, fixed_random(1));
            let mut server = ServerHandshake::with_random(2, fixed_random(2));
            let fast = run_pair(&mut client, &mut server);
            assert_eq!(slow.client_sent, fast.client_sent);
            assert_eq!(slow.server_sent, fast.server_sent);
        }
    }

    #[test]
    fn seeded_rng_gives_reproducible_packets() {
        use rand::SeedableRng;
        let make = || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(42);
            let random = HandshakeRandom::from_rng(&mut rng);
            let mut client = ClientHandshake::with_random(0, ClientForm::Plain, random);
            drain_client(&mut client)
        };
        let first = make();
        assert_eq!(first, make());
        assert!(first[9..].iter().any(|&b| b != 0), "random part was filled");
        let mut fresh = ClientHandshake::new(0);
        assert_ne!(drain_client(&mut fresh), first);
    }

    // ---- Robustness ----

    /// Feeds `bytes` in chunks of the given sizes; returns total consumed.
    fn feed_server(bytes: &[u8], chunk_sizes: &[usize]) -> usize {
        let mut server = ServerHandshake::new(0);
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let mut sizes = chunk_sizes.iter().cycle();
        while fed < bytes.len() {
            let take = (*sizes.next().unwrap()).min(bytes.len() - fed);
            buf.extend_from_slice(&bytes[fed..fed + take]);
            fed += take;
            if server.read(&mut buf).is_err() {
                break;
            }
            while server.take_output().is_some() {}
        }
        fed - buf.len()
    }

    fn feed_client(form: ClientForm, bytes: &[u8], chunk_sizes: &[usize]) -> usize {
        let mut client = ClientHandshake::with_random(0, form, fixed_random(4));
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let mut sizes = chunk_sizes.iter().cycle();
        while fed < bytes.len() {
            let take = (*sizes.next().unwrap()).min(bytes.len() - fed);
            buf.extend_from_slice(&bytes[fed..fed + take]);
            fed += take;
            if client.read(&mut buf).is_err() {
                break;
            }
            while client.take_output().is_some() {}
        }
        fed - buf.len()
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_or_overconsume(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..4000),
            chunk_sizes in proptest::collection::vec(1usize..2000, 1..8),
            force_version in any::<bool>(),
        ) {
            if force_version && !bytes.is_empty() {
                bytes[0] = RTMP_VERSION;
            }
            let consumed = feed_server(&bytes, &chunk_sizes);
            prop_assert!(consumed <= 3073);
            if bytes.first() == Some(&RTMP_VERSION) {
                let expected = if bytes.len() >= 3073 { 3073 }
                    else if bytes.len() >= 1537 { 1537 } else { 0 };
                prop_assert_eq!(consumed, expected);
            }
            for form in [ClientForm::Plain, ClientForm::Digest] {
                let consumed = feed_client(form, &bytes, &chunk_sizes);
                prop_assert!(consumed <= 3073);
            }
        }

        #[test]
        fn mutated_digest_c1_never_panics(
            flips in proptest::collection::vec((0usize..1536, any::<u8>()), 0..6),
        ) {
            let (mut c1, _) = hand_built_digest_c1(772);
            for (at, value) in &flips {
                c1[*at] = *value;
            }
            let mut server = ServerHandshake::new(0);
            let mut buf = BytesMut::from(&[&[3u8][..], &c1].concat()[..]);
            prop_assert_eq!(server.read(&mut buf), Ok(Progress::NeedMore));
            prop_assert!(server.mode().is_some());
            let answer = server.take_output().unwrap();
            prop_assert_eq!(answer.len(), 3073);
            if flips.is_empty() {
                prop_assert_eq!(
                    server.mode(),
                    Some(HandshakeMode::Digest(DigestLayout::OffsetAt772))
                );
            }
        }
    }
}
