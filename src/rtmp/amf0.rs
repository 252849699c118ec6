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
//!   ([`MAX_ELEMENTS`], [`MAX_DECODED_BYTES`]), so a chain of references cannot blow up.
//!
//! Every size read from the wire is checked against a limit (or against the bytes left) before
//! anything is allocated; see the `MAX_*` constants.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

use super::amf3::{self, Amf3Error, Amf3Value};

/// Deepest nesting of containers (objects, arrays) accepted in one decode call, AMF0 and AMF3
/// levels counted together.
///
/// Why: decoding is recursive, so this bounds stack use whatever a peer sends. Real command and
/// metadata payloads nest two or three levels; 64 leaves ample room.
pub const MAX_DEPTH: usize = 64;

/// Longest AMF0 long string or XML document, and longest AMF3 string, XML or ByteArray, in
/// bytes. (AMF0 short strings and property names are at most 65535 bytes by format.)
///
/// Why: the u32 length prefix would otherwise let a peer make us reserve up to 4 GiB. No command
/// or metadata field comes close: the largest seen in practice are XMP packets of a few KiB.
pub const MAX_STRING_LEN: usize = 1 << 20;

/// Most values (scalars, containers, property values, array items) decoded in one call.
///
/// Why: a decoded value costs about 100 bytes of memory but may cost one byte of input (a
/// null), so a 16 MiB message could otherwise expand to well over a gigabyte. 65 536 keeps the
/// worst case near 10 MiB while real payloads stay far below it (onMetaData has ~30 fields).
pub const MAX_ELEMENTS: usize = 65_536;

/// Most string and byte-array content (values and property names) produced by one call.
///
/// Why: without references this never exceeds the input, and an RTMP message is at most
/// 16 MiB - 1. References are expanded by decoding their target again, so without this bound a
/// few hundred bytes of nested references could ask for gigabytes.
pub const MAX_DECODED_BYTES: usize = 16 << 20;

/// Longest string that fits the AMF0 string type; longer ones go out as long strings.
const SHORT_STRING_MAX: usize = u16::MAX as usize;

/// Longest string that fits a long-string/XML u32 length prefix (reached only on 64-bit hosts).
const LONG_STRING_MAX: usize = u32::MAX as usize;

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

/// One AMF0 value. Objects keep their properties as an ordered list (not a map) because order
/// is visible on the wire and some peers care (e.g. `onMetaData` field order is echoed to
/// players as received), and because duplicate names must survive a relay unchanged.
///
/// A reference (marker 0x07) never appears here: the decoder replaces it by the value it points
/// to, so session code never has to chase references.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// IEEE-754 double; AMF0's only numeric type (transaction ids, codec ids, bitrates...).
    Number(f64),
    /// Boolean; any non-zero byte decodes as `true`, as the spec says.
    Boolean(bool),
    /// UTF-8 string. Encoded as a short string when it fits 65535 bytes, else as a long string.
    String(String),
    /// Anonymous object: ordered (name, value) properties, e.g. the connect command object.
    Object(Vec<(String, Amf0Value)>),
    /// `null`; commands use it as the placeholder for "no command object".
    Null,
    /// `undefined`.
    Undefined,
    /// ECMA (associative) array, e.g. the `onMetaData` body; the wire count is ignored.
    EcmaArray(Vec<(String, Amf0Value)>),
    /// Strict (dense) array, e.g. `fourCcList` in an Enhanced RTMP connect.
    StrictArray(Vec<Amf0Value>),
    /// Date: milliseconds since the Unix epoch, plus the reserved time-zone field (should be 0;
    /// kept so a relayed value is bit-identical).
    Date {
        /// Milliseconds since 1970-01-01T00:00:00Z (UTC).
        millis: f64,
        /// Reserved; the spec says senders write 0 and receivers ignore it.
        timezone: i16,
    },
    /// A string that arrived with the long-string marker (u32 length). Kept apart from
    /// [`Amf0Value::String`] so re-encoding reproduces the peer's bytes.
    LongString(String),
    /// XML document (long-string framing).
    Xml(String),
    /// Instance of a named ActionScript class: class name plus ordered properties.
    TypedObject {
        /// The registered class alias.
        class: String,
        /// Ordered properties, as for [`Amf0Value::Object`].
        properties: Vec<(String, Amf0Value)>,
    },
    /// The "unsupported" marker (0x0D): a value the sender could not serialise.
    Unsupported,
    /// A value that followed the AVM+ marker (0x11) and is therefore AMF3-encoded. Use
    /// [`Amf0Value::flatten_amf3`] (or [`amf3::decode_command_payload`]) to read it as AMF0.
    Amf3(Amf3Value),
}

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

/// A decode limit (the `MAX_*` constants of this module) was exceeded. Shared by AMF0 and AMF3
/// because one budget covers a whole payload, whichever encoding its values use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// More than [`MAX_DEPTH`] nested containers.
    #[error("AMF nesting deeper than {max} levels")]
    Depth {
        /// The limit ([`MAX_DEPTH`]).
        max: usize,
    },
    /// More than [`MAX_ELEMENTS`] values, or a declared array count that would exceed it.
    #[error("more than {max} AMF values in one payload")]
    Elements {
        /// The limit ([`MAX_ELEMENTS`]).
        max: usize,
    },
    /// More than [`MAX_DECODED_BYTES`] of string content (only references can cause this).
    #[error("AMF payload expands to more than {max} bytes of strings (reference amplification)")]
    DecodedBytes {
        /// The limit ([`MAX_DECODED_BYTES`]).
        max: usize,
    },
    /// A length prefix larger than [`MAX_STRING_LEN`].
    #[error("AMF string of {len} bytes exceeds the {max}-byte limit")]
    StringLength {
        /// The declared length.
        len: usize,
        /// The limit ([`MAX_STRING_LEN`]).
        max: usize,
    },
}

