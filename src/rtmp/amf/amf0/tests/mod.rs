//! AMF0 on its own: vectors (ffmpeg's connect among them), the tolerances real peers need,
//! references, limits, round trips. AMF3 values inside AMF0 payloads are in `amf3_inside`.

use bytes::BytesMut;
use proptest::prelude::*;

use super::super::amf3::{self, Amf3Value};
use super::super::limits::{
    LimitExceeded, MAX_DECODED_BYTES, MAX_DEPTH, MAX_ELEMENTS, MAX_STRING_LEN,
};
use super::super::reader::Truncated;
use super::encode::SHORT_STRING_MAX;
use super::*;

mod amf3_inside;

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
        0x0A, 0, 0, 0, 4, 0x03, 0x00, 0x01, b'a', 0x05, 0x00, 0x00, 0x09, 0x07, 0x00, 0x01, 0x03,
        0x00, 0x01, b'b', 0x05, 0x00, 0x00, 0x09, 0x07, 0x00, 0x02,
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
