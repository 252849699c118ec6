//! Handlers of the JSON API (who a request is from is `access`; error answers
//! are `error`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse};

use super::HttpState;
use super::access::{Access, authorize, authorize_read};
pub use super::error::ApiError;
use super::model::{DestinationJson, StreamJson, StreamList};
use crate::relay::StreamRelay;
use crate::reload::{ReloadError, ReloadReport};
use crate::users::DestinationRequest;

/// The OpenAPI description of this API, kept in the repository beside the code.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Builds the JSON of every live stream `access` sees.
pub fn stream_list(state: &HttpState, access: &Access) -> StreamList {
    let mut streams: Vec<StreamJson> = state
        .relay
        .streams()
        .into_iter()
        .filter(|relay| access.sees(relay))
        .filter_map(|relay| stream_json(state, &relay))
        .collect();
    streams.sort_by(|a, b| (&a.app, &a.name, &a.id).cmp(&(&b.app, &b.name, &b.id)));
    StreamList { streams }
}

/// A stream with its publisher, or one in its publisher's grace period
/// (`reconnecting`); `None` once it ended.
fn stream_json(state: &HttpState, relay: &StreamRelay) -> Option<StreamJson> {
    let mut json = local_stream_json(state, relay)?;
    json.node = state.cluster.as_ref().map(|c| c.node().node_id.clone());
    Some(json)
}

fn local_stream_json(state: &HttpState, relay: &StreamRelay) -> Option<StreamJson> {
    let stream = state.hub.stream(relay.app(), relay.key())?;
    if let Some(info) = stream.snapshot() {
        let warnings = state
            .relay
            .warnings(relay, info.video.as_ref(), info.audio.as_ref());
        let mut json = StreamJson::new(info, &stream, relay, warnings);
        json.hls = state
            .hls
            .as_ref()
            .map(|hls| hls.status(&relay.id().to_string()));
        return Some(json);
    }
    let since = stream.reconnecting_since()?;
    // No publisher, so no constraint to check; the publish's problems stay.
    let warnings = state.relay.warnings(relay, None, None);
    Some(StreamJson::reconnecting(&stream, relay, since, warnings))
}

/// Which stream a per-stream endpoint names: `/api/v1/streams/{id}/...`, or
/// `/api/v1/streams/{app}/{name}/...` (by the name status shows, refused when two
/// live streams share it), plus the destination for destination endpoints.
#[derive(Debug)]
pub struct StreamPath {
    stream: StreamRef,
    destination: Option<String>,
}

#[derive(Debug)]
enum StreamRef {
    Id(String),
    Name { app: String, name: String },
}

impl StreamPath {
    /// The stream's relay, or 404 (none, or not one `access` sees: a user's token
    /// does not learn whether another user's stream exists) / 409 (an ambiguous
    /// name).
    pub(super) fn find(
        &self,
        state: &HttpState,
        access: &Access,
    ) -> Result<Arc<StreamRelay>, ApiError> {
        let found = match &self.stream {
            StreamRef::Id(id) => state.relay.find_by_id(id),
            StreamRef::Name { app, name } => match access {
                // A user's streams only, so another user's of the same name
                // neither answers nor makes the name ambiguous.
                Access::User(user) => state.relay.find_of_user(app, name, user),
                _ => state.relay.find(app, name),
            },
        }?;
        if access.sees(&found) {
            Ok(found)
        } else {
            Err(self.not_found())
        }
    }

    fn not_found(&self) -> ApiError {
        let message = match &self.stream {
            StreamRef::Id(id) => format!("no live stream with id {id}"),
            StreamRef::Name { app, name } => format!("no live stream {app}/{name}"),
        };
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    fn destination(&self) -> Result<&str, ApiError> {
        self.destination.as_deref().ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "route without a destination",
            )
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for StreamPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(mut params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
        let stream = match (
            params.remove("id"),
            params.remove("app"),
            params.remove("name"),
        ) {
            (Some(id), None, None) => StreamRef::Id(id),
            (None, Some(app), Some(name)) => StreamRef::Name { app, name },
            _ => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "route names no stream",
                ));
            }
        };
        Ok(Self {
            stream,
            destination: params.remove("destination"),
        })
    }
}

/// `GET /`.
pub async fn dashboard() -> Html<&'static str> {
    Html(super::DASHBOARD)
}

/// `GET /healthz`: 200 `ok`, or 503 `draining` once the node drains, so that a
/// balancer's health check sends it no new connections.
pub async fn healthz(State(state): State<Arc<HttpState>>) -> (StatusCode, &'static str) {
    if state.drain.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ok")
    }
}

/// `POST /api/v1/drain` (admin): begins draining. New publishes are refused,
/// `/healthz` answers 503, live streams go on until they end or `[cluster]
/// drain_timeout_secs` passes, and then prism exits 0. 202 with how long it has
/// drained; asking again changes nothing.
pub async fn drain(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    authorize(&state, &headers, true)?.admin_only("draining the node")?;
    state.drain.begin("requested through the API");
    let elapsed = state.drain.elapsed().unwrap_or_default();
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "draining": true,
            "draining_for_secs": elapsed.as_secs(),
            "live_streams": state.hub.live_count(),
        })),
    ))
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// `GET /api/v1/streams/{id}` and `GET /api/v1/streams/{app}/{name}`.
pub async fn get_stream(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    path: StreamPath,
) -> Result<Json<StreamJson>, ApiError> {
    let access = authorize(&state, &headers, false)?;
    let relay = path.find(&state, &access)?;
    stream_json(&state, &relay)
        .map(Json)
        .ok_or_else(|| path.not_found())
}

