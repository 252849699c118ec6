//! Proves that `ServerHandshake` never panics on any byte stream, however it is split into
//! reads, and never consumes more than C0+C1+C2 (3073 bytes): whatever follows stays in the
//! buffer for the chunk layer. Also checks the documented shape: an error only on the first
//! byte (nothing consumed), exactly 3073 bytes consumed once done, S0+S1+S2 = 3073 bytes out.
//!
//! Input: [mode, split seed, bytes...]. Mode 1/2 XOR the bytes over a genuine plain/digest
//! C0+C1 so the digest-validating paths are reachable; mode 0 uses the bytes as they are.

use super::{Splitter, xor_over};
use bytes::BytesMut;
use prism::rtmp::handshake::{
    ClientForm, ClientHandshake, HandshakeRandom, PACKET_SIZE, RANDOM_SIZE, RESPONSE_RANDOM_SIZE,
    ServerHandshake,
};

const HANDSHAKE_LEN: usize = 1 + 2 * PACKET_SIZE;

fn fixed_random(fill: u8) -> HandshakeRandom {
    HandshakeRandom::from_bytes([fill; RANDOM_SIZE], [fill ^ 0xFF; RESPONSE_RANDOM_SIZE])
}

fn genuine_c0c1(form: ClientForm) -> Vec<u8> {
    let mut client = ClientHandshake::with_random(1234, form, fixed_random(0x5A));
    client.take_output().expect("C0+C1 queued").to_vec()
}

/// Runs one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    let [mode, seed, rest @ ..] = data else {
        return;
    };
    let input = match mode % 3 {
        1 => xor_over(&genuine_c0c1(ClientForm::Plain), rest),
        2 => xor_over(&genuine_c0c1(ClientForm::Digest), rest),
        _ => rest.to_vec(),
    };
    let mut server = ServerHandshake::with_random(u32::from(*seed), fixed_random(0xA5));
    let mut buf = BytesMut::new();
    let mut consumed = 0usize;
    let mut output = Vec::new();
    'feed: for piece in Splitter::new(&input, *seed, 2 * PACKET_SIZE) {
        buf.extend_from_slice(piece);
        let before = buf.len();
        let result = server.read(&mut buf);
        consumed += before - buf.len();
        while let Some(out) = server.take_output() {
            output.extend_from_slice(&out);
        }
        assert!(consumed <= HANDSHAKE_LEN, "consumed {consumed} bytes");
        match result {
            Err(_) => {
                assert_eq!(consumed, 0, "an error can only come from C0");
                assert!(server.read(&mut buf).is_err(), "errors must repeat");
                break 'feed;
            }
            Ok(_) if server.is_done() => assert_eq!(consumed, HANDSHAKE_LEN),
            Ok(_) => {}
        }
    }
    assert!(
        output.is_empty() || output.len() == HANDSHAKE_LEN,
        "S0+S1+S2 is {} bytes",
        output.len()
    );
    if rest.is_empty() {
        // The genuine C0+C1 really reach the plain and digest answers: S1's version bytes
        // are zero in the plain form, a server version in the digest form.
        match mode % 3 {
            1 => assert_eq!(output[5..9], [0; 4], "plain answer"),
            2 => assert_ne!(output[5..9], [0; 4], "digest answer"),
            _ => {}
        }
    }
    if server.is_done() {
        assert!(server.c2_verified().is_some());
        // Post-handshake bytes are left alone.
        let before = buf.len();
        server.read(&mut buf).expect("done stays done");
        assert_eq!(before, buf.len());
    }
}
