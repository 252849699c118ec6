//! [`Amf0Value`]: one decoded AMF0 value, with the helpers session code reads commands and
//! builds replies with.

use super::super::amf3::Amf3Value;

/// One AMF0 value. Objects keep their properties as an ordered list (not a map) because order
/// is visible on the wire and some peers care (e.g. `onMetaData` field order is echoed to
/// players as received), and because duplicate names must survive a relay unchanged.
///
/// A reference (marker 0x07) never appears here: the decoder replaces it by the value it points
/// to, so session code never has to chase references.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// IEEE-754 double; AMF0's only numeric type (transaction ids, codec ids, bitrates...).
    Number(f64),
    /// Boolean; any non-zero byte decodes as `true`, as the spec says.
    Boolean(bool),
    /// UTF-8 string. Encoded as a short string when it fits 65535 bytes, else as a long string.
    String(String),
    /// Anonymous object: ordered (name, value) properties, e.g. the connect command object.
    Object(Vec<(String, Amf0Value)>),
    /// `null`; commands use it as the placeholder for "no command object".
    Null,
    /// `undefined`.
    Undefined,
    /// ECMA (associative) array, e.g. the `onMetaData` body; the wire count is ignored.
    EcmaArray(Vec<(String, Amf0Value)>),
    /// Strict (dense) array, e.g. `fourCcList` in an Enhanced RTMP connect.
    StrictArray(Vec<Amf0Value>),
    /// Date: milliseconds since the Unix epoch, plus the reserved time-zone field (should be 0;
    /// kept so a relayed value is bit-identical).
    Date {
        /// Milliseconds since 1970-01-01T00:00:00Z (UTC).
        millis: f64,
        /// Reserved; the spec says senders write 0 and receivers ignore it.
        timezone: i16,
    },
    /// A string that arrived with the long-string marker (u32 length). Kept apart from
    /// [`Amf0Value::String`] so re-encoding reproduces the peer's bytes.
    LongString(String),
    /// XML document (long-string framing).
    Xml(String),
    /// Instance of a named ActionScript class: class name plus ordered properties.
    TypedObject {
        /// The registered class alias.
        class: String,
        /// Ordered properties, as for [`Amf0Value::Object`].
        properties: Vec<(String, Amf0Value)>,
    },
    /// The "unsupported" marker (0x0D): a value the sender could not serialise.
    Unsupported,
    /// A value that followed the AVM+ marker (0x11) and is therefore AMF3-encoded. Use
    /// [`Amf0Value::flatten_amf3`] (or [`super::decode_amf3_message`]) to read it as AMF0.
    Amf3(Amf3Value),
}

impl Amf0Value {
    /// Builds an anonymous object from (name, value) pairs, in order, e.g.
    /// `Amf0Value::object([("level", "status".into()), ("code", "NetStream.Publish.Start".into())])`.
    /// Exists so session code can write replies as compactly as it reads requests.
    pub fn object<K: Into<String>>(properties: impl IntoIterator<Item = (K, Amf0Value)>) -> Self {
        Amf0Value::Object(collect_properties(properties))
    }

    /// Builds an ECMA array from (name, value) pairs, in order; the form `onMetaData` uses and
    /// the one ffmpeg expects when it looks for `videocodecid`/`audiocodecid`.
    pub fn ecma_array<K: Into<String>>(
        properties: impl IntoIterator<Item = (K, Amf0Value)>,
    ) -> Self {
        Amf0Value::EcmaArray(collect_properties(properties))
    }

    /// The text of a string value (short, long, or AMF3), so callers need not care which
    /// framing the peer picked for e.g. a command name or stream key.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            Amf0Value::Amf3(Amf3Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The numeric value of a number (or AMF3 integer/double), e.g. a transaction id.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            Amf0Value::Amf3(Amf3Value::Double(n)) => Some(*n),
            Amf0Value::Amf3(Amf3Value::Integer(i)) => Some(f64::from(*i)),
            _ => None,
        }
    }

    /// The value of a boolean (AMF0 or AMF3). Numbers are not coerced: a peer that sends a
    /// number where a boolean belongs gets `None`, and the caller picks the default.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) | Amf0Value::Amf3(Amf3Value::Boolean(b)) => Some(*b),
            _ => None,
        }
    }

    /// The ordered properties of an object, ECMA array or typed object; `None` for anything
    /// else. Lets callers iterate metadata without matching three variants.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => Some(p),
            Amf0Value::TypedObject { properties, .. } => Some(properties),
            _ => None,
        }
    }

    /// The value of property `key` of an object, ECMA array or typed object. With duplicate
    /// names the last one wins, as when ActionScript assigns the properties in order.
    /// (AMF3 objects are not searched: convert them with [`Amf0Value::flatten_amf3`].)
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }
}

fn collect_properties<K: Into<String>>(
    properties: impl IntoIterator<Item = (K, Amf0Value)>,
) -> Vec<(String, Amf0Value)> {
    properties
        .into_iter()
        .map(|(name, value)| (name.into(), value))
        .collect()
}

impl From<&str> for Amf0Value {
    fn from(s: &str) -> Self {
        Amf0Value::String(s.to_owned())
    }
}

impl From<String> for Amf0Value {
    fn from(s: String) -> Self {
        Amf0Value::String(s)
    }
}

impl From<f64> for Amf0Value {
    fn from(n: f64) -> Self {
        Amf0Value::Number(n)
    }
}

impl From<bool> for Amf0Value {
    fn from(b: bool) -> Self {
        Amf0Value::Boolean(b)
    }
}

impl From<Amf3Value> for Amf0Value {
    fn from(value: Amf3Value) -> Self {
        Amf0Value::Amf3(value)
    }
}
