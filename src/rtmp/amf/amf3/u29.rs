//! U29, AMF3's variable-length integer: 1 to 4 bytes for 29 bits. It carries integers, and
//! the headers that say "inline, this long" or "reference, this index".

use bytes::{BufMut, BytesMut};

use super::super::reader::{Reader, Truncated};

/// Largest value a U29 can carry (29 bits).
pub(super) const U29_MAX: u32 = 0x1FFF_FFFF;

/// Longest string, byte array or dense array a U29 length header (29 bits minus the inline
/// flag) can express; longer ones are clamped when encoding.
pub(super) const MAX_INLINE_LEN: usize = (U29_MAX >> 1) as usize;

/// Range of the AMF3 integer type (29-bit two's complement); others are sent as doubles.
pub(super) const INTEGER_MIN: i32 = -(1 << 28);
pub(super) const INTEGER_MAX: i32 = (1 << 28) - 1;

/// Reads a U29: up to three bytes of 7 bits (high bit = more follows), then one of 8 bits.
pub(super) fn read_u29(reader: &mut Reader<'_>) -> Result<u32, Truncated> {
    let mut value = 0u32;
    for _ in 0..3 {
        let byte = reader.u8()?;
        value = (value << 7) | u32::from(byte & 0x7F);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    let last = reader.u8()?;
    Ok((value << 8) | u32::from(last))
}

/// Interprets a U29 as the 29-bit two's-complement AMF3 integer.
pub(super) fn sign_extend_u29(value: u32) -> i32 {
    ((value << 3) as i32) >> 3
}

/// U29 header of an inline length or count: `len << 1 | 1`.
pub(super) fn inline_header(len: usize) -> u32 {
    (len.min(MAX_INLINE_LEN) as u32) << 1 | 1
}

/// Writes a U29 (the low 29 bits of `value`) in as few bytes as it needs.
pub(super) fn put_u29(value: u32, out: &mut BytesMut) {
    let v = value & U29_MAX;
    if v < 0x80 {
        out.put_u8(v as u8);
    } else if v < 0x4000 {
        out.put_u8((v >> 7) as u8 | 0x80);
        out.put_u8((v & 0x7F) as u8);
    } else if v < 0x20_0000 {
        out.put_u8((v >> 14) as u8 | 0x80);
        out.put_u8(((v >> 7) & 0x7F) as u8 | 0x80);
        out.put_u8((v & 0x7F) as u8);
    } else {
        out.put_u8((v >> 22) as u8 | 0x80);
        out.put_u8(((v >> 15) & 0x7F) as u8 | 0x80);
        out.put_u8(((v >> 8) & 0x7F) as u8 | 0x80);
        out.put_u8((v & 0xFF) as u8);
    }
}
