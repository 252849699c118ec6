//! Decoding AMF3: one standalone value ([`decode`]), or the values AMF0 embeds behind its AVM+
//! marker ([`decode_embedded`]), with the string, object and traits reference tables.

use std::ops::Range;

use super::super::limits::{Budget, LimitExceeded, check_string_len};
use super::super::reader::{Reader, Truncated};
use super::super::text::lossy_utf8;
use super::u29::{read_u29, sign_extend_u29};
use super::{Amf3Value, marker};

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
pub(in crate::rtmp::amf) struct RefTables {
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
pub(in crate::rtmp::amf) fn decode_embedded(
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
