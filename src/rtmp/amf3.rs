//! AMF3 values, as they appear in RTMP: behind the AVM+ marker (0x11) inside AMF0 payloads of
//! AMF3 command (type 17) and data (type 15) messages, which Flash-era clients send after
//! connecting with `objectEncoding: 3`. OBS and ffmpeg never do; this exists so such clients
//! are understood rather than dropped.
//!
//! [`decode_command_payload`] lives here because it is the entry point for those two message
//! types: skip their format byte, decode AMF0 with AMF3 switches, and hand back plain AMF0
//! values so session code has one path for both encodings.
//!
//! Decoding follows the AMF3 specification (Adobe, January 2013):
//! - U29 variable-length integers (1 to 4 bytes; the fourth byte carries 8 bits).
//! - String, object and traits reference tables. Like the AMF0 decoder, tables hold positions
//!   in the input, never copies; an object reference decodes its target again, charged to the
//!   shared budget (see `amf0::MAX_ELEMENTS`, `amf0::MAX_DECODED_BYTES`), and a reference into an
//!   object still being decoded (a cycle) is an error.
//! - Scope of the reference tables: one set per decode call, shared by every AVM+ value of a
//!   payload, as Adobe's own reader (BlazeDS `Amf0Input`, which keeps one `Amf3Input` per
//!   message body) does. Unverified against Flash Player's writer, which we have not seen send
//!   a cross-value reference.
//! - Not decoded, with [`Amf3Error::UnsupportedType`]: vectors (0x0D-0x10) and dictionaries
//!   (0x11), never used in RTMP commands; externalizable objects ([`Amf3Error::Externalizable`]),
//!   whose body format only their class knows.
//! - Limits are the AMF0 ones (`amf0::MAX_DEPTH`, `amf0::MAX_STRING_LEN`, ...), one budget per
//!   payload across both encodings.
//!
//! Encoding ([`encode`]) covers every [`Amf3Value`] variant but never emits references (always
//! valid, just less compact), which is enough to answer an AMF3 client.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

use super::amf0::{
    self, Amf0Error, Amf0Value, Budget, LimitExceeded, Reader, Truncated, check_string_len,
    clamp_utf8, lossy_utf8,
};

/// First byte of an AMF3 command/data message payload: "format 0", i.e. AMF0 values follow
/// (possibly switching to AMF3 per value).
const AMF3_MESSAGE_FORMAT: u8 = 0x00;

/// Largest value a U29 can carry (29 bits).
const U29_MAX: u32 = 0x1FFF_FFFF;

/// Longest string, byte array or dense array a U29 length header (29 bits minus the inline
/// flag) can express; longer ones are clamped when encoding.
const MAX_INLINE_LEN: usize = (U29_MAX >> 1) as usize;

/// Most sealed members an inline traits header (29 bits minus 4 flag bits) can express.
const MAX_SEALED_MEMBERS: usize = (U29_MAX >> 4) as usize;

/// Range of the AMF3 integer type (29-bit two's complement); others are sent as doubles.
const INTEGER_MIN: i32 = -(1 << 28);
const INTEGER_MAX: i32 = (1 << 28) - 1;

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

/// One AMF3 value. Members keep wire order in vectors (not maps), as in AMF0, so a value can
/// be relayed unchanged. References never appear: the decoder resolves them.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf3Value {
    /// `undefined`.
    Undefined,
    /// `null`.
    Null,
    /// `true` / `false` (two distinct markers on the wire).
    Boolean(bool),
    /// 29-bit signed integer. Encoding an i32 outside -2^28..2^28 writes a double instead.
    Integer(i32),
    /// IEEE-754 double.
    Double(f64),
    /// UTF-8 string (decoded lossily, as in AMF0).
    String(String),
    /// Legacy `flash.xml.XMLDocument` text.
    XmlDoc(String),
    /// Date: milliseconds since the Unix epoch, UTC (AMF3 has no time-zone field).
    Date(f64),
    /// ActionScript Array: an associative part (name, value) and a dense part (index 0..n).
    Array {
        /// Named entries, in wire order. Empty names cannot be encoded (an empty name ends the
        /// list) and are skipped by [`encode`].
        assoc: Vec<(String, Amf3Value)>,
        /// Dense entries, index 0 first.
        dense: Vec<Amf3Value>,
    },
    /// Object: optional class name (None = anonymous), sealed members declared by its traits,
    /// then dynamic members.
    Object {
        /// Registered class alias; `None` for anonymous objects (empty name on the wire).
        class: Option<String>,
        /// Members named in the traits, in traits order.
        sealed: Vec<(String, Amf3Value)>,
        /// Dynamic members, in wire order (empty names are skipped by [`encode`]).
        dynamic: Vec<(String, Amf3Value)>,
    },
    /// E4X `XML` text.
    Xml(String),
    /// `flash.utils.ByteArray` contents.
    ByteArray(Vec<u8>),
}

