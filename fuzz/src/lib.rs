//! What the fuzz targets check, one module per target, plus the input splitter they share
//! (not part of prism itself).
//!
//! Each `<target>::check(data)` runs one input and panics when a property does not hold.
//! The cargo-fuzz targets in `fuzz_targets/` call it, and `tests/fuzz_regressions.rs` (in
//! prism's own test suite, so CI runs it without cargo-fuzz or a nightly toolchain)
//! includes this file and replays every committed input of `fuzz/regressions/<target>/`
//! through the same function. Module paths are explicit so that the include resolves
//! them the same way.

#[path = "checks/amf0.rs"]
pub mod amf0;
#[path = "checks/amf3.rs"]
pub mod amf3;
#[path = "checks/chunk_decoder.rs"]
pub mod chunk_decoder;
#[path = "checks/client_session.rs"]
pub mod client_session;
#[path = "checks/config.rs"]
pub mod config;
#[path = "checks/flv.rs"]
pub mod flv;
#[path = "checks/handshake_client.rs"]
pub mod handshake_client;
#[path = "checks/handshake_server.rs"]
pub mod handshake_server;
#[path = "checks/server_session.rs"]
pub mod server_session;
#[path = "checks/user_file.rs"]
pub mod user_file;

use std::io::IoSlice;

use prism::rtmp::chunk::OutBuf;

/// Takes up to `limit` bytes off a session's output queue the way a vectored write would,
/// checking its accounting: `io_slices` never yields more than `len`, and `advance` shrinks
/// it exactly. Returns the bytes taken.
pub fn drain(out: &mut OutBuf, limit: usize) -> Vec<u8> {
    let mut written = Vec::new();
    while !out.is_empty() && written.len() < limit {
        let len = out.len();
        let mut slices = [IoSlice::new(&[]); 4];
        let filled = out.io_slices(&mut slices);
        assert!(filled > 0, "non-empty queue yields no slice");
        let mut n = 0;
        for slice in &slices[..filled] {
            let take = slice.len().min(limit - written.len() - n);
            written.extend_from_slice(&slice[..take]);
            n += take;
        }
        assert!(n <= len);
        out.advance(n);
        assert_eq!(out.len(), len - n, "advance({n}) from {len}");
        if n == 0 {
            break;
        }
    }
    written
}

/// Cuts an input into pieces of pseudo-random sizes, so the targets see every way a socket
/// read can split the stream. The sizes come from a seed byte (not from the payload), so the
/// fuzzer can change the split without changing the bytes, and a run is reproducible.
pub struct Splitter<'a> {
    rest: &'a [u8],
    state: u32,
    max: usize,
}

impl<'a> Splitter<'a> {
    /// Splits `data` into pieces of 1..=`max` bytes (`max` >= 1) chosen by `seed`.
    /// Seed 0 yields the whole input at once.
    pub fn new(data: &'a [u8], seed: u8, max: usize) -> Self {
        let max = if seed == 0 { usize::MAX } else { max.max(1) };
        Self {
            rest: data,
            state: u32::from(seed).wrapping_mul(0x9E37_79B9) | 1,
            max,
        }
    }
}

impl<'a> Iterator for Splitter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        // xorshift32: cheap and deterministic.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let len = if self.max == usize::MAX {
            self.rest.len()
        } else {
            1 + (self.state as usize) % self.max
        };
        let (piece, rest) = self.rest.split_at(len.min(self.rest.len()));
        self.rest = rest;
        Some(piece)
    }
}

/// XORs `data` over `base` (extra bytes of `data` are appended): lets the fuzzer start from a
/// genuine packet and flip only a few bytes of it, which it could never build from scratch
/// (e.g. an RTMP handshake packet with a valid HMAC digest).
pub fn xor_over(base: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    for (i, &b) in data.iter().enumerate() {
        match out.get_mut(i) {
            Some(slot) => *slot ^= b,
            None => out.push(b),
        }
    }
    out
}