/// Why an AMF0 payload could not be decoded. Any of these means the message is malformed or
/// hostile; the session should drop it (or the connection) and carry on with the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Amf0Error {
    /// The payload ended in the middle of a value.
    #[error(transparent)]
    Truncated(#[from] Truncated),
    /// A size or count from the wire exceeded a decode limit.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// A marker with no decodable body: 0x04 movieclip and 0x0E recordset (reserved by the
    /// spec), or anything above 0x11.
    #[error("unsupported AMF0 type marker 0x{marker:02x} at offset {offset}")]
    UnsupportedMarker {
        /// The marker byte.
        marker: u8,
        /// Its offset in the buffer.
        offset: usize,
    },
    /// An object-end marker (0x09) where a value was expected.
    #[error("AMF0 object-end marker where a value was expected, at offset {offset}")]
    UnexpectedObjectEnd {
        /// Offset of the 0x09 byte.
        offset: usize,
    },
    /// A strict array declares more elements than there are bytes left (each takes at least
    /// one), so the count is a lie; checked before allocating.
    #[error(
        "AMF0 strict array at offset {offset} declares {count} elements but only {remaining} bytes remain"
    )]
    ArrayCountExceedsInput {
        /// Offset of the array marker.
        offset: usize,
        /// The declared count.
        count: u32,
        /// Bytes left after the count.
        remaining: usize,
    },
    /// A reference to an index that no earlier object, typed object or array received.
    #[error("AMF0 reference {index} at offset {offset} names no earlier object ({known} known)")]
    UnknownReference {
        /// The referenced index.
        index: u16,
        /// How many complex values had been seen.
        known: usize,
        /// Offset of the reference marker.
        offset: usize,
    },
    /// A reference to an object that encloses the reference itself (a cycle such as
    /// `o.self = o`). A tree of owned values cannot represent cycles, so this is refused.
    #[error(
        "AMF0 reference {index} at offset {offset} points into an object still being decoded (cycles are not supported)"
    )]
    CyclicReference {
        /// The referenced index.
        index: u16,
        /// Offset of the reference marker.
        offset: usize,
    },
    /// An AMF3 value after an AVM+ marker (0x11) was malformed.
    #[error("in AMF3 value: {0}")]
    Amf3(#[from] Amf3Error),
}

impl Amf0Value {
    /// Builds an anonymous object from (name, value) pairs, in order, e.g.
    /// `Amf0Value::object([("level", "status".into()), ("code", "NetStream.Publish.Start".into())])`.
    /// Exists so session code can write replies as compactly as it reads requests.
    pub fn object<K: Into<String>>(properties: impl IntoIterator<Item = (K, Amf0Value)>) -> Self {
        Amf0Value::Object(collect_properties(properties))
    }

    /// Builds an ECMA array from (name, value) pairs, in order; the form `onMetaData` uses and
    /// the one ffmpeg expects when it looks for `videocodecid`/`audiocodecid`.
    pub fn ecma_array<K: Into<String>>(
        properties: impl IntoIterator<Item = (K, Amf0Value)>,
    ) -> Self {
        Amf0Value::EcmaArray(collect_properties(properties))
    }

    /// The text of a string value (short, long, or AMF3), so callers need not care which
    /// framing the peer picked for e.g. a command name or stream key.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            Amf0Value::Amf3(Amf3Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The numeric value of a number (or AMF3 integer/double), e.g. a transaction id.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            Amf0Value::Amf3(Amf3Value::Double(n)) => Some(*n),
            Amf0Value::Amf3(Amf3Value::Integer(i)) => Some(f64::from(*i)),
            _ => None,
        }
    }

    /// The value of a boolean (AMF0 or AMF3). Numbers are not coerced: a peer that sends a
    /// number where a boolean belongs gets `None`, and the caller picks the default.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) | Amf0Value::Amf3(Amf3Value::Boolean(b)) => Some(*b),
            _ => None,
        }
    }

    /// The ordered properties of an object, ECMA array or typed object; `None` for anything
    /// else. Lets callers iterate metadata without matching three variants.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => Some(p),
            Amf0Value::TypedObject { properties, .. } => Some(properties),
            _ => None,
        }
    }

    /// The value of property `key` of an object, ECMA array or typed object. With duplicate
    /// names the last one wins, as when ActionScript assigns the properties in order.
    /// (AMF3 objects are not searched: convert them with [`Amf0Value::flatten_amf3`].)
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// Replaces every embedded AMF3 value, at any depth, by its AMF0 equivalent
    /// ([`Amf3Value::into_amf0`]), so session code reads commands from AMF3 clients exactly like
    /// those from AMF0 clients. Only an AMF3 ByteArray, which has no AMF0 form, stays wrapped.
    pub fn flatten_amf3(self) -> Amf0Value {
        match self {
            Amf0Value::Amf3(value) => value.into_amf0(),
            Amf0Value::Object(p) => Amf0Value::Object(flatten_properties(p)),
            Amf0Value::EcmaArray(p) => Amf0Value::EcmaArray(flatten_properties(p)),
            Amf0Value::StrictArray(items) => {
                Amf0Value::StrictArray(items.into_iter().map(Amf0Value::flatten_amf3).collect())
            }
            Amf0Value::TypedObject { class, properties } => Amf0Value::TypedObject {
                class,
                properties: flatten_properties(properties),
            },
            other => other,
        }
    }
}

