//! Encoding AMF0: what prism says to peers (replies, metadata for players and ingests).

use bytes::{BufMut, BytesMut};

use super::super::amf3;
use super::super::text::clamp_utf8;
use super::{Amf0Value, marker};

/// Longest string that fits the AMF0 string type; longer ones go out as long strings.
pub(super) const SHORT_STRING_MAX: usize = u16::MAX as usize;

/// Longest string that fits a long-string/XML u32 length prefix (reached only on 64-bit hosts).
const LONG_STRING_MAX: usize = u32::MAX as usize;

/// Appends the AMF0 encoding of `value` to `out`.
///
/// Never fails, so lengths the format cannot express are clamped (at a character boundary):
/// property names and typed-object class names to 65535 bytes, long strings/XML to 4 GiB,
/// array counts to u32::MAX. A [`Amf0Value::String`] longer than 65535 bytes is written as a
/// long string (marker 0x0C), as the spec prescribes, so it decodes as
/// [`Amf0Value::LongString`]. No references are written; embedded AMF3 values are encoded by
/// [`amf3::encode`].
pub fn encode(value: &Amf0Value, out: &mut BytesMut) {
    match value {
        Amf0Value::Number(n) => {
            out.put_u8(marker::NUMBER);
            out.put_f64(*n);
        }
        Amf0Value::Boolean(b) => {
            out.put_u8(marker::BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Amf0Value::String(s) if s.len() <= SHORT_STRING_MAX => {
            out.put_u8(marker::STRING);
            put_short_utf8(s, out);
        }
        Amf0Value::String(s) | Amf0Value::LongString(s) => {
            out.put_u8(marker::LONG_STRING);
            put_long_utf8(s, out);
        }
        Amf0Value::Object(properties) => {
            out.put_u8(marker::OBJECT);
            put_properties(properties, out);
        }
        Amf0Value::Null => out.put_u8(marker::NULL),
        Amf0Value::Undefined => out.put_u8(marker::UNDEFINED),
        Amf0Value::EcmaArray(properties) => {
            out.put_u8(marker::ECMA_ARRAY);
            out.put_u32(u32::try_from(properties.len()).unwrap_or(u32::MAX));
            put_properties(properties, out);
        }
        Amf0Value::StrictArray(items) => {
            let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.put_u8(marker::STRICT_ARRAY);
            out.put_u32(count);
            for item in items.iter().take(count as usize) {
                encode(item, out);
            }
        }
        Amf0Value::Date { millis, timezone } => {
            out.put_u8(marker::DATE);
            out.put_f64(*millis);
            out.put_i16(*timezone);
        }
        Amf0Value::Unsupported => out.put_u8(marker::UNSUPPORTED),
        Amf0Value::Xml(s) => {
            out.put_u8(marker::XML_DOCUMENT);
            put_long_utf8(s, out);
        }
        Amf0Value::TypedObject { class, properties } => {
            out.put_u8(marker::TYPED_OBJECT);
            put_short_utf8(class, out);
            put_properties(properties, out);
        }
        Amf0Value::Amf3(value) => {
            out.put_u8(marker::AVMPLUS);
            amf3::encode(value, out);
        }
    }
}

/// Appends every value in order: a whole command (`"_result"`, transaction id, properties,
/// information object) or data message.
pub fn encode_all(values: &[Amf0Value], out: &mut BytesMut) {
    for value in values {
        encode(value, out);
    }
}

fn put_short_utf8(s: &str, out: &mut BytesMut) {
    let s = clamp_utf8(s, SHORT_STRING_MAX);
    out.put_u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
    out.put_slice(s.as_bytes());
}

fn put_long_utf8(s: &str, out: &mut BytesMut) {
    let s = clamp_utf8(s, LONG_STRING_MAX);
    out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.put_slice(s.as_bytes());
}

fn put_properties(properties: &[(String, Amf0Value)], out: &mut BytesMut) {
    for (name, value) in properties {
        put_short_utf8(name, out);
        encode(value, out);
    }
    out.put_u16(0);
    out.put_u8(marker::OBJECT_END);
}
