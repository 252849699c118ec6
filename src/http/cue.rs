//! `POST /api/v1/streams/{id}/cue`: inserts a cue point (`onCuePoint`) into a
//! live stream, for the admin or the stream's user.
//!
//! The body is `{"name": "ad-break", "duration": 30}`: `name` names the cue,
//! `type` is `event` (the default) or `navigation`, `parameters` is an object of
//! numbers, strings and booleans, and any other top-level number, string or
//! boolean is a parameter too (so the common `duration` needs no nesting).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::HttpState;
use super::access::authorize;
use super::api::{ApiError, StreamPath, body_error};
use crate::rtmp::cue::{CueKind, CuePoint, CueValue};

/// What a cue request answers: where the cue went on the stream's timeline.
#[derive(Debug, serde::Serialize)]
pub struct CueJson {
    /// The stream's id.
    pub stream_id: String,
    /// The cue's name.
    pub name: String,
    /// Its timestamp on the stream's timeline, in ms (the `time` it carries is
    /// this in seconds).
    pub timestamp_ms: u32,
}

/// `POST /api/v1/streams/{id}/cue` (or `{app}/{name}`): 201 with [`CueJson`];
/// 422 for a malformed cue, 409 while the stream has no media on air, 429 (with
/// `Retry-After`) past the stream's cue budget.
pub async fn insert_cue(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    path: StreamPath,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<(StatusCode, Json<CueJson>), ApiError> {
    let access = authorize(&state, &headers, true)?;
    let Json(body) = body.map_err(body_error)?;
    let cue = cue_of(body).map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let relay = path.find(&state, &access)?;
    let timestamp_ms = state.relay.cue(&relay, &cue)?;
    Ok((
        StatusCode::CREATED,
        Json(CueJson {
            stream_id: relay.id().as_str().to_owned(),
            name: cue.name().to_owned(),
            timestamp_ms,
        }),
    ))
}

/// The cue a request body describes.
fn cue_of(mut body: Map<String, Value>) -> Result<CuePoint, String> {
    let name = match body.remove("name") {
        Some(Value::String(name)) => name,
        _ => return Err("a cue needs a \"name\" (a string)".to_owned()),
    };
    let kind = match body.remove("type") {
        None => CueKind::Event,
        Some(Value::String(text)) => CueKind::parse(&text)
            .ok_or_else(|| format!("\"type\" is \"event\" or \"navigation\", not {text:?}"))?,
        Some(_) => return Err("\"type\" is \"event\" or \"navigation\"".to_owned()),
    };
    let mut parameters = Vec::new();
    match body.remove("parameters") {
        None => {}
        Some(Value::Object(nested)) => {
            for (key, value) in nested {
                parameters.push(parameter(key, value)?);
            }
        }
        Some(_) => return Err("\"parameters\" is an object".to_owned()),
    }
    for (key, value) in body {
        parameters.push(parameter(key, value)?);
    }
    CuePoint::new(&name, kind, parameters).map_err(|e| e.to_string())
}

fn parameter(key: String, value: Value) -> Result<(String, CueValue), String> {
    let value = match value {
        Value::Bool(b) => CueValue::Bool(b),
        Value::Number(n) => CueValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(text) => CueValue::Text(text),
        _ => {
            let mut shown = key;
            shown.truncate(shown.floor_char_boundary(64));
            return Err(format!(
                "parameter {shown:?}: a cue's parameters are numbers, strings or booleans"
            ));
        }
    };
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn top_level_scalars_and_nested_parameters_are_both_parameters() {
        let cue = cue_of(body(
            r#"{"name": "ad-break", "duration": 30, "parameters": {"id": "a1"}}"#,
        ))
        .unwrap();
        assert_eq!(cue.name(), "ad-break");
        assert_eq!(cue.kind(), CueKind::Event);
        assert_eq!(cue.number("duration"), Some(30.0));
        assert!(
            cue.parameters()
                .contains(&("id".to_owned(), CueValue::Text("a1".into())))
        );
    }

    #[test]
    fn malformed_cues_are_refused_with_a_reason() {
        for (json, says) in [
            (r#"{"duration": 30}"#, "name"),
            (r#"{"name": 7}"#, "name"),
            (r#"{"name": "x", "type": "ad"}"#, "type"),
            (r#"{"name": "x", "parameters": [1]}"#, "parameters"),
            (r#"{"name": "x", "nested": {"a": 1}}"#, "nested"),
            (r#"{"name": ""}"#, "name"),
        ] {
            let err = cue_of(body(json)).unwrap_err();
            assert!(err.contains(says), "{json}: {err}");
        }
    }
}
