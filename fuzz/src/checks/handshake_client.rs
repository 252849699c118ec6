//! Proves that `ClientHandshake` (plain and digest forms) never panics on any server answer,
//! however it is split into reads, and never consumes more than S0+S1+S2 (3073 bytes). Also
//! checks: errors only on S0 (nothing consumed), exactly 3073 consumed once done, and the client
//! sends exactly C0+C1 (1537) and then C2 (1536) once S1 is in.
//!
//! Input: [mode, split seed, bytes...]. Mode bit 0 picks the client form; bit 1 XORs the bytes
//! over the genuine answer of prism's own ServerHandshake, so valid digests and echoes are
//! reachable.

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

/// Runs one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    let [mode, seed, rest @ ..] = data else {
        return;
    };
    let form = if mode & 1 == 0 {
        ClientForm::Plain
    } else {
        ClientForm::Digest
    };
    let mut client = ClientHandshake::with_random(u32::from(*seed), form, fixed_random(0x5A));
    let c0c1 = client.take_output().expect("C0+C1 queued at once");
    assert_eq!(c0c1.len(), 1 + PACKET_SIZE);

    let input = if mode & 2 != 0 {
        // What prism's server answers to this very C0+C1 (S0+S1+S2).
        let mut server = ServerHandshake::with_random(99, fixed_random(0xA5));
        let mut c0c1_buf = BytesMut::from(&c0c1[..]);
        server
            .read(&mut c0c1_buf)
            .expect("prism's own C0+C1 is valid");
        let answer = server.take_output().expect("S0+S1+S2 queued");
        xor_over(&answer, rest)
    } else {
        rest.to_vec()
    };

    let mut buf = BytesMut::new();
    let mut consumed = 0usize;
    let mut output = 0usize;
    for piece in Splitter::new(&input, *seed, 2 * PACKET_SIZE) {
        buf.extend_from_slice(piece);
        let before = buf.len();
        let result = client.read(&mut buf);
        consumed += before - buf.len();
        while let Some(out) = client.take_output() {
            assert_eq!(out.len(), PACKET_SIZE, "only C2 follows C0+C1");
            output += out.len();
        }
        assert!(consumed <= HANDSHAKE_LEN, "consumed {consumed} bytes");
        if consumed > 1 + PACKET_SIZE - 1 {
            assert_eq!(output, PACKET_SIZE, "C2 goes out as soon as S1 is in");
        }
        match result {
            Err(_) => {
                assert_eq!(consumed, 0, "an error can only come from S0");
                assert!(client.read(&mut buf).is_err(), "errors must repeat");
                break;
            }
            Ok(_) if client.is_done() => assert_eq!(consumed, HANDSHAKE_LEN),
            Ok(_) => {}
        }
    }
    if client.is_done() {
        assert!(client.s2_verified().is_some());
        if mode & 2 != 0 && rest.iter().all(|&b| b == 0) {
            // Unmodified answer from prism's own server must verify.
            assert_eq!(client.s2_verified(), Some(true));
        }
        let before = buf.len();
        client.read(&mut buf).expect("done stays done");
        assert_eq!(before, buf.len());
    }
}
