//! AMF3 values as AMF0: what lets session code read the commands of AMF3 clients with the same
//! [`Amf0Value`] helpers as everyone else's.
//!
//! It lives on the AMF0 side because AMF0 is the one that embeds AMF3 (the AVM+ marker); the
//! AMF3 module knows nothing of AMF0.

use super::super::amf3::Amf3Value;
use super::Amf0Value;

impl Amf0Value {
    /// The AMF0 equivalent of an AMF3 value.
    ///
    /// Integer and Double become Number; String stays String; XmlDoc and Xml become Xml; Date
    /// gets time zone 0; an Array with no named entries becomes a StrictArray, otherwise an
    /// EcmaArray with the dense entries first under the names "0", "1", ... (ECMAScript's
    /// property order) followed by the named ones; an Object becomes an Object (anonymous) or
    /// a TypedObject, sealed members first. A ByteArray has no AMF0 form and stays wrapped in
    /// [`Amf0Value::Amf3`].
    pub fn from_amf3(value: Amf3Value) -> Self {
        match value {
            Amf3Value::Undefined => Amf0Value::Undefined,
            Amf3Value::Null => Amf0Value::Null,
            Amf3Value::Boolean(b) => Amf0Value::Boolean(b),
            Amf3Value::Integer(i) => Amf0Value::Number(f64::from(i)),
            Amf3Value::Double(n) => Amf0Value::Number(n),
            Amf3Value::String(s) => Amf0Value::String(s),
            Amf3Value::XmlDoc(s) | Amf3Value::Xml(s) => Amf0Value::Xml(s),
            Amf3Value::Date(millis) => Amf0Value::Date {
                millis,
                timezone: 0,
            },
            Amf3Value::Array { assoc, dense } if assoc.is_empty() => {
                Amf0Value::StrictArray(dense.into_iter().map(Amf0Value::from_amf3).collect())
            }
            Amf3Value::Array { assoc, dense } => {
                let indexed = dense
                    .into_iter()
                    .enumerate()
                    .map(|(index, value)| (index.to_string(), value));
                Amf0Value::EcmaArray(members_from_amf3(indexed.chain(assoc)))
            }
            Amf3Value::Object {
                class,
                sealed,
                dynamic,
            } => {
                let properties = members_from_amf3(sealed.into_iter().chain(dynamic));
                match class {
                    Some(class) => Amf0Value::TypedObject { class, properties },
                    None => Amf0Value::Object(properties),
                }
            }
            bytes @ Amf3Value::ByteArray(_) => Amf0Value::Amf3(bytes),
        }
    }

    /// Replaces every embedded AMF3 value, at any depth, by its AMF0 equivalent
    /// ([`Amf0Value::from_amf3`]), so session code reads commands from AMF3 clients exactly like
    /// those from AMF0 clients. Only an AMF3 ByteArray, which has no AMF0 form, stays wrapped.
    pub fn flatten_amf3(self) -> Amf0Value {
        match self {
            Amf0Value::Amf3(value) => Amf0Value::from_amf3(value),
            Amf0Value::Object(p) => Amf0Value::Object(flatten_properties(p)),
            Amf0Value::EcmaArray(p) => Amf0Value::EcmaArray(flatten_properties(p)),
            Amf0Value::StrictArray(items) => {
                Amf0Value::StrictArray(items.into_iter().map(Amf0Value::flatten_amf3).collect())
            }
            Amf0Value::TypedObject { class, properties } => Amf0Value::TypedObject {
                class,
                properties: flatten_properties(properties),
            },
            other => other,
        }
    }
}

fn members_from_amf3(
    members: impl Iterator<Item = (String, Amf3Value)>,
) -> Vec<(String, Amf0Value)> {
    members
        .map(|(name, value)| (name, Amf0Value::from_amf3(value)))
        .collect()
}

fn flatten_properties(properties: Vec<(String, Amf0Value)>) -> Vec<(String, Amf0Value)> {
    properties
        .into_iter()
        .map(|(name, value)| (name, value.flatten_amf3()))
        .collect()
}