fn collect_properties<K: Into<String>>(
    properties: impl IntoIterator<Item = (K, Amf0Value)>,
) -> Vec<(String, Amf0Value)> {
    properties
        .into_iter()
        .map(|(name, value)| (name.into(), value))
        .collect()
}

fn flatten_properties(properties: Vec<(String, Amf0Value)>) -> Vec<(String, Amf0Value)> {
    properties
        .into_iter()
        .map(|(name, value)| (name, value.flatten_amf3()))
        .collect()
}

impl From<&str> for Amf0Value {
    fn from(s: &str) -> Self {
        Amf0Value::String(s.to_owned())
    }
}

impl From<String> for Amf0Value {
    fn from(s: String) -> Self {
        Amf0Value::String(s)
    }
}

impl From<f64> for Amf0Value {
    fn from(n: f64) -> Self {
        Amf0Value::Number(n)
    }
}

impl From<bool> for Amf0Value {
    fn from(b: bool) -> Self {
        Amf0Value::Boolean(b)
    }
}

impl From<Amf3Value> for Amf0Value {
    fn from(value: Amf3Value) -> Self {
        Amf0Value::Amf3(value)
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Decodes the one AMF0 value at the start of `buf` and returns it with the number of bytes it
/// took, for callers that need to know where the value ends (e.g. to keep the rest raw).
pub fn decode(buf: &[u8]) -> Result<(Amf0Value, usize), Amf0Error> {
    let mut decoder = Decoder::new(buf, 0);
    let value = decoder.value()?;
    Ok((value, decoder.reader.position()))
}

/// Decodes every value of a command or data payload (name, transaction id, command object,
/// arguments...). References and the AMF3 reference tables span the whole payload, and the
/// limits apply to the payload as a whole.
pub fn decode_all(buf: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    decode_all_from(buf, 0)
}

/// [`decode_all`] starting at `start` (so that error offsets stay relative to `buf`); used by
/// the AMF3 message path to skip its format byte.
pub(super) fn decode_all_from(buf: &[u8], start: usize) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut decoder = Decoder::new(buf, start);
    let mut values = Vec::new();
    while !decoder.reader.is_empty() {
        values.push(decoder.value()?);
    }
    Ok(values)
}

/// Bounds-checked cursor over a complete payload, shared with the AMF3 decoder.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], start: usize) -> Self {
        Reader { buf, pos: start }
    }

    pub(super) fn position(&self) -> usize {
        self.pos
    }

    /// Moves to `pos`, an offset previously returned by [`Reader::position`]; used to decode a
    /// referenced value again and to come back afterwards.
    pub(super) fn seek(&mut self, pos: usize) {
        self.pos = pos;
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Takes the next `len` bytes, or reports how many are missing without moving.
    pub(super) fn take(&mut self, len: usize) -> Result<&'a [u8], Truncated> {
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
    pub(super) fn take_range(&mut self, len: usize) -> Result<Range<usize>, Truncated> {
        let start = self.pos;
        self.take(len)?;
        Ok(start..self.pos)
    }

    /// Bytes of a range obtained from [`Reader::take_range`] (hence always in bounds; an empty
    /// slice otherwise rather than a panic).
    pub(super) fn bytes_at(&self, range: Range<usize>) -> &'a [u8] {
        self.buf.get(range).unwrap_or_default()
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let offset = self.pos;
        let bytes = self.take(N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| Truncated { offset, needed: N })
    }

    pub(super) fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    pub(super) fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(super) fn i16(&mut self) -> Result<i16, Truncated> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub(super) fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(super) fn f64(&mut self) -> Result<f64, Truncated> {
        Ok(f64::from_be_bytes(self.array()?))
    }
}

/// What one decode call may still spend (depth, values, string bytes); shared with the AMF3
/// decoder so that switching encodings does not reset the limits.
#[derive(Debug, Default)]
pub(super) struct Budget {
    depth: usize,
    values: usize,
    bytes: usize,
}

impl Budget {
    pub(super) fn enter_container(&mut self) -> Result<(), LimitExceeded> {
        if self.depth >= MAX_DEPTH {
            return Err(LimitExceeded::Depth { max: MAX_DEPTH });
        }
        self.depth += 1;
        Ok(())
    }

    pub(super) fn leave_container(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    pub(super) fn count_value(&mut self) -> Result<(), LimitExceeded> {
        if self.values >= MAX_ELEMENTS {
            return Err(LimitExceeded::Elements { max: MAX_ELEMENTS });
        }
        self.values += 1;
        Ok(())
    }

    pub(super) fn values_left(&self) -> usize {
        MAX_ELEMENTS.saturating_sub(self.values)
    }

    /// Checks a declared element count against what is left, before allocating for it.
    pub(super) fn check_count(&self, count: usize) -> Result<(), LimitExceeded> {
        if count > self.values_left() {
            return Err(LimitExceeded::Elements { max: MAX_ELEMENTS });
        }
        Ok(())
    }

    pub(super) fn count_bytes(&mut self, len: usize) -> Result<(), LimitExceeded> {
        let total = self.bytes.saturating_add(len);
        if total > MAX_DECODED_BYTES {
            return Err(LimitExceeded::DecodedBytes {
                max: MAX_DECODED_BYTES,
            });
        }
        self.bytes = total;
        Ok(())
    }
}

/// Rejects a declared string length above [`MAX_STRING_LEN`] before anything is read.
pub(super) fn check_string_len(len: usize) -> Result<(), LimitExceeded> {
    if len > MAX_STRING_LEN {
        return Err(LimitExceeded::StringLength {
            len,
            max: MAX_STRING_LEN,
        });
    }
    Ok(())
}

/// UTF-8 with invalid sequences replaced by U+FFFD: some peers send Latin-1 in names and
/// descriptions, and refusing a whole connect over one accented letter helps nobody.
pub(super) fn lossy_utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An entry of the AMF0 reference table: where a complex value starts, and whether it has been
/// fully decoded (a reference to an unfinished one would be a cycle).
#[derive(Debug, Clone, Copy)]
struct ComplexSlot {
    start: usize,
    complete: bool,
}

struct Decoder<'a> {
    reader: Reader<'a>,
    budget: Budget,
    /// AMF0 reference table, in order of appearance: objects, typed objects, ECMA and strict
    /// arrays (AMF0 spec 2.9). Positions only; a reference decodes the target again.
    complex: Vec<ComplexSlot>,
    amf3_tables: amf3::RefTables,
    /// True while decoding the target of a reference again: nothing is added to the reference
    /// tables then, because those values were registered the first time.
    replaying: bool,
}

