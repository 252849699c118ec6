use bytes::{BufMut, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use sha2::Sha256;

use super::digest::{PLAYER_KEY_FULL, PLAYER_KEY_TEXT, SERVER_KEY_FULL, SERVER_KEY_TEXT};
use super::digest::{digest_offset, hmac_sha256};
use super::*;

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

/// The form of a server answer (S0+S1+S2), read off its S1 the way a client would: `None` for
/// the plain form (zero version bytes), else the offset field of the layout whose server digest
/// validates. A non-zero version without a valid digest fails the test: prism never sends one.
fn s1_digest_field(answer: &[u8]) -> Option<usize> {
    let s1 = &answer[1..1537];
    if s1[4..8] == [0; 4] {
        return None;
    }
    let field = [772, 8]
        .into_iter()
        .find(|&field| spec_digest_is_valid(s1, field, SPEC_SERVER_TEXT));
    assert!(field.is_some(), "S1 has a version but no valid digest");
    field
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
    for field in [8, 772] {
        let (c1, c1_digest) = hand_built_digest_c1(field);
        let (_, answer) = server_answer_to(&[&[3u8][..], &c1].concat());
        assert_eq!(s1_digest_field(&answer), Some(field), "the client's layout");
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
    let (_, answer) = server_answer_to(&[&[3u8][..], &c1].concat());
    assert_eq!(s1_digest_field(&answer), None);
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
    let (_, answer) = server_answer_to(&[&[3u8][..], &c1].concat());
    assert_eq!(s1_digest_field(&answer), None);
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
    let mut client = ClientHandshake::with_random(0xAABB_CCDD, ClientForm::Plain, fixed_random(9));
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
    assert_eq!(s1_digest_field(&t.server_sent), None);
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
    assert_eq!(s1_digest_field(&t.server_sent), Some(8));
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
        let answer = server.take_output().unwrap();
        prop_assert_eq!(answer.len(), 3073);
        if flips.is_empty() {
            prop_assert_eq!(s1_digest_field(&answer), Some(772));
        }
    }
}
