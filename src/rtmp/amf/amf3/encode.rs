//! Encoding AMF3: every value inline, never by reference (always valid, just less compact),
//! which is enough to answer an AMF3 client.

use bytes::{BufMut, BytesMut};

use super::super::text::clamp_utf8;
use super::u29::{INTEGER_MAX, INTEGER_MIN, MAX_INLINE_LEN, U29_MAX, inline_header, put_u29};
use super::{Amf3Value, marker};

/// Most sealed members an inline traits header (29 bits minus 4 flag bits) can express.
const MAX_SEALED_MEMBERS: usize = (U29_MAX >> 4) as usize;

/// Appends the AMF3 encoding of `value` to `out` (without the AMF0 AVM+ marker, which the AMF0
/// encoder writes before it).
///
/// Every variant is written inline, never by reference. Never fails, so what the format
/// cannot express is adjusted: integers outside the 29-bit range are written as doubles (as
/// the spec prescribes), lengths and counts beyond 2^28 - 1 are clamped, and members with an
/// empty name in an Array's associative part or an Object's dynamic part are skipped (an empty
/// name ends the list on the wire). An object is written with inline traits, marked dynamic if
/// it is anonymous or has dynamic members.
pub fn encode(value: &Amf3Value, out: &mut BytesMut) {
    match value {
        Amf3Value::Undefined => out.put_u8(marker::UNDEFINED),
        Amf3Value::Null => out.put_u8(marker::NULL),
        Amf3Value::Boolean(false) => out.put_u8(marker::FALSE),
        Amf3Value::Boolean(true) => out.put_u8(marker::TRUE),
        Amf3Value::Integer(i) if (INTEGER_MIN..=INTEGER_MAX).contains(i) => {
            out.put_u8(marker::INTEGER);
            put_u29((*i as u32) & U29_MAX, out);
        }
        Amf3Value::Integer(i) => {
            out.put_u8(marker::DOUBLE);
            out.put_f64(f64::from(*i));
        }
        Amf3Value::Double(n) => {
            out.put_u8(marker::DOUBLE);
            out.put_f64(*n);
        }
        Amf3Value::String(s) => {
            out.put_u8(marker::STRING);
            put_utf8_vr(s, out);
        }
        Amf3Value::XmlDoc(s) => {
            out.put_u8(marker::XML_DOC);
            put_utf8_vr(s, out);
        }
        Amf3Value::Date(millis) => {
            out.put_u8(marker::DATE);
            put_u29(1, out);
            out.put_f64(*millis);
        }
        Amf3Value::Array { assoc, dense } => {
            let len = dense.len().min(MAX_INLINE_LEN);
            out.put_u8(marker::ARRAY);
            put_u29(inline_header(len), out);
            put_named_members(assoc, out);
            for item in dense.iter().take(len) {
                encode(item, out);
            }
        }
        Amf3Value::Object {
            class,
            sealed,
            dynamic,
        } => encode_object(class.as_deref(), sealed, dynamic, out),
        Amf3Value::Xml(s) => {
            out.put_u8(marker::XML);
            put_utf8_vr(s, out);
        }
        Amf3Value::ByteArray(bytes) => {
            let len = bytes.len().min(MAX_INLINE_LEN);
            out.put_u8(marker::BYTE_ARRAY);
            put_u29(inline_header(len), out);
            out.put_slice(bytes.get(..len).unwrap_or_default());
        }
    }
}

fn encode_object(
    class: Option<&str>,
    sealed: &[(String, Amf3Value)],
    dynamic: &[(String, Amf3Value)],
    out: &mut BytesMut,
) {
    let sealed = sealed
        .get(..sealed.len().min(MAX_SEALED_MEMBERS))
        .unwrap_or_default();
    let is_dynamic = class.is_none() || !dynamic.is_empty();
    // Inline object (bit 0), inline traits (bit 1), not externalizable (bit 2 clear).
    let flags = (sealed.len() as u32) << 4 | u32::from(is_dynamic) << 3 | 0b011;
    out.put_u8(marker::OBJECT);
    put_u29(flags, out);
    put_utf8_vr(class.unwrap_or_default(), out);
    for (name, _) in sealed {
        put_utf8_vr(name, out);
    }
    for (_, value) in sealed {
        encode(value, out);
    }
    if is_dynamic {
        put_named_members(dynamic, out);
    }
}

fn put_utf8_vr(s: &str, out: &mut BytesMut) {
    let s = clamp_utf8(s, MAX_INLINE_LEN);
    put_u29(inline_header(s.len()), out);
    out.put_slice(s.as_bytes());
}

fn put_named_members(members: &[(String, Amf3Value)], out: &mut BytesMut) {
    for (name, value) in members.iter().filter(|(name, _)| !name.is_empty()) {
        put_utf8_vr(name, out);
        encode(value, out);
    }
    put_utf8_vr("", out);
}
