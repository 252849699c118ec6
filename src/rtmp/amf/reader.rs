//! A bounds-checked cursor over one complete payload, shared by the AMF0 and AMF3 decoders.
//!
//! Every read either returns the bytes or says how many are missing ([`Truncated`]); nothing
//! panics and nothing reads past the end. Positions can be saved and returned to, because both
//! decoders resolve references by decoding the referenced bytes again rather than keeping
//! copies.

use std::ops::Range;

/// Not enough input: a length or value ran past the end of the payload. Since payloads are
/// complete messages, this means the peer sent a malformed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("truncated AMF input: {needed} more byte(s) needed at offset {offset}")]
pub struct Truncated {
    /// Offset in the decoded buffer where the read started.
    pub offset: usize,
    /// How many bytes were missing.
    pub needed: usize,
}

/// Bounds-checked cursor over a complete payload.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], start: usize) -> Self {
        Reader { buf, pos: start }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Moves to `pos`, an offset previously returned by [`Reader::position`]; used to decode a
    /// referenced value again and to come back afterwards.
    pub(crate) fn seek(&mut self, pos: usize) {
        self.pos = pos;
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Takes the next `len` bytes, or reports how many are missing without moving.
    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], Truncated> {
        let truncated = Truncated {
            offset: self.pos,
            needed: len.saturating_sub(self.remaining()),
        };
        let end = self.pos.checked_add(len).ok_or(truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    /// Like [`Reader::take`] but returns where the bytes are, for reference tables that store
    /// positions instead of copies.
    pub(crate) fn take_range(&mut self, len: usize) -> Result<Range<usize>, Truncated> {
        let start = self.pos;
        self.take(len)?;
        Ok(start..self.pos)
    }

    /// Bytes of a range obtained from [`Reader::take_range`] (hence always in bounds; an empty
    /// slice otherwise rather than a panic).
    pub(crate) fn bytes_at(&self, range: Range<usize>) -> &'a [u8] {
        self.buf.get(range).unwrap_or_default()
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let offset = self.pos;
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| Truncated { offset, needed: N })
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn i16(&mut self) -> Result<i16, Truncated> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn f64(&mut self) -> Result<f64, Truncated> {
        Ok(f64::from_be_bytes(self.array()?))
    }
}
