//! Cue points: the `onCuePoint` data message of the FLV format, as Flash Media
//! Live Encoder, Wowza and broadcast ad-insertion tools send it down an RTMP
//! stream: `"onCuePoint", {name, time, type, parameters: {...}}` (AMF0), where
//! `time` is in seconds on the stream's timeline and `type` is `event` or
//! `navigation`.
//!
//! prism builds one when an operator inserts a cue through the API, and reads
//! one back (its own or a publisher's) where a cue becomes something else, such
//! as an HLS `EXT-X-DATERANGE`. The sizes are bounded here, once, so that no
//! caller can put an unbounded message on every destination's connection.

use bytes::{Bytes, BytesMut};

use super::amf0::{self, Amf0Value};

/// The longest cue name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// The most parameters a cue carries.
pub const MAX_PARAMETERS: usize = 32;
/// The longest parameter name or string value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024;

/// Why a cue cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CueError {
    /// No name, or one over [`MAX_NAME_BYTES`].
    #[error("a cue needs a name of 1 to {MAX_NAME_BYTES} bytes")]
    Name,
    /// More than [`MAX_PARAMETERS`] parameters.
    #[error("a cue carries at most {MAX_PARAMETERS} parameters")]
    TooManyParameters,
    /// A parameter whose name is empty or too long, or whose string is too long.
    #[error(
        "parameter {0:?}: names are 1 to {MAX_VALUE_BYTES} bytes, strings at most {MAX_VALUE_BYTES}"
    )]
    Parameter(String),
    /// A number that is not finite (AMF0 could carry it; no player means it).
    #[error("parameter {0:?}: numbers must be finite")]
    NotFinite(String),
}

/// What a cue marks: an `event` (an ad break, a scene change: something to act
/// on) or a `navigation` point (somewhere to seek to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CueKind {
    /// `type: "event"`, the default.
    #[default]
    Event,
    /// `type: "navigation"`.
    Navigation,
}

impl CueKind {
    /// The `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Navigation => "navigation",
        }
    }

    /// The kind a `type` string names.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "event" => Some(Self::Event),
            "navigation" => Some(Self::Navigation),
            _ => None,
        }
    }
}

/// One parameter's value: what AMF0 and every consumer of cues (players, HLS
/// attributes) agree on.
#[derive(Debug, Clone, PartialEq)]
pub enum CueValue {
    /// A number.
    Number(f64),
    /// A string.
    Text(String),
    /// A boolean.
    Bool(bool),
}

/// A cue point, validated: its message fits in a few tens of kilobytes at most.
#[derive(Debug, Clone, PartialEq)]
pub struct CuePoint {
    name: String,
    kind: CueKind,
    parameters: Vec<(String, CueValue)>,
}

impl CuePoint {
    /// A cue named `name` with `parameters`, within the bounds above.
    pub fn new(
        name: &str,
        kind: CueKind,
        parameters: Vec<(String, CueValue)>,
    ) -> Result<Self, CueError> {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(CueError::Name);
        }
        if parameters.len() > MAX_PARAMETERS {
            return Err(CueError::TooManyParameters);
        }
        for (key, value) in &parameters {
            let bad_key = key.is_empty() || key.len() > MAX_VALUE_BYTES;
            match value {
                CueValue::Text(text) if bad_key || text.len() > MAX_VALUE_BYTES => {
                    return Err(CueError::Parameter(clip(key)));
                }
                CueValue::Number(n) if !n.is_finite() => {
                    return Err(CueError::NotFinite(clip(key)));
                }
                _ if bad_key => return Err(CueError::Parameter(clip(key))),
                _ => {}
            }
        }
        Ok(Self {
            name: name.to_owned(),
            kind,
            parameters,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its kind.
    pub fn kind(&self) -> CueKind {
        self.kind
    }

    /// Its parameters, in the order given.
    pub fn parameters(&self) -> &[(String, CueValue)] {
        &self.parameters
    }

    /// A parameter's value as a number (`duration`, say).
    pub fn number(&self, key: &str) -> Option<f64> {
        self.parameters.iter().find_map(|(k, v)| match v {
            CueValue::Number(n) if k == key => Some(*n),
            _ => None,
        })
    }

    /// The data message's body for a cue at `timestamp` (ms on the stream's
    /// timeline): `"onCuePoint", {name, time, type, parameters}`.
    pub fn encode(&self, timestamp: u32) -> Bytes {
        let parameters = self
            .parameters
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    CueValue::Number(n) => Amf0Value::Number(*n),
                    CueValue::Text(text) => Amf0Value::String(text.clone()),
                    CueValue::Bool(b) => Amf0Value::Boolean(*b),
                };
                (key.clone(), value)
            })
            .collect::<Vec<_>>();
        let body = Amf0Value::object([
            ("name", Amf0Value::String(self.name.clone())),
            ("time", Amf0Value::Number(f64::from(timestamp) / 1000.0)),
            ("type", Amf0Value::String(self.kind.as_str().to_owned())),
            ("parameters", Amf0Value::Object(parameters)),
        ]);
        let mut out = BytesMut::with_capacity(128);
        amf0::encode(&Amf0Value::from("onCuePoint"), &mut out);
        amf0::encode(&body, &mut out);
        out.freeze()
    }

    /// The cue a data message's body carries, when it is an `onCuePoint` (with or
    /// without `@setDataFrame` before it) within the bounds above; parameters of
    /// other types (objects, arrays) are left out.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        let values = amf0::decode_all(payload).ok()?;
        let mut values = values.iter();
        let mut first = values.next()?;
        if first.as_str() == Some("@setDataFrame") {
            first = values.next()?;
        }
        if first.as_str() != Some("onCuePoint") {
            return None;
        }
        let body = values.next()?;
        let name = body.get("name")?.as_str()?;
        let kind = body
            .get("type")
            .and_then(Amf0Value::as_str)
            .and_then(CueKind::parse)
            .unwrap_or_default();
        let parameters = body
            .get("parameters")
            .and_then(Amf0Value::properties)
            .unwrap_or_default()
            .iter()
            .filter_map(|(key, value)| {
                let value = match value {
                    Amf0Value::Number(n) => CueValue::Number(*n),
                    Amf0Value::Boolean(b) => CueValue::Bool(*b),
                    other => CueValue::Text(other.as_str()?.to_owned()),
                };
                Some((key.clone(), value))
            })
            .take(MAX_PARAMETERS)
            .collect();
        Self::new(name, kind, parameters).ok()
    }
}

