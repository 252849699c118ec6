//! AMF3 values inside AMF0 payloads: the AVM+ switch, the payloads of AMF3 messages (type 15
//! and 17), one budget for both versions, and the conversion to AMF0.

use bytes::BytesMut;
use proptest::prelude::*;

use super::super::super::amf3::{self, Amf3Error, Amf3Value, tests::arb_amf3};
use super::super::super::limits::{LimitExceeded, MAX_DEPTH};
use super::super::*;

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
    // 63 AMF0 strict arrays, then an AMF3 array holding another one: 65 levels.
    let mut bytes = Vec::new();
    for _ in 0..MAX_DEPTH - 1 {
        bytes.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
    }
    bytes.push(0x11);
    bytes.extend_from_slice(&nested_arrays(2));
    assert_eq!(
        decode(&bytes).err(),
        Some(Amf0Error::Amf3(Amf3Error::Limit(LimitExceeded::Depth {
            max: MAX_DEPTH
        })))
    );
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
    let values = match decode_amf3_message(&amf3_connect_payload()) {
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
        decode_amf3_message(&amf3_connect_payload()[1..]),
        Ok(expected)
    );
    // The raw path keeps the AMF3 value.
    let raw = decode_all(&amf3_connect_payload()[1..]).unwrap_or_default();
    assert!(matches!(
        raw.get(2),
        Some(Amf0Value::Amf3(Amf3Value::Object { .. }))
    ));
    assert_eq!(decode_amf3_message(&[0x00]), Ok(vec![]));
    assert_eq!(decode_amf3_message(&[]), Ok(vec![]));
}

#[test]
fn errors_inside_amf3_name_their_offset_in_the_payload() {
    let payload = [0x00, 0x11, 0x06, 0x04];
    assert_eq!(
        decode_amf3_message(&payload),
        Err(Amf0Error::Amf3(Amf3Error::UnknownReference {
            table: "string",
            index: 2,
            known: 0,
            offset: 3
        }))
    );
}

#[test]
fn conversion_from_amf3() {
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
        assert_eq!(
            Amf0Value::from_amf3(amf3.clone()),
            amf0,
            "converting {amf3:?}"
        );
    }
}

proptest! {
    #[test]
    fn random_amf3_message_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_amf3_message(&bytes);
    }

    #[test]
    fn mutated_amf3_values_in_a_message_never_panic(
        value in arb_amf3(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = BytesMut::new();
        amf3::encode(&value, &mut bytes);
        let mut bytes = bytes.to_vec();
        for (at, byte) in edits {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        let mut payload = vec![0x00, 0x11];
        payload.extend_from_slice(&bytes);
        let _ = decode_amf3_message(&payload);
    }
}