/// Why an AMF3 value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Amf3Error {
    /// The payload ended in the middle of a value.
    #[error(transparent)]
    Truncated(#[from] Truncated),
    /// A size, count, depth or total exceeded a decode limit (shared with AMF0).
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// A marker byte above 0x11, which no AMF3 version defines.
    #[error("unknown AMF3 type marker 0x{marker:02x} at offset {offset}")]
    UnknownMarker {
        /// The marker byte.
        marker: u8,
        /// Its offset.
        offset: usize,
    },
    /// A defined type this decoder does not handle (vectors and dictionaries); RTMP commands
    /// do not use them, and skipping one safely would require decoding it anyway.
    #[error("AMF3 {kind} (marker 0x{marker:02x}) at offset {offset} is not supported")]
    UnsupportedType {
        /// The marker byte.
        marker: u8,
        /// Human-readable type name.
        kind: &'static str,
        /// Its offset.
        offset: usize,
    },
    /// An externalizable object: its body is written by the class's own code, so its length
    /// and layout are unknown without that class.
    #[error("AMF3 externalizable object of class {class:?} at offset {offset} cannot be decoded")]
    Externalizable {
        /// The class alias, for the log.
        class: String,
        /// Offset of the object marker.
        offset: usize,
    },
    /// A dense array or sealed-member count larger than the bytes left (each entry takes at
    /// least one byte); checked before allocating.
    #[error("AMF3 count {count} at offset {offset} exceeds the {remaining} bytes left")]
    CountExceedsInput {
        /// Offset of the value's marker.
        offset: usize,
        /// The declared count.
        count: usize,
        /// Bytes left when the count was checked.
        remaining: usize,
    },
    /// A string, object or traits reference past the end of its table.
    #[error("AMF3 {table} reference {index} at offset {offset} is out of range ({known} known)")]
    UnknownReference {
        /// Which table: "string", "object" or "traits".
        table: &'static str,
        /// The referenced index.
        index: usize,
        /// Entries in that table.
        known: usize,
        /// Offset of the reference.
        offset: usize,
    },
    /// An object reference into an object or array that encloses it (a cycle), which a tree
    /// of owned values cannot represent.
    #[error(
        "AMF3 object reference {index} at offset {offset} points into a value still being decoded (cycles are not supported)"
    )]
    CyclicReference {
        /// The referenced index.
        index: usize,
        /// Offset of the reference.
        offset: usize,
    },
}

impl Amf3Value {
    /// An anonymous object with only dynamic members, the shape AMF3 clients send and expect
    /// for command objects and status replies.
    pub fn anonymous_object<K: Into<String>>(
        members: impl IntoIterator<Item = (K, Amf3Value)>,
    ) -> Self {
        Amf3Value::Object {
            class: None,
            sealed: Vec::new(),
            dynamic: members
                .into_iter()
                .map(|(name, value)| (name.into(), value))
                .collect(),
        }
    }

    /// The AMF0 equivalent of this value, so session code can read fields of AMF3 commands
    /// with the [`Amf0Value`] helpers.
    ///
    /// Integer and Double become Number; String stays String; XmlDoc and Xml become Xml; Date
    /// gets time zone 0; an Array with no named entries becomes a StrictArray, otherwise an
    /// EcmaArray with the dense entries first under the names "0", "1", ... (ECMAScript's
    /// property order) followed by the named ones; an Object becomes an Object (anonymous) or
    /// a TypedObject, sealed members first. A ByteArray has no AMF0 form and stays wrapped in
    /// [`Amf0Value::Amf3`].
    pub fn into_amf0(self) -> Amf0Value {
        match self {
            Amf3Value::Undefined => Amf0Value::Undefined,
            Amf3Value::Null => Amf0Value::Null,
            Amf3Value::Boolean(b) => Amf0Value::Boolean(b),
            Amf3Value::Integer(i) => Amf0Value::Number(f64::from(i)),
            Amf3Value::Double(n) => Amf0Value::Number(n),
            Amf3Value::String(s) => Amf0Value::String(s),
            Amf3Value::XmlDoc(s) | Amf3Value::Xml(s) => Amf0Value::Xml(s),
            Amf3Value::Date(millis) => Amf0Value::Date {
                millis,
                timezone: 0,
            },
            Amf3Value::Array { assoc, dense } if assoc.is_empty() => {
                Amf0Value::StrictArray(dense.into_iter().map(Amf3Value::into_amf0).collect())
            }
            Amf3Value::Array { assoc, dense } => {
                let indexed = dense
                    .into_iter()
                    .enumerate()
                    .map(|(index, value)| (index.to_string(), value));
                Amf0Value::EcmaArray(members_into_amf0(indexed.chain(assoc)))
            }
            Amf3Value::Object {
                class,
                sealed,
                dynamic,
            } => {
                let properties = members_into_amf0(sealed.into_iter().chain(dynamic));
                match class {
                    Some(class) => Amf0Value::TypedObject { class, properties },
                    None => Amf0Value::Object(properties),
                }
            }
            bytes @ Amf3Value::ByteArray(_) => Amf0Value::Amf3(bytes),
        }
    }

    /// [`Amf3Value::into_amf0`] for a borrowed value (clones it).
    pub fn to_amf0(&self) -> Amf0Value {
        self.clone().into_amf0()
    }
}

fn members_into_amf0(
    members: impl Iterator<Item = (String, Amf3Value)>,
) -> Vec<(String, Amf0Value)> {
    members
        .map(|(name, value)| (name, value.into_amf0()))
        .collect()
}

/// Decodes the payload of an RTMP AMF3 command (type 17) or data (type 15) message: skips the
/// leading format byte 0x00 when present, decodes the rest as AMF0 with AVM+ switches, and
/// converts every embedded AMF3 value to AMF0 ([`Amf0Value::flatten_amf3`]) so the result
/// reads exactly like a type 20 / type 18 payload.
///
/// A first byte of 0x00 is always the format byte, never an AMF0 number: commands and data
/// messages begin with their name, a string (0x02). Payloads without the format byte (some
/// peers omit it) are decoded as they are. To keep the raw AMF3 values, call
/// [`amf0::decode_all`] on the bytes after the format byte instead.
pub fn decode_command_payload(buf: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    let start = usize::from(buf.first() == Some(&AMF3_MESSAGE_FORMAT));
    let values = amf0::decode_all_from(buf, start)?;
    Ok(values.into_iter().map(Amf0Value::flatten_amf3).collect())
}