/// A parameter name for an error message: at most 64 bytes of it.
fn clip(key: &str) -> String {
    let mut end = key.len().min(64);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    key[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad_break() -> CuePoint {
        CuePoint::new(
            "ad-break",
            CueKind::Event,
            vec![
                ("duration".into(), CueValue::Number(30.0)),
                ("provider".into(), CueValue::Text("house".into())),
                ("skippable".into(), CueValue::Bool(false)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_cue_is_the_flv_specs_oncuepoint_object() {
        let payload = ad_break().encode(12_345);
        let values = amf0::decode_all(&payload).unwrap();
        assert_eq!(values[0].as_str(), Some("onCuePoint"));
        let body = &values[1];
        assert_eq!(
            body.get("name").and_then(Amf0Value::as_str),
            Some("ad-break")
        );
        assert_eq!(body.get("time").and_then(Amf0Value::as_f64), Some(12.345));
        assert_eq!(body.get("type").and_then(Amf0Value::as_str), Some("event"));
        let parameters = body.get("parameters").unwrap();
        assert_eq!(
            parameters.get("duration").and_then(Amf0Value::as_f64),
            Some(30.0)
        );
        assert_eq!(
            parameters.get("provider").and_then(Amf0Value::as_str),
            Some("house")
        );
    }

    #[test]
    fn what_is_encoded_decodes_to_the_same_cue() {
        let cue = ad_break();
        assert_eq!(CuePoint::decode(&cue.encode(0)), Some(cue.clone()));
        let mut wrapped = BytesMut::new();
        amf0::encode(&Amf0Value::from("@setDataFrame"), &mut wrapped);
        wrapped.extend_from_slice(&cue.encode(0));
        assert_eq!(CuePoint::decode(&wrapped), Some(cue));
    }

    #[test]
    fn other_data_and_garbage_are_no_cue() {
        let mut text = BytesMut::new();
        amf0::encode(&Amf0Value::from("onTextData"), &mut text);
        amf0::encode(
            &Amf0Value::object([("text", Amf0Value::from("hi"))]),
            &mut text,
        );
        assert_eq!(CuePoint::decode(&text), None);
        assert_eq!(CuePoint::decode(b"\x02\x00\x0aonCuePoint\x03\x00"), None);
        assert_eq!(CuePoint::decode(&[0xff; 40]), None);
    }

    #[test]
    fn sizes_are_bounded() {
        assert_eq!(
            CuePoint::new("", CueKind::Event, vec![]),
            Err(CueError::Name)
        );
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(
            CuePoint::new(&long, CueKind::Event, vec![]),
            Err(CueError::Name)
        );
        let many = (0..=MAX_PARAMETERS)
            .map(|i| (format!("p{i}"), CueValue::Bool(true)))
            .collect();
        assert_eq!(
            CuePoint::new("n", CueKind::Event, many),
            Err(CueError::TooManyParameters)
        );
        let big = vec![("k".into(), CueValue::Text("y".repeat(MAX_VALUE_BYTES + 1)))];
        assert!(matches!(
            CuePoint::new("n", CueKind::Event, big),
            Err(CueError::Parameter(_))
        ));
        let nan = vec![("d".into(), CueValue::Number(f64::NAN))];
        assert!(matches!(
            CuePoint::new("n", CueKind::Event, nan),
            Err(CueError::NotFinite(_))
        ));
    }
}
