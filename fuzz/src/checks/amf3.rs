//! Proves that the AMF3 decoders never panic: `amf0::decode_amf3_message` (type 15/17 message
//! bodies: AMF0 with AVM+ switches, flattened to AMF0) and the standalone `amf3::decode`
//! (reference tables, traits, 29-bit integers, limits). A value `amf3::decode` accepts must
//! convert to AMF0, and decode again after `amf3::encode`.

use bytes::BytesMut;
use prism::rtmp::amf0::{self, Amf0Value};
use prism::rtmp::amf3;

/// Runs one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    let _ = amf0::decode_amf3_message(data);
    let Ok((value, used)) = amf3::decode(data) else {
        return;
    };
    assert!(used <= data.len());
    let _ = Amf0Value::from_amf3(value.clone());
    let mut out = BytesMut::new();
    amf3::encode(&value, &mut out);
    if let Err(error) = amf3::decode(&out) {
        panic!("re-encoded AMF3 does not decode: {error}\nvalue: {value:?}");
    }
}
