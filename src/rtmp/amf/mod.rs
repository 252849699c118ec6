//! AMF (Action Message Format), the value encoding of RTMP commands (`connect`, `publish`,
//! `_result`...) and data messages (`@setDataFrame`, `onMetaData`...).
//!
//! Two versions exist and RTMP mixes them: [`amf0`], what nearly every peer speaks, and
//! [`amf3`], which Flash-era clients put behind AMF0's AVM+ marker (0x11) one value at a time.
//! The layering follows that nesting, so the imports point one way only:
//!
//! - [`reader`], [`limits`] and `text` are shared by both decoders: the bounded byte reader,
//!   the per-payload budget (depth, values, string bytes) and the string helpers. One budget
//!   spans a whole payload whichever version its values use, so switching versions never
//!   resets a limit.
//! - [`amf3`] stands on those alone: it knows nothing of AMF0.
//! - [`amf0`] embeds AMF3 values (the AVM+ marker) and converts them to AMF0
//!   ([`amf0::Amf0Value::from_amf3`]), so session code reads both the same way.
//!
//! Sans-I/O: every decoder takes a complete message payload (the chunk layer has already
//! reassembled it), so running out of bytes is an error ([`Truncated`]), never a "need more"
//! state; and every size read from the wire is checked against a limit (or against the bytes
//! left) before anything is allocated.

pub mod amf0;
pub mod amf3;
pub mod limits;
pub mod reader;
mod text;

pub use limits::{LimitExceeded, MAX_DECODED_BYTES, MAX_DEPTH, MAX_ELEMENTS, MAX_STRING_LEN};
pub use reader::Truncated;
