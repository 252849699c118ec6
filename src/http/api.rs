//! Handlers of the JSON API, errors and authentication.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::HttpState;
use super::model::{DestinationJson, StreamJson, StreamList};
use crate::relay::{ControlError, StreamRelay};
use crate::reload::{ReloadError, ReloadReport};
use crate::users::DestinationRequest;

/// The OpenAPI description of this API, kept in the repository beside the code.
pub const OPENAPI: &str = include_str!("openapi.json");

/// An error answer: a status code and `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<ControlError> for ApiError {
    fn from(err: ControlError) -> Self {
        let status = match err {
            ControlError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
        };
        Self::new(status, err.to_string())
    }
}

/// Checks the bearer token. Control always needs it (and is disabled without a
/// configured token); reads need it when `protect_reads` is on.
fn authorize(state: &HttpState, headers: &HeaderMap, control: bool) -> Result<(), ApiError> {
    let Some(token) = &state.token else {
        if control {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "control endpoints are disabled: set [http] token in the config \
                 (or PRISM_HTTP__TOKEN) to enable them",
            ));
        }
        return Ok(());
    };
    if !control && !state.protect_reads {
        return Ok(());
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        // Constant time, so response timing does not reveal how much was right.
        Some(given) if bool::from(given.as_bytes().ct_eq(token.as_bytes())) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong token")),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing token: send Authorization: Bearer <token>",
        )),
    }
}

/// Checks the token for a read endpoint (only when `protect_reads` is on).
pub fn authorize_read(state: &HttpState, headers: &HeaderMap) -> Result<(), ApiError> {
    authorize(state, headers, false)
}

/// Builds the JSON of every live stream.
pub fn stream_list(state: &HttpState) -> StreamList {
    let mut streams: Vec<StreamJson> = state
        .relay
        .streams()
        .into_iter()
        .filter_map(|relay| stream_json(state, &relay))
        .collect();
    streams.sort_by(|a, b| (&a.app, &a.name).cmp(&(&b.app, &b.name)));
    StreamList { streams }
}

/// A stream with its publisher, or one in its publisher's grace period
/// (`reconnecting`); `None` once it ended.
fn stream_json(state: &HttpState, relay: &StreamRelay) -> Option<StreamJson> {
    let stream = state.hub.stream(relay.app(), relay.key())?;
    if let Some(info) = stream.snapshot() {
        let warnings = state
            .relay
            .warnings(relay, info.video.as_ref(), info.audio.as_ref());
        return Some(StreamJson::new(info, relay, warnings));
    }
    let since = stream.reconnecting_since()?;
    Some(StreamJson::reconnecting(relay, since, stream.players()))
}

fn find(state: &HttpState, app: &str, name: &str) -> Result<Arc<StreamRelay>, ApiError> {
    state.relay.find(app, name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no live stream {app}/{name}"),
        )
    })
}

/// `GET /`.
pub async fn dashboard() -> Html<&'static str> {
    Html(super::DASHBOARD)
}

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// `GET /api/v1/streams`.
pub async fn list_streams(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
) -> Result<Json<StreamList>, ApiError> {
    authorize(&state, &headers, false)?;
    Ok(Json(stream_list(&state)))
}

/// `GET /api/v1/streams/{app}/{name}`.
pub async fn get_stream(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path((app, name)): Path<(String, String)>,
) -> Result<Json<StreamJson>, ApiError> {
    authorize(&state, &headers, false)?;
    let relay = find(&state, &app, &name)?;
    stream_json(&state, &relay).map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no live stream {app}/{name}"),
        )
    })
}

/// `POST /api/v1/streams/{app}/{name}/destinations`.
pub async fn add_destination(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path((app, name)): Path<(String, String)>,
    body: Result<Json<DestinationRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<DestinationJson>), ApiError> {
    authorize(&state, &headers, true)?;
    let Json(request) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad request body: {}", e.body_text()),
        )
    })?;
    let relay = find(&state, &app, &name)?;
    let added = state.relay.add_destination(&relay, request)?;
    Ok((StatusCode::CREATED, Json(added.into())))
}

/// `DELETE /api/v1/streams/{app}/{name}/destinations/{id}`.
pub async fn remove_destination(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path((app, name, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers, true)?;
    let relay = find(&state, &app, &name)?;
    state.relay.remove_destination(&relay, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/streams/{app}/{name}/destinations/{id}/restart`.
pub async fn restart_destination(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path((app, name, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers, true)?;
    let relay = find(&state, &app, &name)?;
    state.relay.restart_destination(&relay, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/streams/{app}/{name}`: disconnects the publisher.
pub async fn kick_publisher(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path((app, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    authorize(&state, &headers, true)?;
    let relay = find(&state, &app, &name)?;
    state.relay.kick(&relay);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/reload`: reads the configuration again (file, environment and
/// flags `prism serve` started with) and applies presets, user files, profiles
/// and the authorization callback to new streams. A broken file answers 422
/// naming it; the running configuration stays.
pub async fn reload(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
) -> Result<Json<ReloadReport>, ApiError> {
    authorize(&state, &headers, true)?;
    tracing::info!("reload requested through the API");
    match state.reloader.reload_off_runtime().await {
        Ok(report) => Ok(Json(report)),
        Err(err) => {
            tracing::error!("reload refused, the previous configuration stays: {err}");
            let status = match err {
                ReloadError::Config(_) | ReloadError::Relay(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ReloadError::Task(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Err(ApiError::new(
                status,
                format!("reload refused, the previous configuration stays: {err}"),
            ))
        }
    }
}

/// Anything else.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /api/v1/openapi.json",
    )
}