/// Decodes one standalone AMF3 value at the start of `buf` and returns it with the number of
/// bytes it took, with fresh reference tables and limits.
pub fn decode(buf: &[u8]) -> Result<(Amf3Value, usize), Amf3Error> {
    let mut reader = Reader::new(buf, 0);
    let mut budget = Budget::default();
    let mut tables = RefTables::default();
    let value = decode_embedded(&mut reader, &mut budget, &mut tables, false)?;
    Ok((value, reader.position()))
}

/// AMF3 reference tables for one payload (see the module docs for their scope). They hold
/// positions in the input, not copies.
#[derive(Debug, Default)]
pub(super) struct RefTables {
    /// Non-empty strings, in order of first (inline) appearance.
    strings: Vec<Range<usize>>,
    /// Objects, arrays, dates, XML and byte arrays, in order of appearance.
    objects: Vec<ObjectSlot>,
    /// Inline traits, in order of appearance.
    traits: Vec<Traits>,
}

/// Where a referenceable value starts (its marker) and whether it has been fully decoded.
#[derive(Debug, Clone, Copy)]
struct ObjectSlot {
    start: usize,
    complete: bool,
}

/// An object's traits: class name, dynamic flag and sealed member names, as input positions.
#[derive(Debug, Clone)]
struct Traits {
    class: Range<usize>,
    dynamic: bool,
    sealed: Vec<Range<usize>>,
}

/// Decodes one AMF3 value at the reader's position, sharing the caller's budget and tables;
/// this is how the AMF0 decoder handles the AVM+ marker. `replaying` is true while a reference
/// target is decoded again (nothing is registered then).
pub(super) fn decode_embedded(
    reader: &mut Reader<'_>,
    budget: &mut Budget,
    tables: &mut RefTables,
    replaying: bool,
) -> Result<Amf3Value, Amf3Error> {
    Decoder {
        reader,
        budget,
        tables,
        replaying,
    }
    .value()
}