impl<'a> Decoder<'a> {
    fn new(buf: &'a [u8], start: usize) -> Self {
        Decoder {
            reader: Reader::new(buf, start),
            budget: Budget::default(),
            complex: Vec::new(),
            amf3_tables: amf3::RefTables::default(),
            replaying: false,
        }
    }

    fn value(&mut self) -> Result<Amf0Value, Amf0Error> {
        self.budget.count_value()?;
        let offset = self.reader.position();
        let marker = self.reader.u8()?;
        let value = match marker {
            marker::NUMBER => Amf0Value::Number(self.reader.f64()?),
            marker::BOOLEAN => Amf0Value::Boolean(self.reader.u8()? != 0),
            marker::STRING => Amf0Value::String(self.short_string()?),
            marker::OBJECT => Amf0Value::Object(self.complex_value(offset, Self::properties)?),
            marker::NULL => Amf0Value::Null,
            marker::UNDEFINED => Amf0Value::Undefined,
            marker::REFERENCE => self.reference(offset)?,
            marker::ECMA_ARRAY => {
                Amf0Value::EcmaArray(self.complex_value(offset, Self::ecma_array_body)?)
            }
            marker::OBJECT_END => return Err(Amf0Error::UnexpectedObjectEnd { offset }),
            marker::STRICT_ARRAY => {
                Amf0Value::StrictArray(self.complex_value(offset, |d| d.strict_array_body(offset))?)
            }
            marker::DATE => Amf0Value::Date {
                millis: self.reader.f64()?,
                timezone: self.reader.i16()?,
            },
            marker::LONG_STRING => Amf0Value::LongString(self.long_string()?),
            marker::UNSUPPORTED => Amf0Value::Unsupported,
            marker::XML_DOCUMENT => Amf0Value::Xml(self.long_string()?),
            marker::TYPED_OBJECT => self.complex_value(offset, Self::typed_object_body)?,
            marker::AVMPLUS => Amf0Value::Amf3(amf3::decode_embedded(
                &mut self.reader,
                &mut self.budget,
                &mut self.amf3_tables,
                self.replaying,
            )?),
            _ => return Err(Amf0Error::UnsupportedMarker { marker, offset }),
        };
        Ok(value)
    }

    /// Decodes the body of a value that enters the reference table, registering it first (so
    /// that a reference from inside is recognised as a cycle) and marking it complete after.
    fn complex_value<T>(
        &mut self,
        marker_offset: usize,
        body: impl FnOnce(&mut Self) -> Result<T, Amf0Error>,
    ) -> Result<T, Amf0Error> {
        let slot = (!self.replaying).then(|| {
            self.complex.push(ComplexSlot {
                start: marker_offset,
                complete: false,
            });
            self.complex.len() - 1
        });
        self.budget.enter_container()?;
        let decoded = body(self)?;
        self.budget.leave_container();
        if let Some(entry) = slot.and_then(|index| self.complex.get_mut(index)) {
            entry.complete = true;
        }
        Ok(decoded)
    }

