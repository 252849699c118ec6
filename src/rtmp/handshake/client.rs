//! The client side of the handshake: what prism sends an ingest it pushes to.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::digest::{
    DigestLayout, PLAYER_KEY_FULL, PLAYER_KEY_TEXT, SERVER_KEY_FULL, SERVER_KEY_TEXT, find_digest,
    put_signed_response, signature_matches, write_digest,
};
use super::{
    DIGEST_SIZE, HandshakeError, HandshakeRandom, Outbox, PACKET_SIZE, Progress,
    RESPONSE_RANDOM_SIZE, RTMP_VERSION, VERSION_AND_PACKET_SIZE, check_version, echoes_random,
    handshake_packet, packet_at, version_field,
};

/// Version a digest-form client puts in C1: ffmpeg's 9.0.124.2, the most widely tested.
const CLIENT_DIGEST_VERSION: [u8; 4] = [9, 0, 124, 2];

/// Layout a digest-form client uses for its C1 digest (ffmpeg's choice).
const CLIENT_DIGEST_LAYOUT: DigestLayout = DigestLayout::OffsetAt8;

/// Which form a client handshake offers in C1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientForm {
    /// Zero version, no digest, like OBS: accepted by every ingest; the default.
    Plain,
    /// Version 9.0.124.2 with a C1 digest, like ffmpeg: for servers that insist on it.
    Digest,
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
