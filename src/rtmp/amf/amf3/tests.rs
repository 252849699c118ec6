//! AMF3 on its own: vectors, references, limits, round trips. How AMF3 values behave inside
//! AMF0 payloads (the AVM+ switch, one budget for both, conversion to AMF0) is tested on the
//! AMF0 side.

use bytes::BytesMut;
use proptest::prelude::*;

use super::super::limits::{LimitExceeded, MAX_DEPTH, MAX_ELEMENTS};
use super::super::reader::{Reader, Truncated};
use super::u29::{
    INTEGER_MAX, INTEGER_MIN, MAX_INLINE_LEN, U29_MAX, inline_header, put_u29, read_u29,
};
use super::*;

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
fn depth_limit() {
    let nested_arrays = |levels: usize| {
        let mut bytes = Vec::new();
        for _ in 0..levels {
            bytes.extend_from_slice(&[0x09, 0x03, 0x01]);
        }
        bytes.push(0x01);
        bytes
    };
    assert!(decode(&nested_arrays(MAX_DEPTH)).is_ok());
    assert_eq!(
        decode(&nested_arrays(MAX_DEPTH + 1)).err(),
        Some(Amf3Error::Limit(LimitExceeded::Depth { max: MAX_DEPTH }))
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
            max: MAX_ELEMENTS
        }))
    );
}

fn put_u29_vec(value: u32, bytes: &mut Vec<u8>) {
    let mut out = BytesMut::new();
    put_u29(value, &mut out);
    bytes.extend_from_slice(&out);
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
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = decode(&bytes);
    }
}
