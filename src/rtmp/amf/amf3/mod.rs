//! AMF3 values, as they appear in RTMP: behind the AVM+ marker (0x11) inside AMF0 payloads of
//! AMF3 command (type 17) and data (type 15) messages, which Flash-era clients send after
//! connecting with `objectEncoding: 3`. OBS and ffmpeg never do; this exists so such clients
//! are understood rather than dropped.
//!
//! This module stands alone: it knows nothing of AMF0. The AMF0 side embeds AMF3 values
//! (`amf0::decode` handles the AVM+ marker by calling in here with its own reader and budget),
//! converts them to AMF0 (`Amf0Value::from_amf3`), and decodes the payloads of AMF3 messages
//! (`amf0::decode_amf3_message`).
//!
//! Decoding follows the AMF3 specification (Adobe, January 2013):
//! - U29 variable-length integers (1 to 4 bytes; the fourth byte carries 8 bits).
//! - String, object and traits reference tables. Like the AMF0 decoder, tables hold positions
//!   in the input, never copies; an object reference decodes its target again, charged to the
//!   shared budget (see [`super::MAX_ELEMENTS`], [`super::MAX_DECODED_BYTES`]), and a reference
//!   into an object still being decoded (a cycle) is an error.
//! - Scope of the reference tables: one set per decode call, shared by every AVM+ value of a
//!   payload, as Adobe's own reader (BlazeDS `Amf0Input`, which keeps one `Amf3Input` per
//!   message body) does. Unverified against Flash Player's writer, which we have not seen send
//!   a cross-value reference.
//! - Not decoded, with [`Amf3Error::UnsupportedType`]: vectors (0x0D-0x10) and dictionaries
//!   (0x11), never used in RTMP commands; externalizable objects ([`Amf3Error::Externalizable`]),
//!   whose body format only their class knows.
//! - Limits are shared with AMF0 ([`super::limits`]), one budget per payload across both
//!   encodings.
//!
//! Encoding ([`encode`]) covers every [`Amf3Value`] variant but never emits references (always
//! valid, just less compact), which is enough to answer an AMF3 client.

mod decode;
mod encode;
#[cfg(test)]
pub(crate) mod tests;
mod u29;
mod value;

pub use decode::{Amf3Error, decode};
pub(in crate::rtmp::amf) use decode::{RefTables, decode_embedded};
pub use encode::encode;
pub use value::Amf3Value;

/// AMF3 type markers (AMF3 specification, section 3.1).
mod marker {
    pub const UNDEFINED: u8 = 0x00;
    pub const NULL: u8 = 0x01;
    pub const FALSE: u8 = 0x02;
    pub const TRUE: u8 = 0x03;
    pub const INTEGER: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const STRING: u8 = 0x06;
    pub const XML_DOC: u8 = 0x07;
    pub const DATE: u8 = 0x08;
    pub const ARRAY: u8 = 0x09;
    pub const OBJECT: u8 = 0x0A;
    pub const XML: u8 = 0x0B;
    pub const BYTE_ARRAY: u8 = 0x0C;
    pub const VECTOR_INT: u8 = 0x0D;
    pub const VECTOR_UINT: u8 = 0x0E;
    pub const VECTOR_DOUBLE: u8 = 0x0F;
    pub const VECTOR_OBJECT: u8 = 0x10;
    pub const DICTIONARY: u8 = 0x11;
}
