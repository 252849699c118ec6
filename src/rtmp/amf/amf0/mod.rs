//! AMF0 (Action Message Format, version 0): the value encoding of RTMP command messages
//! (type 20) and data messages (type 18: `@setDataFrame`, `onMetaData`, ...).
//!
//! Sans-I/O: [`decode`] / [`decode_all`] take a complete message payload (the chunk layer has
//! already reassembled it), so running out of bytes is an error ([`Amf0Error::Truncated`]), never
//! a "need more" state.
//!
//! Tolerance choices, each because real peers need it:
//! - Strings are UTF-8 by spec, but some peers send Latin-1 (or garbage): they are decoded
//!   lossily (invalid sequences become U+FFFD) instead of failing the whole command.
//! - The ECMA-array count is only a hint: some encoders write 0 or a wrong count, so entries are
//!   read until the object-end marker and the count is never used to preallocate.
//! - An object or ECMA array that runs exactly to the end of the payload without its end marker
//!   is accepted (nginx-rtmp does the same for Envivio encoders, which send such arrays).
//! - A property with an empty name followed by something other than the end marker is kept as
//!   a property named "" rather than rejected.
//! - References (marker 0x07) are resolved: see [`Amf0Value`] and [`Amf0Error::CyclicReference`].
//!   The referenced value is decoded again from its bytes (no copy of every complex value is
//!   kept on the side), and every such re-decode is charged to the same per-call budget
//!   ([`super::MAX_ELEMENTS`], [`super::MAX_DECODED_BYTES`]), so a chain of references cannot
//!   blow up.
//!
//! Every size read from the wire is checked against a limit (or against the bytes left) before
//! anything is allocated; see [`super::limits`].
//!
//! The files: [`Amf0Value`] and its helpers (`value.rs`), [`decode`] and friends (`decode.rs`),
//! [`encode`] (`encode.rs`), and the conversion of embedded AMF3 values (`from_amf3.rs`).

mod decode;
mod encode;
mod from_amf3;
#[cfg(test)]
mod tests;
mod value;

pub use decode::{Amf0Error, decode, decode_all, decode_amf3_message};
pub use encode::{encode, encode_all};
pub use value::Amf0Value;

/// AMF0 type markers (AMF0 specification, section 2.1).
mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
    pub const UNSUPPORTED: u8 = 0x0D;
    pub const XML_DOCUMENT: u8 = 0x0F;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS: u8 = 0x11;
}