/// Reads a U29: up to three bytes of 7 bits (high bit = more follows), then one of 8 bits.
fn read_u29(reader: &mut Reader<'_>) -> Result<u32, Truncated> {
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
fn sign_extend_u29(value: u32) -> i32 {
    ((value << 3) as i32) >> 3
}

/// A U29 "value or reference" header: low bit 1 = inline (the rest is a length or flags),
/// low bit 0 = reference (the rest is a table index).
enum Header {
    Inline(u32),
    Reference(usize),
}

struct Decoder<'d, 'a> {
    reader: &'d mut Reader<'a>,
    budget: &'d mut Budget,
    tables: &'d mut RefTables,
    replaying: bool,
}

impl Decoder<'_, '_> {
    fn value(&mut self) -> Result<Amf3Value, Amf3Error> {
        self.budget.count_value()?;
        let offset = self.reader.position();
        let marker = self.reader.u8()?;
        match marker {
            marker::UNDEFINED => Ok(Amf3Value::Undefined),
            marker::NULL => Ok(Amf3Value::Null),
            marker::FALSE => Ok(Amf3Value::Boolean(false)),
            marker::TRUE => Ok(Amf3Value::Boolean(true)),
            marker::INTEGER => Ok(Amf3Value::Integer(sign_extend_u29(read_u29(self.reader)?))),
            marker::DOUBLE => Ok(Amf3Value::Double(self.reader.f64()?)),
            marker::STRING => Ok(Amf3Value::String(self.string()?)),
            marker::XML_DOC => self.text(offset, Amf3Value::XmlDoc),
            marker::DATE => self.date(offset),
            marker::ARRAY => self.array(offset),
            marker::OBJECT => self.object(offset),
            marker::XML => self.text(offset, Amf3Value::Xml),
            marker::BYTE_ARRAY => self.byte_array(offset),
            marker::VECTOR_INT..=marker::DICTIONARY => Err(Amf3Error::UnsupportedType {
                marker,
                kind: unsupported_kind(marker),
                offset,
            }),
            _ => Err(Amf3Error::UnknownMarker { marker, offset }),
        }
    }

    fn header(&mut self) -> Result<Header, Truncated> {
        let header = read_u29(self.reader)?;
        let rest = header >> 1;
        Ok(if header & 1 == 0 {
            Header::Reference(rest as usize)
        } else {
            Header::Inline(rest)
        })
    }

    /// XMLDocument and XML: a length-prefixed string that lives in the object table.
    fn text(
        &mut self,
        offset: usize,
        wrap: fn(String) -> Amf3Value,
    ) -> Result<Amf3Value, Amf3Error> {
        let len = match self.header()? {
            Header::Reference(index) => return self.replay(index, offset),
            Header::Inline(len) => len as usize,
        };
        check_string_len(len)?;
        let bytes = self.reader.take(len)?;
        self.budget.count_bytes(len)?;
        self.register_complete(offset);
        Ok(wrap(lossy_utf8(bytes)))
    }

    fn date(&mut self, offset: usize) -> Result<Amf3Value, Amf3Error> {
        if let Header::Reference(index) = self.header()? {
            return self.replay(index, offset);
        }
        let millis = self.reader.f64()?;
        self.register_complete(offset);
        Ok(Amf3Value::Date(millis))
    }

    fn byte_array(&mut self, offset: usize) -> Result<Amf3Value, Amf3Error> {
        let len = match self.header()? {
            Header::Reference(index) => return self.replay(index, offset),
            Header::Inline(len) => len as usize,
        };
        check_string_len(len)?;
        let bytes = self.reader.take(len)?;
        self.budget.count_bytes(len)?;
        self.register_complete(offset);
        Ok(Amf3Value::ByteArray(bytes.to_vec()))
    }

    fn array(&mut self, offset: usize) -> Result<Amf3Value, Amf3Error> {
        let dense_len = match self.header()? {
            Header::Reference(index) => return self.replay(index, offset),
            Header::Inline(len) => len as usize,
        };
        let slot = self.register(offset);
        self.budget.enter_container()?;
        let assoc = self.named_members()?;
        self.check_count(offset, dense_len)?;
        let mut dense = Vec::with_capacity(dense_len);
        for _ in 0..dense_len {
            dense.push(self.value()?);
        }
        self.budget.leave_container();
        self.mark_complete(slot);
        Ok(Amf3Value::Array { assoc, dense })
    }

    fn object(&mut self, offset: usize) -> Result<Amf3Value, Amf3Error> {
        let flags = match self.header()? {
            Header::Reference(index) => return self.replay(index, offset),
            Header::Inline(flags) => flags,
        };
        let traits = self.traits(flags, offset)?;
        let slot = self.register(offset);
        self.budget.enter_container()?;
        let class = self.materialize(traits.class)?;
        // Re-checked here because referenced traits were checked against an earlier position.
        self.check_count(offset, traits.sealed.len())?;
        let mut sealed = Vec::with_capacity(traits.sealed.len());
        for name in traits.sealed {
            let name = self.materialize(name)?;
            sealed.push((name, self.value()?));
        }
        let dynamic = if traits.dynamic {
            self.named_members()?
        } else {
            Vec::new()
        };
        self.budget.leave_container();
        self.mark_complete(slot);
        Ok(Amf3Value::Object {
            class: (!class.is_empty()).then_some(class),
            sealed,
            dynamic,
        })
    }

    /// Traits from the bits after the object's inline flag: bit 0 clear = traits reference
    /// (index in the remaining bits); else bit 1 = externalizable, bit 2 = dynamic, and the
    /// remaining bits count the sealed members.
    fn traits(&mut self, flags: u32, offset: usize) -> Result<Traits, Amf3Error> {
        if flags & 0b1 == 0 {
            let index = (flags >> 1) as usize;
            return self
                .tables
                .traits
                .get(index)
                .cloned()
                .ok_or(Amf3Error::UnknownReference {
                    table: "traits",
                    index,
                    known: self.tables.traits.len(),
                    offset,
                });
        }
        let class = self.string_range()?;
        if flags & 0b10 != 0 {
            let class = lossy_utf8(self.reader.bytes_at(class));
            return Err(Amf3Error::Externalizable { class, offset });
        }
        let dynamic = flags & 0b100 != 0;
        let sealed_count = (flags >> 3) as usize;
        self.check_count(offset, sealed_count)?;
        let mut sealed = Vec::with_capacity(sealed_count);
        for _ in 0..sealed_count {
            sealed.push(self.string_range()?);
        }
        let traits = Traits {
            class,
            dynamic,
            sealed,
        };
        if !self.replaying {
            self.tables.traits.push(traits.clone());
        }
        Ok(traits)
    }

    /// (name, value) pairs up to the empty name: an array's associative part, or an object's
    /// dynamic members.
    fn named_members(&mut self) -> Result<Vec<(String, Amf3Value)>, Amf3Error> {
        let mut members = Vec::new();
        loop {
            let name = self.string()?;
            if name.is_empty() {
                return Ok(members);
            }
            members.push((name, self.value()?));
        }
    }

    /// Rejects a declared count that the remaining input or the value budget cannot hold,
    /// before anything is allocated for it.
    fn check_count(&self, offset: usize, count: usize) -> Result<(), Amf3Error> {
        let remaining = self.reader.remaining();
        if count > remaining {
            return Err(Amf3Error::CountExceedsInput {
                offset,
                count,
                remaining,
            });
        }
        self.budget.check_count(count)?;
        Ok(())
    }

    fn string(&mut self) -> Result<String, Amf3Error> {
        let range = self.string_range()?;
        self.materialize(range)
    }

    /// Where the next string's bytes are: inline (registered unless empty, per the spec) or
    /// from the string table.
    fn string_range(&mut self) -> Result<Range<usize>, Amf3Error> {
        let offset = self.reader.position();
        match self.header()? {
            Header::Reference(index) => {
                self.tables
                    .strings
                    .get(index)
                    .cloned()
                    .ok_or(Amf3Error::UnknownReference {
                        table: "string",
                        index,
                        known: self.tables.strings.len(),
                        offset,
                    })
            }
            Header::Inline(len) => {
                let len = len as usize;
                check_string_len(len)?;
                let range = self.reader.take_range(len)?;
                if !range.is_empty() && !self.replaying {
                    self.tables.strings.push(range.clone());
                }
                Ok(range)
            }
        }
    }

    fn materialize(&mut self, range: Range<usize>) -> Result<String, Amf3Error> {
        self.budget.count_bytes(range.len())?;
        Ok(lossy_utf8(self.reader.bytes_at(range)))
    }

    /// Enters a container value into the object table before its contents are read, so a
    /// reference to it from inside is recognised as a cycle.
    fn register(&mut self, start: usize) -> Option<usize> {
        if self.replaying {
            return None;
        }
        self.tables.objects.push(ObjectSlot {
            start,
            complete: false,
        });
        Some(self.tables.objects.len() - 1)
    }

    fn register_complete(&mut self, start: usize) {
        let slot = self.register(start);
        self.mark_complete(slot);
    }

    fn mark_complete(&mut self, slot: Option<usize>) {
        if let Some(entry) = slot.and_then(|index| self.tables.objects.get_mut(index)) {
            entry.complete = true;
        }
    }

    /// Resolves an object reference by decoding the target again from its marker.
    fn replay(&mut self, index: usize, offset: usize) -> Result<Amf3Value, Amf3Error> {
        let slot = self
            .tables
            .objects
            .get(index)
            .copied()
            .ok_or(Amf3Error::UnknownReference {
                table: "object",
                index,
                known: self.tables.objects.len(),
                offset,
            })?;
        if !slot.complete {
            return Err(Amf3Error::CyclicReference { index, offset });
        }
        let resume = self.reader.position();
        let was_replaying = std::mem::replace(&mut self.replaying, true);
        self.reader.seek(slot.start);
        let target = self.value();
        self.replaying = was_replaying;
        self.reader.seek(resume);
        target
    }
}

fn unsupported_kind(marker: u8) -> &'static str {
    match marker {
        marker::VECTOR_INT => "Vector.<int>",
        marker::VECTOR_UINT => "Vector.<uint>",
        marker::VECTOR_DOUBLE => "Vector.<Number>",
        marker::VECTOR_OBJECT => "Vector.<Object>",
        _ => "Dictionary",
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Appends the AMF3 encoding of `value` to `out` (without the AMF0 AVM+ marker; see
/// [`amf0::encode`] for that).
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

/// U29 header of an inline length or count: `len << 1 | 1`.
fn inline_header(len: usize) -> u32 {
    (len.min(MAX_INLINE_LEN) as u32) << 1 | 1
}

fn put_u29(value: u32, out: &mut BytesMut) {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_one(bytes: &[u8]) -> Amf3Value {
        match decode(bytes) {
            Ok((value, used)) => {
                assert_eq!(used, bytes.len(), "value should use the whole input");
                value
            }
            Err(e) => panic!("decode failed: {e}"),
        }
    }

    fn encoded(value: &Amf3Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(value, &mut out);
        out.to_vec()
    }

    fn u29_of(bytes: &[u8]) -> Result<u32, Truncated> {
        read_u29(&mut Reader::new(bytes, 0))
    }

    #[test]
    fn u29_vectors() {
        let vectors: [(&[u8], u32); 8] = [
            (&[0x00], 0),
            (&[0x7F], 0x7F),
            (&[0x81, 0x00], 0x80),
            (&[0xFF, 0x7F], 0x3FFF),
            (&[0x81, 0x80, 0x00], 0x4000),
            (&[0xFF, 0xFF, 0x7F], 0x1F_FFFF),
            (&[0x80, 0xC0, 0x80, 0x00], 0x20_0000),
            (&[0xFF, 0xFF, 0xFF, 0xFF], 0x1FFF_FFFF),
        ];
        for (bytes, value) in vectors {
            assert_eq!(u29_of(bytes), Ok(value), "decoding {bytes:02x?}");
            let mut out = BytesMut::new();
            put_u29(value, &mut out);
            assert_eq!(out.as_ref(), bytes, "encoding {value:#x}");
        }
        assert_eq!(
            u29_of(&[0x80, 0x80]),
            Err(Truncated {
                offset: 2,
                needed: 1
            })
        );
    }

    #[test]
    fn integer_vectors() {
        assert_eq!(decode_one(&[0x04, 0x7F]), Amf3Value::Integer(127));
        assert_eq!(decode_one(&[0x04, 0x81, 0x00]), Amf3Value::Integer(128));
        assert_eq!(
            decode_one(&[0x04, 0xFF, 0xFF, 0xFF, 0xFF]),
            Amf3Value::Integer(-1)
        );
        assert_eq!(
            decode_one(&[0x04, 0xBF, 0xFF, 0xFF, 0xFF]),
            Amf3Value::Integer(INTEGER_MAX)
        );
        assert_eq!(
            decode_one(&[0x04, 0xC0, 0x80, 0x80, 0x00]),
            Amf3Value::Integer(INTEGER_MIN)
        );
        assert_eq!(
            encoded(&Amf3Value::Integer(-1)),
            [0x04, 0xFF, 0xFF, 0xFF, 0xFF]
        );
        // Out of the 29-bit range: a double (2^28 = 0x41B0000000000000).
        assert_eq!(
            encoded(&Amf3Value::Integer(1 << 28)),
            [0x05, 0x41, 0xB0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn scalar_vectors() {
        assert_eq!(decode_one(&[0x00]), Amf3Value::Undefined);
        assert_eq!(decode_one(&[0x01]), Amf3Value::Null);
        assert_eq!(decode_one(&[0x02]), Amf3Value::Boolean(false));
        assert_eq!(decode_one(&[0x03]), Amf3Value::Boolean(true));
        assert_eq!(
            decode_one(&[0x05, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]),
            Amf3Value::Double(1.0)
        );
        assert_eq!(
            decode_one(&[0x06, 0x07, b'f', b'o', b'o']),
            Amf3Value::String("foo".into())
        );
        assert_eq!(decode_one(&[0x06, 0x01]), Amf3Value::String(String::new()));
        assert_eq!(
            decode_one(&[0x08, 0x01, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]),
            Amf3Value::Date(1.0)
        );
        assert_eq!(
            decode_one(&[0x0B, 0x07, b'<', b'a', b'>']),
            Amf3Value::Xml("<a>".into())
        );
        assert_eq!(
            decode_one(&[0x07, 0x07, b'<', b'a', b'>']),
            Amf3Value::XmlDoc("<a>".into())
        );
        assert_eq!(
            decode_one(&[0x0C, 0x07, 1, 2, 3]),
            Amf3Value::ByteArray(vec![1, 2, 3])
        );
    }

    #[test]
    fn string_references() {
        // ["foo", ref 0]
        let bytes = [0x09, 0x05, 0x01, 0x06, 0x07, b'f', b'o', b'o', 0x06, 0x00];
        let foo = Amf3Value::String("foo".into());
        assert_eq!(
            decode_one(&bytes),
            Amf3Value::Array {
                assoc: vec![],
                dense: vec![foo.clone(), foo]
            }
        );
        // ["", "a", ref 0]: the empty string is never entered in the table.
        let bytes = [0x09, 0x07, 0x01, 0x06, 0x01, 0x06, 0x03, b'a', 0x06, 0x00];
        let a = Amf3Value::String("a".into());
        assert_eq!(
            decode_one(&bytes),
            Amf3Value::Array {
                assoc: vec![],
                dense: vec![Amf3Value::String(String::new()), a.clone(), a]
            }
        );
        assert_eq!(
            decode(&[0x06, 0x02]).err(),
            Some(Amf3Error::UnknownReference {
                table: "string",
                index: 1,
                known: 0,
                offset: 1
            })
        );
    }

    #[test]
    fn traits_references() {
        // [ {a: 1}, {a: 2} ] where the second object reuses the first one's sealed traits.
        let bytes = [
            0x09, 0x05, 0x01, 0x0A, 0x13, 0x01, 0x03, b'a', 0x04, 0x01, 0x0A, 0x01, 0x04, 0x02,
        ];
        let object = |n| Amf3Value::Object {
            class: None,
            sealed: vec![("a".into(), Amf3Value::Integer(n))],
            dynamic: vec![],
        };
        assert_eq!(
            decode_one(&bytes),
            Amf3Value::Array {
                assoc: vec![],
                dense: vec![object(1), object(2)]
            }
        );
    }

    #[test]
    fn object_references() {
        // [ o, ref o ] with o = {x: true} (dynamic); the array is object 0, o is object 1.
        let bytes = [
            0x09, 0x05, 0x01, 0x0A, 0x0B, 0x01, 0x03, b'x', 0x03, 0x01, 0x0A, 0x02,
        ];
        let o = Amf3Value::anonymous_object([("x", Amf3Value::Boolean(true))]);
        assert_eq!(
            decode_one(&bytes),
            Amf3Value::Array {
                assoc: vec![],
                dense: vec![o.clone(), o]
            }
        );
        // A date referenced the same way.
        let mut bytes = vec![0x09, 0x05, 0x01, 0x08, 0x01];
        bytes.extend_from_slice(&1.0f64.to_be_bytes());
        bytes.extend_from_slice(&[0x08, 0x02]);
        assert_eq!(
            decode_one(&bytes),
            Amf3Value::Array {
                assoc: vec![],
                dense: vec![Amf3Value::Date(1.0), Amf3Value::Date(1.0)]
            }
        );
    }

    #[test]
    fn resolving_a_reference_registers_nothing_new() {
        // [ o1 = {a: 1} (traits T0, strings "a"), ref o1, o3 = {b: 2} (traits T1, string "b"),
        //   o4 with traits ref 1 (must be T1), string ref 1 (must be "b") ]
        let bytes = [
            0x09, 0x09, 0x01, // array, 4 dense
            0x0A, 0x13, 0x01, 0x03, b'a', 0x04, 0x01, // o1 (object 1)
            0x0A, 0x02, // ref object 1
            0x0A, 0x13, 0x01, 0x03, b'b', 0x04, 0x02, // o3 (object 2)
            0x0A, 0x05, 0x06, 0x02, // o4: traits ref 1, b = string ref 1
        ];
        let sealed = |name: &str, value| Amf3Value::Object {
            class: None,
            sealed: vec![(name.into(), value)],
            dynamic: vec![],
        };
        let o1 = sealed("a", Amf3Value::Integer(1));
        assert_eq!(
            decode_one(&bytes),
            Amf3Value::Array {
                assoc: vec![],
                dense: vec![
                    o1.clone(),
                    o1,
                    sealed("b", Amf3Value::Integer(2)),
                    sealed("b", Amf3Value::String("b".into())),
                ]
            }
        );
    }

    #[test]
    fn cyclic_reference_is_an_error() {
        // o = {x: o}
        let bytes = [0x0A, 0x0B, 0x01, 0x03, b'x', 0x0A, 0x00, 0x01];
        assert_eq!(
            decode(&bytes).err(),
            Some(Amf3Error::CyclicReference {
                index: 0,
                offset: 5
            })
        );
    }

    #[test]
    fn typed_object_and_mixed_array() {
        let bytes = [0x0A, 0x13, 0x07, b'F', b'o', b'o', 0x03, b'a', 0x04, 0x01];
        let expected = Amf3Value::Object {
            class: Some("Foo".into()),
            sealed: vec![("a".into(), Amf3Value::Integer(1))],
            dynamic: vec![],
        };
        assert_eq!(decode_one(&bytes), expected);
        assert_eq!(encoded(&expected), bytes);

        let bytes = [0x09, 0x03, 0x03, b'k', 0x04, 0x01, 0x01, 0x04, 0x02];
        let expected = Amf3Value::Array {
            assoc: vec![("k".into(), Amf3Value::Integer(1))],
            dense: vec![Amf3Value::Integer(2)],
        };
        assert_eq!(decode_one(&bytes), expected);
        assert_eq!(encoded(&expected), bytes);
    }

    #[test]
    fn anonymous_object_encoding_vector() {
        // Anonymous objects are always marked dynamic (0x0B), even with no members.
        let empty = Amf3Value::anonymous_object(Vec::<(String, Amf3Value)>::new());
        assert_eq!(encoded(&empty), [0x0A, 0x0B, 0x01, 0x01]);
        let value = Amf3Value::anonymous_object([("x", Amf3Value::Boolean(true))]);
        assert_eq!(encoded(&value), [0x0A, 0x0B, 0x01, 0x03, b'x', 0x03, 0x01]);
    }

    #[test]
    fn unsupported_types_are_reported() {
        let bytes = [0x0A, 0x07, 0x07, b'F', b'o', b'o'];
        assert_eq!(
            decode(&bytes).err(),
            Some(Amf3Error::Externalizable {
                class: "Foo".into(),
                offset: 0
            })
        );
        for marker in 0x0D..=0x11u8 {
            assert!(matches!(
                decode(&[marker, 0x01]),
                Err(Amf3Error::UnsupportedType { marker: m, offset: 0, .. }) if m == marker
            ));
        }
        assert_eq!(
            decode(&[0x12]).err(),
            Some(Amf3Error::UnknownMarker {
                marker: 0x12,
                offset: 0
            })
        );
    }

    #[test]
    fn counts_and_lengths_are_checked_before_allocating() {
        // Dense count 2^28 - 1 with three bytes left.
        assert_eq!(
            decode(&[0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x01, 0x01]).err(),
            Some(Amf3Error::CountExceedsInput {
                offset: 0,
                count: MAX_INLINE_LEN,
                remaining: 2
            })
        );
        // Sealed count 2^25 - 1.
        assert!(matches!(
            decode(&[0x0A, 0xFF, 0xFF, 0xFF, 0xF3, 0x01]),
            Err(Amf3Error::CountExceedsInput { .. })
        ));
        // String length above MAX_STRING_LEN.
        assert!(matches!(
            decode(&[0x06, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(Amf3Error::Limit(LimitExceeded::StringLength { .. }))
        ));
        assert!(matches!(
            decode(&[0x0C, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(Amf3Error::Limit(LimitExceeded::StringLength { .. }))
        ));
    }

    #[test]
    fn depth_limit_spans_amf0_and_amf3() {
        let nested_arrays = |levels: usize| {
            let mut bytes = Vec::new();
            for _ in 0..levels {
                bytes.extend_from_slice(&[0x09, 0x03, 0x01]);
            }
            bytes.push(0x01);
            bytes
        };
        assert!(decode(&nested_arrays(amf0::MAX_DEPTH)).is_ok());
        assert_eq!(
            decode(&nested_arrays(amf0::MAX_DEPTH + 1)).err(),
            Some(Amf3Error::Limit(LimitExceeded::Depth {
                max: amf0::MAX_DEPTH
            }))
        );
        // 63 AMF0 strict arrays, then an AMF3 array holding another one: 65 levels.
        let mut bytes = Vec::new();
        for _ in 0..amf0::MAX_DEPTH - 1 {
            bytes.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
        }
        bytes.push(0x11);
        bytes.extend_from_slice(&nested_arrays(2));
        assert_eq!(
            amf0::decode(&bytes).err(),
            Some(Amf0Error::Amf3(Amf3Error::Limit(LimitExceeded::Depth {
                max: amf0::MAX_DEPTH
            })))
        );
    }

    #[test]
    fn object_reference_amplification_hits_the_element_limit() {
        // Array (object 0) of: a0 = [null x 100] (object 1), then a_k = [ref a_{k-1} x 2].
        let levels = 30u32;
        let mut bytes = vec![0x09];
        put_u29_vec(inline_header(levels as usize + 1), &mut bytes);
        bytes.push(0x01);
        bytes.extend_from_slice(&[0x09, 0x81, 0x49, 0x01]); // dense count 100 -> U29 201
        bytes.extend(std::iter::repeat_n(0x01, 100));
        for level in 1..=levels {
            bytes.extend_from_slice(&[0x09, 0x05, 0x01]);
            for _ in 0..2 {
                bytes.push(0x09);
                put_u29_vec(level << 1, &mut bytes);
            }
        }
        assert_eq!(
            decode(&bytes).err(),
            Some(Amf3Error::Limit(LimitExceeded::Elements {
                max: amf0::MAX_ELEMENTS
            }))
        );
    }

    fn put_u29_vec(value: u32, bytes: &mut Vec<u8>) {
        let mut out = BytesMut::new();
        put_u29(value, &mut out);
        bytes.extend_from_slice(&out);
    }

    /// A type-17 `connect` as an AMF3 client writes it: format byte, AMF0 name and
    /// transaction id, then the command object behind the AVM+ marker, then one more AMF3
    /// argument that reuses a string by reference.
    fn amf3_connect_payload() -> Vec<u8> {
        let mut p = vec![0x00];
        p.extend_from_slice(b"\x02\x00\x07connect");
        p.extend_from_slice(b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00");
        p.extend_from_slice(b"\x11\x0a\x0b\x01");
        p.extend_from_slice(b"\x07app\x06\x09live");
        p.extend_from_slice(b"\x1dobjectEncoding\x04\x03");
        p.extend_from_slice(b"\x01");
        // String table: "app" 0, "live" 1, "objectEncoding" 2.
        p.extend_from_slice(b"\x11\x06\x02");
        p
    }

    #[test]
    fn amf3_command_payload_with_avmplus_switch() {
        let values = match decode_command_payload(&amf3_connect_payload()) {
            Ok(values) => values,
            Err(e) => panic!("AMF3 connect rejected: {e}"),
        };
        let expected = vec![
            Amf0Value::from("connect"),
            Amf0Value::from(1.0),
            Amf0Value::object([("app", "live".into()), ("objectEncoding", 3.0.into())]),
            Amf0Value::from("live"),
        ];
        assert_eq!(values, expected);
        assert_eq!(
            values[2].get("objectEncoding").and_then(Amf0Value::as_f64),
            Some(3.0)
        );
        // Without the format byte, the same values.
        assert_eq!(
            decode_command_payload(&amf3_connect_payload()[1..]),
            Ok(expected)
        );
        // The raw path keeps the AMF3 value.
        let raw = amf0::decode_all(&amf3_connect_payload()[1..]).unwrap_or_default();
        assert!(matches!(
            raw.get(2),
            Some(Amf0Value::Amf3(Amf3Value::Object { .. }))
        ));
        assert_eq!(decode_command_payload(&[0x00]), Ok(vec![]));
        assert_eq!(decode_command_payload(&[]), Ok(vec![]));
    }

    #[test]
    fn errors_inside_amf3_name_their_offset_in_the_payload() {
        let payload = [0x00, 0x11, 0x06, 0x04];
        assert_eq!(
            decode_command_payload(&payload),
            Err(Amf0Error::Amf3(Amf3Error::UnknownReference {
                table: "string",
                index: 2,
                known: 0,
                offset: 3
            }))
        );
    }

    #[test]
    fn conversion_to_amf0() {
        let cases = [
            (Amf3Value::Integer(-3), Amf0Value::Number(-3.0)),
            (Amf3Value::Double(0.5), Amf0Value::Number(0.5)),
            (Amf3Value::Undefined, Amf0Value::Undefined),
            (Amf3Value::Null, Amf0Value::Null),
            (Amf3Value::Boolean(true), Amf0Value::Boolean(true)),
            (
                Amf3Value::XmlDoc("<a/>".into()),
                Amf0Value::Xml("<a/>".into()),
            ),
            (
                Amf3Value::Date(5.0),
                Amf0Value::Date {
                    millis: 5.0,
                    timezone: 0,
                },
            ),
            (
                Amf3Value::Array {
                    assoc: vec![],
                    dense: vec![Amf3Value::String("a".into())],
                },
                Amf0Value::StrictArray(vec!["a".into()]),
            ),
            (
                Amf3Value::Array {
                    assoc: vec![("k".into(), Amf3Value::Null)],
                    dense: vec![Amf3Value::Integer(7)],
                },
                Amf0Value::ecma_array([("0", 7.0.into()), ("k", Amf0Value::Null)]),
            ),
            (
                Amf3Value::Object {
                    class: Some("C".into()),
                    sealed: vec![("s".into(), Amf3Value::Integer(1))],
                    dynamic: vec![("d".into(), Amf3Value::Integer(2))],
                },
                Amf0Value::TypedObject {
                    class: "C".into(),
                    properties: vec![("s".into(), 1.0.into()), ("d".into(), 2.0.into())],
                },
            ),
            (
                Amf3Value::ByteArray(vec![1]),
                Amf0Value::Amf3(Amf3Value::ByteArray(vec![1])),
            ),
        ];
        for (amf3, amf0) in cases {
            assert_eq!(amf3.to_amf0(), amf0, "converting {amf3:?}");
        }
    }

    // ---------------------------------------------------------------- property tests

    fn arb_text() -> impl Strategy<Value = String> {
        ".{0,12}"
    }

    fn arb_name() -> impl Strategy<Value = String> {
        ".{1,8}"
    }

    fn arb_f64() -> impl Strategy<Value = f64> {
        any::<f64>().prop_filter("NaN never compares equal", |n| !n.is_nan())
    }

    fn arb_members(
        inner: impl Strategy<Value = Amf3Value>,
    ) -> impl Strategy<Value = Vec<(String, Amf3Value)>> {
        prop::collection::vec((arb_name(), inner), 0..5)
    }

    /// AMF3 values that survive an encode/decode round trip unchanged: integers in the 29-bit
    /// range, non-empty member names, non-empty class names.
    pub(crate) fn arb_amf3() -> impl Strategy<Value = Amf3Value> {
        let leaf = prop_oneof![
            Just(Amf3Value::Undefined),
            Just(Amf3Value::Null),
            any::<bool>().prop_map(Amf3Value::Boolean),
            (INTEGER_MIN..=INTEGER_MAX).prop_map(Amf3Value::Integer),
            arb_f64().prop_map(Amf3Value::Double),
            arb_text().prop_map(Amf3Value::String),
            arb_text().prop_map(Amf3Value::XmlDoc),
            arb_f64().prop_map(Amf3Value::Date),
            arb_text().prop_map(Amf3Value::Xml),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(Amf3Value::ByteArray),
        ];
        leaf.prop_recursive(3, 24, 5, |inner| {
            prop_oneof![
                (
                    arb_members(inner.clone()),
                    prop::collection::vec(inner.clone(), 0..5)
                )
                    .prop_map(|(assoc, dense)| Amf3Value::Array { assoc, dense }),
                (
                    prop::option::of(arb_name()),
                    prop::collection::vec((arb_text(), inner.clone()), 0..4),
                    arb_members(inner),
                )
                    .prop_map(|(class, sealed, dynamic)| Amf3Value::Object {
                        class,
                        sealed,
                        dynamic
                    }),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(value in arb_amf3()) {
            let bytes = encoded(&value);
            prop_assert_eq!(decode(&bytes), Ok((value, bytes.len())));
        }

        #[test]
        fn u29_round_trip(value in 0..=U29_MAX) {
            let mut out = BytesMut::new();
            put_u29(value, &mut out);
            prop_assert_eq!(u29_of(&out), Ok(value));
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
            let _ = decode_command_payload(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic(
            value in arb_amf3(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encoded(&value);
            for (at, byte) in edits {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            let _ = decode(&bytes);
            let mut payload = vec![0x00, 0x11];
            payload.extend_from_slice(&bytes);
            let _ = decode_command_payload(&payload);
            bytes.truncate(cut.index(bytes.len() + 1));
            let _ = decode(&bytes);
        }
    }
}