/// `GET /api/v1/uploads`: the recordings waiting for their upload (with their
/// attempts and last error) and the counts; 404 when `[record.upload]` is off.
/// Read like `/metrics`: open unless `protect_reads`, then the admin's.
pub async fn uploads(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
) -> Result<Json<crate::record::upload::UploadsSnapshot>, ApiError> {
    authorize_read(&state, &headers)?;
    state.relay.uploads().map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "recordings are not uploaded: set [record.upload] to upload them",
        )
    })
}

/// `POST /api/v1/streams/{id}/destinations` (or `{app}/{name}` in place of `{id}`).
pub async fn add_destination(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    path: StreamPath,
    body: Result<Json<DestinationRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<DestinationJson>), ApiError> {
    let access = authorize(&state, &headers, true)?;
    let Json(request) = body.map_err(body_error)?;
    let relay = path.find(&state, &access)?;
    let added = state.relay.add_destination(&relay, request)?;
    Ok((StatusCode::CREATED, Json(added.into())))
}

/// A request body the handler could not take: 413 over the limit, anything
/// else the client sent is a 400.
pub(super) fn body_error(e: JsonRejection) -> ApiError {
    let status = match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, format!("bad request body: {}", e.body_text()))
}

/// `DELETE /api/v1/streams/{id}/destinations/{destination}` (or `{app}/{name}`).
pub async fn remove_destination(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    path: StreamPath,
) -> Result<StatusCode, ApiError> {
    let access = authorize(&state, &headers, true)?;
    let relay = path.find(&state, &access)?;
    state
        .relay
        .remove_destination(&relay, path.destination()?)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/streams/{id}/destinations/{destination}/restart` (or `{app}/{name}`).
pub async fn restart_destination(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    path: StreamPath,
) -> Result<StatusCode, ApiError> {
    let access = authorize(&state, &headers, true)?;
    let relay = path.find(&state, &access)?;
    state
        .relay
        .restart_destination(&relay, path.destination()?)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/streams/{id}` (or `{app}/{name}`): disconnects exactly that
/// stream's publisher, which is told why (`NetStream.Publish.BadName`). With
/// `?ban_secs=N` its key may not publish again for N seconds, so that an encoder's
/// automatic reconnect does not come straight back.
pub async fn kick_publisher(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(query): Query<KickQuery>,
    path: StreamPath,
) -> Result<StatusCode, ApiError> {
    let access = authorize(&state, &headers, true)?;
    let relay = path.find(&state, &access)?;
    let ban = match query.ban_secs {
        Some(0) | None => None,
        Some(secs) if secs <= MAX_BAN_SECS => Some(std::time::Duration::from_secs(secs)),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("ban_secs is at most {MAX_BAN_SECS} (a week)"),
            ));
        }
    };
    state.relay.kick(&relay, ban);
    Ok(StatusCode::NO_CONTENT)
}

/// The longest ban a kick may set: a week. Longer is removing the user's file.
const MAX_BAN_SECS: u64 = 7 * 24 * 3600;

/// `DELETE /api/v1/streams/{id}`'s query.
#[derive(Debug, serde::Deserialize)]
pub struct KickQuery {
    /// Seconds the kicked key may not publish again.
    ban_secs: Option<u64>,
}

/// `POST /api/v1/reload`: reads the configuration again (file, environment and
/// flags `prism serve` started with) and applies presets, user files, profiles
/// and the authorization callback to new streams. A broken file answers 422
/// naming it; the running configuration stays.
///
/// `?config=PATH` names the file the caller means (`prism reload --config`): a
/// reload that names another file than prism's own is refused with 409, nothing
/// read.
pub async fn reload(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(query): Query<ReloadQuery>,
) -> Result<Json<ReloadReport>, ApiError> {
    authorize(&state, &headers, true)?.admin_only("a reload")?;
    tracing::info!("reload requested through the API");
    match state
        .reloader
        .reload_file_off_runtime(query.config.as_deref())
        .await
    {
        Ok(report) => Ok(Json(report)),
        Err(err) => {
            tracing::error!("reload refused, the previous configuration stays: {err}");
            let status = match err {
                ReloadError::Config(_) | ReloadError::Relay(_) => StatusCode::UNPROCESSABLE_ENTITY,
                ReloadError::OtherFile { .. } => StatusCode::CONFLICT,
                ReloadError::Task(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Err(ApiError::new(
                status,
                format!("reload refused, the previous configuration stays: {err}"),
            ))
        }
    }
}

/// `POST /api/v1/reload`'s query.
#[derive(Debug, serde::Deserialize)]
pub struct ReloadQuery {
    /// The configuration file the caller means; refused unless it is prism's own.
    config: Option<std::path::PathBuf>,
}

/// Anything else.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /api/v1/openapi.json",
    )
}
