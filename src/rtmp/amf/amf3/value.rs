//! [`Amf3Value`]: one decoded AMF3 value.

/// One AMF3 value. Members keep wire order in vectors (not maps), as in AMF0, so a value can
/// be relayed unchanged. References never appear: the decoder resolves them.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf3Value {
    /// `undefined`.
    Undefined,
    /// `null`.
    Null,
    /// `true` / `false` (two distinct markers on the wire).
    Boolean(bool),
    /// 29-bit signed integer. Encoding an i32 outside -2^28..2^28 writes a double instead.
    Integer(i32),
    /// IEEE-754 double.
    Double(f64),
    /// UTF-8 string (decoded lossily, as in AMF0).
    String(String),
    /// Legacy `flash.xml.XMLDocument` text.
    XmlDoc(String),
    /// Date: milliseconds since the Unix epoch, UTC (AMF3 has no time-zone field).
    Date(f64),
    /// ActionScript Array: an associative part (name, value) and a dense part (index 0..n).
    Array {
        /// Named entries, in wire order. Empty names cannot be encoded (an empty name ends the
        /// list) and are skipped by [`super::encode`].
        assoc: Vec<(String, Amf3Value)>,
        /// Dense entries, index 0 first.
        dense: Vec<Amf3Value>,
    },
    /// Object: optional class name (None = anonymous), sealed members declared by its traits,
    /// then dynamic members.
    Object {
        /// Registered class alias; `None` for anonymous objects (empty name on the wire).
        class: Option<String>,
        /// Members named in the traits, in traits order.
        sealed: Vec<(String, Amf3Value)>,
        /// Dynamic members, in wire order (empty names are skipped by [`super::encode`]).
        dynamic: Vec<(String, Amf3Value)>,
    },
    /// E4X `XML` text.
    Xml(String),
    /// `flash.utils.ByteArray` contents.
    ByteArray(Vec<u8>),
}

impl Amf3Value {
    /// An anonymous object with only dynamic members, the shape AMF3 clients send and expect
    /// for command objects and status replies.
    pub fn anonymous_object<K: Into<String>>(
        members: impl IntoIterator<Item = (K, Amf3Value)>,
    ) -> Self {
        Amf3Value::Object {
            class: None,
            sealed: Vec::new(),
            dynamic: members
                .into_iter()
                .map(|(name, value)| (name.into(), value))
                .collect(),
        }
    }
}
