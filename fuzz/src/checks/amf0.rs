//! Proves that the AMF0 decoder never panics (limits on depth, lengths, element counts and
//! references hold), and that whatever it decodes, `encode_all` writes back in a form it
//! decodes again; re-encoding that second decode gives the same bytes (encoding is stable).

use bytes::BytesMut;
use prism::rtmp::amf0;

/// Runs one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    if let Ok((_, used)) = amf0::decode(data) {
        assert!(used <= data.len());
    }
    let Ok(values) = amf0::decode_all(data) else {
        return;
    };
    let mut first = BytesMut::new();
    amf0::encode_all(&values, &mut first);
    let again = match amf0::decode_all(&first) {
        Ok(again) => again,
        Err(error) => panic!("re-encoded AMF0 does not decode: {error}\nvalues: {values:?}"),
    };
    let mut second = BytesMut::new();
    amf0::encode_all(&again, &mut second);
    assert!(
        first == second,
        "AMF0 encoding is not stable\nvalues: {values:?}\nagain: {again:?}"
    );
}
