//! The server side of the handshake: what prism answers an encoder or a player.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::digest::{
    DigestLayout, PLAYER_KEY_FULL, PLAYER_KEY_TEXT, SERVER_KEY_FULL, SERVER_KEY_TEXT, find_digest,
    put_signed_response, signature_matches, write_digest,
};
use super::{
    DIGEST_SIZE, HandshakeError, HandshakeRandom, Outbox, PACKET_SIZE, Progress, RTMP_VERSION,
    VERSION_AND_PACKET_SIZE, check_version, echoes_random, handshake_packet, packet_at,
    version_field,
};

/// S0+S1+S2: prism's server answer, written in one go as SRS and nginx do.
const SERVER_ANSWER_SIZE: usize = 1 + 2 * PACKET_SIZE;

/// Version prism puts in a digest-form S1. Its first byte must be >= 3, because that is what
/// makes ffmpeg (playing) validate the digest we send; the value is nginx-rtmp's, which every
/// client already accepts.
const SERVER_DIGEST_VERSION: [u8; 4] = [0x0D, 0x0E, 0x0A, 0x0D];

/// Which form the server answered in: logged (at debug level, once per connection) to say what
/// the client speaks. Nothing else needs it, so it is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandshakeMode {
    /// Plain form: S1 has zero version bytes and S2 echoes C1.
    Plain,
    /// Digest form: the client's C1 digest validated in this layout, and S1 carries a server
    /// digest in the same layout.
    Digest(DigestLayout),
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
        let (mode, s1_digest) = match client_digest {
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
                (HandshakeMode::Digest(layout), Some(s1_digest))
            }
            None => {
                let s1 = handshake_packet(self.epoch, [0; 4], &self.random.packet);
                out.put_slice(&s1);
                out.put_slice(c1);
                (HandshakeMode::Plain, None)
            }
        };
        tracing::debug!(
            ?mode,
            client_version = ?version_field(c1),
            "RTMP handshake: answering C1"
        );
        let out = out.freeze();
        let s1 = out.slice(1..VERSION_AND_PACKET_SIZE);
        self.outbox.0.push_back(out);
        ServerState::AwaitC2 { s1, s1_digest }
    }
}
