//! A chunk header built on the stack: what the encoder writes and [`OutBuf`] keeps inline
//! beside a message's shared payload.
//!
//! [`OutBuf`]: super::OutBuf

use super::{EXTENDED_TIMESTAMP_MARKER, MAX_CHUNK_HEADER_LEN};

/// One chunk header (basic header, message header, extended timestamp), at most
/// [`MAX_CHUNK_HEADER_LEN`] bytes, kept by value so queuing it allocates nothing.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeaderBytes {
    bytes: [u8; MAX_CHUNK_HEADER_LEN],
    len: usize,
}

impl HeaderBytes {
    pub(super) fn new() -> Self {
        Self {
            bytes: [0; MAX_CHUNK_HEADER_LEN],
            len: 0,
        }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    /// Appends bytes; the fixed capacity fits the longest header, so nothing is ever dropped.
    pub(super) fn push(&mut self, data: &[u8]) {
        let end = self.len + data.len();
        if let Some(dst) = self.bytes.get_mut(self.len..end) {
            dst.copy_from_slice(data);
            self.len = end;
        }
    }

    pub(super) fn push_u24(&mut self, value: u32) {
        let [_, high, middle, low] = value.to_be_bytes();
        self.push(&[high, middle, low]);
    }

    /// Shortest basic header form for `csid` (which the caller checked is 2..=65599).
    pub(super) fn push_basic_header(&mut self, fmt: u8, csid: u32) {
        let fmt_bits = fmt << 6;
        match csid {
            0..=63 => self.push(&[fmt_bits | csid as u8]),
            64..=319 => self.push(&[fmt_bits, (csid - 64) as u8]),
            _ => {
                let [low, high] = ((csid - 64) as u16).to_le_bytes();
                self.push(&[fmt_bits | 1, low, high]);
            }
        }
    }

    pub(super) fn push_extended_timestamp(&mut self, timestamp_field: u32) {
        if timestamp_field >= EXTENDED_TIMESTAMP_MARKER {
            self.push(&timestamp_field.to_be_bytes());
        }
    }
}
