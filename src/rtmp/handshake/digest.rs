//! The digest ("complex", Flash Player 9) form of the handshake: where the digest hides in a
//! C1/S1, the keys it is computed with, and the signature that answers it in C2/S2.
//!
//! C1/S1 carry a non-zero version in bytes 4..8 and a 32-byte HMAC-SHA256 digest of the rest
//! of the packet, at an offset the packet itself selects (two layouts, see [`DigestLayout`]).
//! The digest is keyed with the public text part of the sender's key ("Genuine Adobe Flash
//! Player 001" for clients, "... Media Server 001" for servers). The answer (C2/S2) is 1504
//! random bytes and an HMAC-SHA256 over them, keyed with the HMAC of the peer's digest under
//! the signer's full key (text + a constant 32-byte tail).

use bytes::{BufMut, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{DIGEST_SIZE, PACKET_SIZE, RESPONSE_RANDOM_SIZE};

/// Each digest layout hides the digest inside a 764-byte block whose first 4 bytes select the
/// position; 728 = 764 - 4 - 32 keeps the 32-byte digest inside the block.
const DIGEST_OFFSET_MODULUS: usize = 728;

/// Size of the field whose byte sum selects the digest position.
const DIGEST_OFFSET_FIELD_SIZE: usize = 4;

/// Public text part of the Flash Player key; C1 digests are keyed with exactly these 30 bytes.
pub(super) const PLAYER_KEY_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";

/// Public text part of the Flash Media Server key; S1 digests are keyed with these 36 bytes.
pub(super) const SERVER_KEY_TEXT: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";

/// Constant tail of the "full" keys, used only to derive response-signature keys.
const KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];

/// Full player key: keys the C2 signature (derived from the server's S1 digest).
pub(super) const PLAYER_KEY_FULL: [u8; 62] = join_key(PLAYER_KEY_TEXT);

/// Full server key: keys the S2 signature (derived from the client's C1 digest).
pub(super) const SERVER_KEY_FULL: [u8; 68] = join_key(SERVER_KEY_TEXT);

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

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub(super) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_SIZE] {
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
pub(super) fn digest_offset(packet: &[u8; PACKET_SIZE], layout: DigestLayout) -> usize {
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
pub(super) fn compute_digest(
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
pub(super) fn embedded_digest(
    packet: &[u8; PACKET_SIZE],
    layout: DigestLayout,
) -> Option<[u8; DIGEST_SIZE]> {
    let offset = digest_offset(packet, layout);
    packet.get(offset..offset + DIGEST_SIZE)?.try_into().ok()
}

/// Finds a digest valid under `key`, trying the 772 layout and then the 8 layout as nginx and
/// ffmpeg do; returns the layout and the digest (which keys the response signature).
pub(super) fn find_digest(
    packet: &[u8; PACKET_SIZE],
    key: &[u8],
) -> Option<(DigestLayout, [u8; DIGEST_SIZE])> {
    DigestLayout::SEARCH_ORDER.into_iter().find_map(|layout| {
        let embedded = embedded_digest(packet, layout)?;
        (embedded == compute_digest(packet, layout, key)).then_some((layout, embedded))
    })
}

/// Computes the digest for `layout` and stores it in place; returns it for the caller to keep.
pub(super) fn write_digest(
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
pub(super) fn response_signature(
    peer_digest: &[u8; DIGEST_SIZE],
    full_key: &[u8],
    random: &[u8],
) -> [u8; DIGEST_SIZE] {
    let signing_key = hmac_sha256(full_key, &[peer_digest]);
    hmac_sha256(&signing_key, &[random])
}

/// Appends a digest-form C2/S2: the random bytes and their signature.
pub(super) fn put_signed_response(
    out: &mut BytesMut,
    random: &[u8; RESPONSE_RANDOM_SIZE],
    peer_digest: &[u8; DIGEST_SIZE],
    full_key: &[u8],
) {
    out.put_slice(random);
    out.put_slice(&response_signature(peer_digest, full_key, random));
}

/// Whether a digest-form C2/S2 carries the signature expected for `peer_digest`.
pub(super) fn signature_matches(
    response: &[u8; PACKET_SIZE],
    peer_digest: &[u8; DIGEST_SIZE],
    full_key: &[u8],
) -> bool {
    let (random, signature) = response.split_at(RESPONSE_RANDOM_SIZE);
    response_signature(peer_digest, full_key, random) == signature
}