    fn ecma_array_body(&mut self) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
        // The count is only a hint (encoders write 0 or stale counts): never trusted, never
        // used to preallocate.
        let _count_hint = self.reader.u32()?;
        self.properties()
    }

    fn strict_array_body(&mut self, offset: usize) -> Result<Vec<Amf0Value>, Amf0Error> {
        let count = self.reader.u32()?;
        let len = usize::try_from(count).unwrap_or(usize::MAX);
        let remaining = self.reader.remaining();
        // Every element takes at least one byte, so a count above the bytes left is a lie.
        if len > remaining {
            return Err(Amf0Error::ArrayCountExceedsInput {
                offset,
                count,
                remaining,
            });
        }
        self.budget.check_count(len)?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(self.value()?);
        }
        Ok(items)
    }

    fn typed_object_body(&mut self) -> Result<Amf0Value, Amf0Error> {
        let class = self.short_string()?;
        let properties = self.properties()?;
        Ok(Amf0Value::TypedObject { class, properties })
    }

    /// (name, value) pairs up to the empty name + object-end marker, or up to the end of the
    /// payload (tolerated: some encoders omit the final end marker).
    fn properties(&mut self) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
        let mut properties = Vec::new();
        while !self.reader.is_empty() {
            let name = self.short_string()?;
            if name.is_empty() && self.reader.peek() == Some(marker::OBJECT_END) {
                self.reader.u8()?;
                break;
            }
            let value = self.value()?;
            properties.push((name, value));
        }
        Ok(properties)
    }

    /// Resolves a reference by decoding its target again from where it starts.
    fn reference(&mut self, offset: usize) -> Result<Amf0Value, Amf0Error> {
        let index = self.reader.u16()?;
        let slot =
            self.complex
                .get(usize::from(index))
                .copied()
                .ok_or(Amf0Error::UnknownReference {
                    index,
                    known: self.complex.len(),
                    offset,
                })?;
        if !slot.complete {
            return Err(Amf0Error::CyclicReference { index, offset });
        }
        let resume = self.reader.position();
        let was_replaying = std::mem::replace(&mut self.replaying, true);
        self.reader.seek(slot.start);
        let target = self.value();
        self.replaying = was_replaying;
        self.reader.seek(resume);
        target
    }

    fn short_string(&mut self) -> Result<String, Amf0Error> {
        let len = usize::from(self.reader.u16()?);
        self.string_body(len)
    }

    fn long_string(&mut self) -> Result<String, Amf0Error> {
        let declared = self.reader.u32()?;
        let len = usize::try_from(declared).unwrap_or(usize::MAX);
        check_string_len(len)?;
        self.string_body(len)
    }

    fn string_body(&mut self, len: usize) -> Result<String, Amf0Error> {
        let bytes = self.reader.take(len)?;
        self.budget.count_bytes(len)?;
        Ok(lossy_utf8(bytes))
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

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

/// Longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(super) fn clamp_utf8(s: &str, max: usize) -> &str {
    s.get(..s.floor_char_boundary(max)).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_one(bytes: &[u8]) -> Amf0Value {
        match decode(bytes) {
            Ok((value, used)) => {
                assert_eq!(used, bytes.len(), "value should use the whole input");
                value
            }
            Err(e) => panic!("decode failed: {e}"),
        }
    }

    fn encoded(value: &Amf0Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(value, &mut out);
        out.to_vec()
    }

    const ONE: [u8; 9] = [0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn number_vector() {
        assert_eq!(decode_one(&ONE), Amf0Value::Number(1.0));
        assert_eq!(encoded(&Amf0Value::Number(1.0)), ONE);
    }

    #[test]
    fn boolean_vectors() {
        assert_eq!(decode_one(&[0x01, 0x00]), Amf0Value::Boolean(false));
        assert_eq!(decode_one(&[0x01, 0x01]), Amf0Value::Boolean(true));
        // Any non-zero byte is true.
        assert_eq!(decode_one(&[0x01, 0x7F]), Amf0Value::Boolean(true));
        assert_eq!(encoded(&true.into()), [0x01, 0x01]);
    }

    #[test]
    fn string_vector() {
        assert_eq!(decode_one(&[0x02, 0x00, 0x01, b'a']), "a".into());
        assert_eq!(encoded(&"a".into()), [0x02, 0x00, 0x01, b'a']);
        assert_eq!(decode_one(&[0x02, 0x00, 0x00]), "".into());
    }

    #[test]
    fn latin1_string_decodes_lossily() {
        // "caf\u{e9}" in Latin-1: 0xE9 alone is not UTF-8.
        let value = decode_one(&[0x02, 0x00, 0x04, b'c', b'a', b'f', 0xE9]);
        assert_eq!(value.as_str(), Some("caf\u{FFFD}"));
    }

    #[test]
    fn object_vector() {
        let bytes = [
            0x03, 0x00, 0x01, b'a', 0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x09,
        ];
        let expected = Amf0Value::object([("a", 1.0.into())]);
        assert_eq!(decode_one(&bytes), expected);
        assert_eq!(encoded(&expected), bytes);
    }

    #[test]
    fn null_undefined_unsupported_vectors() {
        assert_eq!(decode_one(&[0x05]), Amf0Value::Null);
        assert_eq!(decode_one(&[0x06]), Amf0Value::Undefined);
        assert_eq!(decode_one(&[0x0D]), Amf0Value::Unsupported);
    }

    #[test]
    fn strict_array_vector() {
        let mut bytes = vec![0x0A, 0x00, 0x00, 0x00, 0x02];
        bytes.extend_from_slice(&ONE);
        bytes.extend_from_slice(&[0x02, 0x00, 0x01, b'a']);
        let expected = Amf0Value::StrictArray(vec![1.0.into(), "a".into()]);
        assert_eq!(decode_one(&bytes), expected);
        assert_eq!(encoded(&expected), bytes);
    }

    #[test]
    fn date_vector() {
        // 2^40 ms = 0x4270000000000000 as f64; timezone field 0.
        let bytes = [0x0B, 0x42, 0x70, 0, 0, 0, 0, 0, 0, 0x00, 0x00];
        let expected = Amf0Value::Date {
            millis: 1_099_511_627_776.0,
            timezone: 0,
        };
        assert_eq!(decode_one(&bytes), expected);
        assert_eq!(encoded(&expected), bytes);
    }

    #[test]
    fn long_string_and_xml_vectors() {
        let bytes = [0x0C, 0x00, 0x00, 0x00, 0x02, b'h', b'i'];
        assert_eq!(decode_one(&bytes), Amf0Value::LongString("hi".into()));
        assert_eq!(encoded(&Amf0Value::LongString("hi".into())), bytes);
        let bytes = [0x0F, 0x00, 0x00, 0x00, 0x04, b'<', b'a', b'/', b'>'];
        assert_eq!(decode_one(&bytes), Amf0Value::Xml("<a/>".into()));
        assert_eq!(encoded(&Amf0Value::Xml("<a/>".into())), bytes);
    }

    #[test]
    fn typed_object_vector() {
        let bytes = [
            0x10, 0x00, 0x03, b'F', b'o', b'o', 0x00, 0x01, b'x', 0x05, 0x00, 0x00, 0x09,
        ];
        let expected = Amf0Value::TypedObject {
            class: "Foo".into(),
            properties: vec![("x".into(), Amf0Value::Null)],
        };
        assert_eq!(decode_one(&bytes), expected);
        assert_eq!(encoded(&expected), bytes);
        assert_eq!(expected.get("x"), Some(&Amf0Value::Null));
    }

    #[test]
    fn avmplus_switch_decodes_one_amf3_value() {
        // 0x11, then AMF3 integer 5, then back in AMF0: null.
        let values = decode_all(&[0x11, 0x04, 0x05, 0x05]).unwrap_or_default();
        assert_eq!(
            values,
            vec![Amf0Value::Amf3(Amf3Value::Integer(5)), Amf0Value::Null]
        );
        assert_eq!(values.first().and_then(Amf0Value::as_f64), Some(5.0));
    }

    fn ffmpeg_connect_payload() -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(b"\x02\x00\x07connect");
        p.extend_from_slice(b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00");
        p.extend_from_slice(b"\x03");
        p.extend_from_slice(b"\x00\x03app\x02\x00\x04live");
        p.extend_from_slice(b"\x00\x04type\x02\x00\x0anonprivate");
        p.extend_from_slice(b"\x00\x08flashVer\x02\x00\x23FMLE/3.0 (compatible; Lavf61.7.100)");
        p.extend_from_slice(b"\x00\x05tcUrl\x02\x00\x1artmp://127.0.0.1:1935/live");
        p.extend_from_slice(b"\x00\x00\x09");
        p
    }

    #[test]
    fn ffmpeg_connect_command_decodes() {
        let values = match decode_all(&ffmpeg_connect_payload()) {
            Ok(values) => values,
            Err(e) => panic!("connect payload rejected: {e}"),
        };
        assert_eq!(values.len(), 3);
        assert_eq!(values[0].as_str(), Some("connect"));
        assert_eq!(values[1].as_f64(), Some(1.0));
        let command = &values[2];
        assert_eq!(command.get("app").and_then(Amf0Value::as_str), Some("live"));
        assert_eq!(
            command.get("type").and_then(Amf0Value::as_str),
            Some("nonprivate")
        );
        assert_eq!(
            command.get("flashVer").and_then(Amf0Value::as_str),
            Some("FMLE/3.0 (compatible; Lavf61.7.100)")
        );
        assert_eq!(
            command.get("tcUrl").and_then(Amf0Value::as_str),
            Some("rtmp://127.0.0.1:1935/live")
        );
        let names: Vec<&str> = command
            .properties()
            .unwrap_or_default()
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(names, ["app", "type", "flashVer", "tcUrl"]);
        // And our encoder reproduces ffmpeg's bytes exactly.
        let mut out = BytesMut::new();
        encode_all(&values, &mut out);
        assert_eq!(out.as_ref(), ffmpeg_connect_payload().as_slice());
    }

    #[test]
    fn ecma_array_count_is_only_a_hint() {
        let entry = [0x00, 0x01, b'a', 0x01, 0x01];
        let expected = Amf0Value::ecma_array([("a", true.into())]);
        for count in [0u32, 1, 5, u32::MAX] {
            let mut bytes = vec![0x08];
            bytes.extend_from_slice(&count.to_be_bytes());
            bytes.extend_from_slice(&entry);
            bytes.extend_from_slice(&[0x00, 0x00, 0x09]);
            assert_eq!(decode_one(&bytes), expected, "count {count}");
        }
    }

    #[test]
    fn object_without_end_marker_at_end_of_payload_is_accepted() {
        let bytes = [0x08, 0, 0, 0, 1, 0x00, 0x01, b'a', 0x05];
        assert_eq!(
            decode_one(&bytes),
            Amf0Value::ecma_array([("a", Amf0Value::Null)])
        );
        // But a payload cut inside a property is still truncated.
        assert!(matches!(
            decode(&[0x03, 0x00, 0x05, b'a']),
            Err(Amf0Error::Truncated(_))
        ));
    }

    #[test]
    fn empty_name_not_followed_by_end_marker_is_a_property() {
        let bytes = [0x03, 0x00, 0x00, 0x05, 0x00, 0x00, 0x09];
        assert_eq!(
            decode_one(&bytes),
            Amf0Value::object([("", Amf0Value::Null)])
        );
    }

    #[test]
    fn references_resolve_to_earlier_objects() {
        // [ {a: null}, ref 1 ]: the strict array itself is index 0, the object index 1.
        let bytes = [
            0x0A, 0, 0, 0, 2, 0x03, 0x00, 0x01, b'a', 0x05, 0x00, 0x00, 0x09, 0x07, 0x00, 0x01,
        ];
        let object = Amf0Value::object([("a", Amf0Value::Null)]);
        assert_eq!(
            decode_one(&bytes),
            Amf0Value::StrictArray(vec![object.clone(), object])
        );
    }

    #[test]
    fn resolving_a_reference_registers_nothing_new() {
        // [ {a: null}, ref 1, {b: null}, ref 2 ]: the last reference is {b}, because decoding
        // {a} again for "ref 1" must not add a table entry.
        let bytes = [
            0x0A, 0, 0, 0, 4, 0x03, 0x00, 0x01, b'a', 0x05, 0x00, 0x00, 0x09, 0x07, 0x00, 0x01,
            0x03, 0x00, 0x01, b'b', 0x05, 0x00, 0x00, 0x09, 0x07, 0x00, 0x02,
        ];
        let a = Amf0Value::object([("a", Amf0Value::Null)]);
        let b = Amf0Value::object([("b", Amf0Value::Null)]);
        assert_eq!(
            decode_one(&bytes),
            Amf0Value::StrictArray(vec![a.clone(), a, b.clone(), b])
        );
    }

    #[test]
    fn cyclic_and_unknown_references_are_errors() {
        // o = {a: o}
        let cyclic = [0x03, 0x00, 0x01, b'a', 0x07, 0x00, 0x00, 0x00, 0x00, 0x09];
        assert_eq!(
            decode(&cyclic).err(),
            Some(Amf0Error::CyclicReference {
                index: 0,
                offset: 4
            })
        );
        assert_eq!(
            decode(&[0x07, 0x00, 0x03]).err(),
            Some(Amf0Error::UnknownReference {
                index: 3,
                known: 0,
                offset: 0
            })
        );
    }

    /// [ entry0 = [null x 100], entry1 = [ref entry0, ref entry0], entry2 = [ref entry1, ...] ...]
    /// Each level doubles the expansion; the element budget must stop it quickly.
    fn reference_bomb(levels: u16, leaf: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x0A];
        bytes.extend_from_slice(&u32::from(levels + 1).to_be_bytes());
        bytes.extend_from_slice(leaf);
        for level in 1..=levels {
            // The top array is index 0 and entry k is index k + 1.
            let previous = level;
            bytes.extend_from_slice(&[0x0A, 0, 0, 0, 2]);
            for _ in 0..2 {
                bytes.push(0x07);
                bytes.extend_from_slice(&previous.to_be_bytes());
            }
        }
        bytes
    }

    #[test]
    fn reference_amplification_hits_the_element_limit() {
        let mut leaf = vec![0x0A, 0, 0, 0, 100];
        leaf.extend(std::iter::repeat_n(0x05, 100));
        let bytes = reference_bomb(30, &leaf);
        assert_eq!(
            decode(&bytes).err(),
            Some(Amf0Error::Limit(LimitExceeded::Elements {
                max: MAX_ELEMENTS
            }))
        );
    }

    #[test]
    fn reference_amplification_hits_the_byte_limit() {
        let mut leaf = vec![0x0A, 0, 0, 0, 1, 0x0C];
        leaf.extend_from_slice(&(MAX_STRING_LEN as u32).to_be_bytes());
        leaf.extend(std::iter::repeat_n(b'x', MAX_STRING_LEN));
        let bytes = reference_bomb(8, &leaf);
        assert_eq!(
            decode(&bytes).err(),
            Some(Amf0Error::Limit(LimitExceeded::DecodedBytes {
                max: MAX_DECODED_BYTES
            }))
        );
    }

    fn nested_objects(levels: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for _ in 1..levels {
            bytes.extend_from_slice(&[0x03, 0x00, 0x01, b'a']);
        }
        bytes.extend_from_slice(&[0x03, 0x00, 0x00, 0x09]);
        for _ in 1..levels {
            bytes.extend_from_slice(&[0x00, 0x00, 0x09]);
        }
        bytes
    }

    #[test]
    fn depth_limit() {
        assert!(decode(&nested_objects(MAX_DEPTH)).is_ok());
        assert_eq!(
            decode(&nested_objects(MAX_DEPTH + 1)).err(),
            Some(Amf0Error::Limit(LimitExceeded::Depth { max: MAX_DEPTH }))
        );
        let mut arrays = Vec::new();
        for _ in 0..=MAX_DEPTH {
            arrays.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
        }
        arrays.push(0x05);
        assert_eq!(
            decode(&arrays).err(),
            Some(Amf0Error::Limit(LimitExceeded::Depth { max: MAX_DEPTH }))
        );
    }

    #[test]
    fn long_string_length_limit_is_checked_before_reading() {
        for declared in [u32::MAX, MAX_STRING_LEN as u32 + 1] {
            let mut bytes = vec![0x0C];
            bytes.extend_from_slice(&declared.to_be_bytes());
            assert_eq!(
                decode(&bytes).err(),
                Some(Amf0Error::Limit(LimitExceeded::StringLength {
                    len: declared as usize,
                    max: MAX_STRING_LEN
                }))
            );
        }
        let mut at_limit = vec![0x0F];
        at_limit.extend_from_slice(&(MAX_STRING_LEN as u32).to_be_bytes());
        at_limit.extend(std::iter::repeat_n(b'x', MAX_STRING_LEN));
        assert!(decode(&at_limit).is_ok());
    }

    #[test]
    fn strict_array_count_checked_against_input_and_budget() {
        assert_eq!(
            decode(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05]).err(),
            Some(Amf0Error::ArrayCountExceedsInput {
                offset: 0,
                count: u32::MAX,
                remaining: 1
            })
        );
        let count = MAX_ELEMENTS as u32 + 1;
        let mut bytes = vec![0x0A];
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes.extend(std::iter::repeat_n(0x05, count as usize));
        assert_eq!(
            decode(&bytes).err(),
            Some(Amf0Error::Limit(LimitExceeded::Elements {
                max: MAX_ELEMENTS
            }))
        );
    }

    #[test]
    fn element_limit_applies_to_ecma_arrays() {
        let mut bytes = vec![0x08, 0, 0, 0, 0];
        for _ in 0..MAX_ELEMENTS {
            bytes.extend_from_slice(&[0x00, 0x01, b'k', 0x05]);
        }
        bytes.extend_from_slice(&[0x00, 0x00, 0x09]);
        assert_eq!(
            decode(&bytes).err(),
            Some(Amf0Error::Limit(LimitExceeded::Elements {
                max: MAX_ELEMENTS
            }))
        );
    }

    #[test]
    fn truncation_and_bad_markers_are_reported() {
        assert_eq!(
            decode(&[0x00, 0x3F]).err(),
            Some(Amf0Error::Truncated(Truncated {
                offset: 1,
                needed: 7
            }))
        );
        assert_eq!(
            decode(&[]).err(),
            Some(Amf0Error::Truncated(Truncated {
                offset: 0,
                needed: 1
            }))
        );
        for marker in [0x04u8, 0x0E, 0x12, 0xFF] {
            assert_eq!(
                decode(&[marker]).err(),
                Some(Amf0Error::UnsupportedMarker { marker, offset: 0 })
            );
        }
        assert_eq!(
            decode(&[0x09]).err(),
            Some(Amf0Error::UnexpectedObjectEnd { offset: 0 })
        );
        assert_eq!(decode_all(&[]), Ok(Vec::new()));
    }

    #[test]
    fn long_strings_go_out_as_long_strings() {
        let short = "x".repeat(SHORT_STRING_MAX);
        let bytes = encoded(&Amf0Value::String(short.clone()));
        assert_eq!(bytes[..3], [0x02, 0xFF, 0xFF]);
        assert_eq!(decode_one(&bytes), Amf0Value::String(short));

        let long = "x".repeat(SHORT_STRING_MAX + 1);
        let bytes = encoded(&Amf0Value::String(long.clone()));
        assert_eq!(bytes[..5], [0x0C, 0x00, 0x01, 0x00, 0x00]);
        assert_eq!(decode_one(&bytes), Amf0Value::LongString(long));
    }

    #[test]
    fn overlong_names_are_clamped_on_a_char_boundary() {
        // 'é' is two bytes, so 65535 bytes would split one: the name is cut to 65534.
        let name = "é".repeat(40_000);
        let value = Amf0Value::object([(name, Amf0Value::Null)]);
        let bytes = encoded(&value);
        assert_eq!(bytes[..3], [0x03, 0xFF, 0xFE]);
        let decoded = decode_one(&bytes);
        let names = decoded.properties().map(|p| p[0].0.len());
        assert_eq!(names, Some(65_534));
    }

    #[test]
    fn helpers_read_what_sessions_need() {
        let status = Amf0Value::object([
            ("level", "status".into()),
            ("code", "NetStream.Publish.Start".into()),
            ("level", "error".into()),
        ]);
        assert_eq!(
            status.get("level").and_then(Amf0Value::as_str),
            Some("error")
        );
        assert_eq!(status.get("missing"), None);
        assert_eq!(Amf0Value::Null.get("level"), None);
        assert_eq!(Amf0Value::from(2.5).as_f64(), Some(2.5));
        assert_eq!(Amf0Value::from(true).as_bool(), Some(true));
        assert_eq!(Amf0Value::from(1.0).as_bool(), None);
        assert_eq!(Amf0Value::LongString("x".into()).as_str(), Some("x"));
        assert_eq!(Amf0Value::from(String::from("s")).as_str(), Some("s"));
    }

    // ---------------------------------------------------------------- property tests

    fn arb_text() -> impl Strategy<Value = String> {
        ".{0,12}"
    }

    fn arb_f64() -> impl Strategy<Value = f64> {
        any::<f64>().prop_filter("NaN never compares equal", |n| !n.is_nan())
    }

    fn arb_properties(
        inner: impl Strategy<Value = Amf0Value>,
    ) -> impl Strategy<Value = Vec<(String, Amf0Value)>> {
        prop::collection::vec((arb_text(), inner), 0..6)
    }

    /// Every AMF0 variant, nested, including AMF3 values behind the AVM+ marker.
    pub(crate) fn arb_amf0() -> impl Strategy<Value = Amf0Value> {
        let leaf = prop_oneof![
            arb_f64().prop_map(Amf0Value::Number),
            any::<bool>().prop_map(Amf0Value::Boolean),
            arb_text().prop_map(Amf0Value::String),
            Just(Amf0Value::Null),
            Just(Amf0Value::Undefined),
            (arb_f64(), any::<i16>())
                .prop_map(|(millis, timezone)| Amf0Value::Date { millis, timezone }),
            arb_text().prop_map(Amf0Value::LongString),
            arb_text().prop_map(Amf0Value::Xml),
            Just(Amf0Value::Unsupported),
            amf3::tests::arb_amf3().prop_map(Amf0Value::Amf3),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                arb_properties(inner.clone()).prop_map(Amf0Value::Object),
                arb_properties(inner.clone()).prop_map(Amf0Value::EcmaArray),
                prop::collection::vec(inner.clone(), 0..6).prop_map(Amf0Value::StrictArray),
                (arb_text(), arb_properties(inner))
                    .prop_map(|(class, properties)| Amf0Value::TypedObject { class, properties }),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(values in prop::collection::vec(arb_amf0(), 0..4)) {
            let mut out = BytesMut::new();
            encode_all(&values, &mut out);
            prop_assert_eq!(decode_all(&out), Ok(values.clone()));
            if let Some(first) = values.first() {
                let single = encoded(first);
                prop_assert_eq!(decode(&single), Ok((first.clone(), single.len())));
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
            let _ = decode_all(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic(
            value in arb_amf0(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encoded(&value);
            for (at, byte) in edits {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            let _ = decode_all(&bytes);
            bytes.truncate(cut.index(bytes.len() + 1));
            let _ = decode_all(&bytes);
        }
    }
}
