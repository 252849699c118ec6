//! The decode limits every AMF payload is held to, AMF0 and AMF3 values counted together, and
//! the per-call `Budget` that enforces them.
//!
//! Why one budget for both versions: a payload may switch from AMF0 to AMF3 for any value, so
//! limits kept per version would let a peer reset them by switching.

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

/// What one decode call may still spend (depth, values, string bytes); shared with the AMF3
/// decoder so that switching encodings does not reset the limits.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    depth: usize,
    values: usize,
    bytes: usize,
}

impl Budget {
    pub(crate) fn enter_container(&mut self) -> Result<(), LimitExceeded> {
        if self.depth >= MAX_DEPTH {
            return Err(LimitExceeded::Depth { max: MAX_DEPTH });
        }
        self.depth += 1;
        Ok(())
    }

    pub(crate) fn leave_container(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    pub(crate) fn count_value(&mut self) -> Result<(), LimitExceeded> {
        if self.values >= MAX_ELEMENTS {
            return Err(LimitExceeded::Elements { max: MAX_ELEMENTS });
        }
        self.values += 1;
        Ok(())
    }

    pub(crate) fn values_left(&self) -> usize {
        MAX_ELEMENTS.saturating_sub(self.values)
    }

    /// Checks a declared element count against what is left, before allocating for it.
    pub(crate) fn check_count(&self, count: usize) -> Result<(), LimitExceeded> {
        if count > self.values_left() {
            return Err(LimitExceeded::Elements { max: MAX_ELEMENTS });
        }
        Ok(())
    }

    pub(crate) fn count_bytes(&mut self, len: usize) -> Result<(), LimitExceeded> {
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
pub(crate) fn check_string_len(len: usize) -> Result<(), LimitExceeded> {
    if len > MAX_STRING_LEN {
        return Err(LimitExceeded::StringLength {
            len,
            max: MAX_STRING_LEN,
        });
    }
    Ok(())
}
