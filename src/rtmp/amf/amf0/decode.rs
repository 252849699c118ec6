//! Decoding AMF0: whole payloads ([`decode_all`]), single values ([`decode`]), and the
//! payloads of AMF3 messages ([`decode_amf3_message`]).

use super::super::amf3::{self, Amf3Error};
use super::super::limits::{Budget, LimitExceeded, check_string_len};
use super::super::reader::{Reader, Truncated};
use super::super::text::lossy_utf8;
use super::{Amf0Value, marker};

/// First byte of an AMF3 command/data message payload: "format 0", i.e. AMF0 values follow
/// (possibly switching to AMF3 per value).
const AMF3_MESSAGE_FORMAT: u8 = 0x00;

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
/// [`decode_amf3_message`] to skip its format byte.
fn decode_all_from(buf: &[u8], start: usize) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut decoder = Decoder::new(buf, start);
    let mut values = Vec::new();
    while !decoder.reader.is_empty() {
        values.push(decoder.value()?);
    }
    Ok(values)
}

/// Decodes the payload of an RTMP AMF3 command (type 17) or data (type 15) message: skips the
/// leading format byte 0x00 when present, decodes the rest as AMF0 with AVM+ switches, and
/// converts every embedded AMF3 value to AMF0 ([`Amf0Value::flatten_amf3`]) so the result
/// reads exactly like a type 20 / type 18 payload. It is AMF0's to decode because those
/// messages are AMF0 framing around AMF3 values.
///
/// A first byte of 0x00 is always the format byte, never an AMF0 number: commands and data
/// messages begin with their name, a string (0x02). Payloads without the format byte (some
/// peers omit it) are decoded as they are. To keep the raw AMF3 values, call [`decode_all`]
/// on the bytes after the format byte instead.
pub fn decode_amf3_message(buf: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    let start = usize::from(buf.first() == Some(&AMF3_MESSAGE_FORMAT));
    let values = decode_all_from(buf, start)?;
    Ok(values.into_iter().map(Amf0Value::flatten_amf3).collect())
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
