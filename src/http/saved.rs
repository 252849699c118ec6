//! The saved-destinations API: a user's destinations as their file keeps them,
//! listed, added, changed, switched on and off, and removed, by the admin or by
//! that user's own token.
//!
//! Each answer carries the file's version (in the body and as an `ETag`); an edit
//! that sends it back as `If-Match` lands only if nothing changed the file since,
//! and is refused with 409 otherwise. `?apply_live=true` applies the change to the
//! user's live streams too; without it, it waits for their next publish.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::HttpState;
use super::access::{Access, authorize_control};
use super::api::{ApiError, body_error};
use crate::relay::saved::SavedError;
use crate::users::DestinationRequest;
use crate::users::saved::{DestinationPatch, Edit, EditError};

impl From<SavedError> for ApiError {
    fn from(err: SavedError) -> Self {
        let status = match &err {
            SavedError::NoUser(_) | SavedError::Edit(EditError::NotFound(_)) => {
                StatusCode::NOT_FOUND
            }
            SavedError::Stale { .. }
            | SavedError::Edit(EditError::IdTaken(_) | EditError::Duplicate(_)) => {
                StatusCode::CONFLICT
            }
            SavedError::Edit(_) | SavedError::Users(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SavedError::Io { .. } | SavedError::Task(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("saved destinations: {err}");
        }
        Self::new(status, err.to_string())
    }
}

/// `GET /api/v1/users`'s answer: who the token is, and the users it manages.
#[derive(Debug, Serialize)]
pub struct UsersJson {
    /// `admin` or `user`.
    pub access: &'static str,
    /// The users whose destinations this token manages.
    pub users: Vec<String>,
}

/// `GET /api/v1/users`: the admin's token sees every user, a user's token only
/// its own (how the dashboard learns whose token it was given).
pub async fn list_users(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
) -> Result<Json<UsersJson>, ApiError> {
    let json = match authorize_control(&state, &headers)? {
        Access::User(name) => UsersJson {
            access: "user",
            users: vec![name],
        },
        _ => UsersJson {
            access: "admin",
            users: state.relay.user_names(),
        },
    };
    Ok(Json(json))
}

/// `?apply_live=true`: apply the change to the user's live streams too.
#[derive(Debug, Default, Deserialize)]
pub struct ApplyQuery {
    #[serde(default)]
    apply_live: bool,
}

/// The user named in the path, when this token manages them; anyone else's (or
/// an unknown name) is the same 404, so a user's token cannot list user names.
fn managed(state: &HttpState, headers: &HeaderMap, user: &str) -> Result<(), ApiError> {
    if authorize_control(state, headers)?.manages(user) {
        Ok(())
    } else {
        Err(SavedError::NoUser(user.to_owned()).into())
    }
}

/// The version an edit is based on: `If-Match: "v"` (or `W/"v"`); `*` or no
/// header means any.
fn expected_version(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::IF_MATCH)?.to_str().ok()?.trim();
    let value = value.strip_prefix("W/").unwrap_or(value).trim_matches('"');
    (value != "*").then(|| value.to_owned())
}

/// A JSON answer with the file's version as its `ETag`.
fn versioned<T: Serialize>(status: StatusCode, version: &str, body: T) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// `GET /api/v1/users/{user}/destinations`.
pub async fn list(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    managed(&state, &headers, &user)?;
    let list = state.relay.saved_destinations(&user).await?;
    Ok(versioned(StatusCode::OK, &list.version.clone(), list))
}

/// `POST /api/v1/users/{user}/destinations`: the add-destination body
/// (`preset` + `key`, or `url`; `profile`, `enabled`, and an `id` if the caller
/// wants a particular one).
pub async fn add(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    Query(query): Query<ApplyQuery>,
    body: Result<Json<DestinationRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    managed(&state, &headers, &user)?;
    let Json(request) = body.map_err(body_error)?;
    edit(
        &state,
        &headers,
        &user,
        Edit::Add(request),
        query,
        StatusCode::CREATED,
    )
    .await
}

/// `PATCH /api/v1/users/{user}/destinations/{id}`: the fields given change.
pub async fn update(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path((user, id)): Path<(String, String)>,
    Query(query): Query<ApplyQuery>,
    body: Result<Json<DestinationPatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    managed(&state, &headers, &user)?;
    let Json(patch) = body.map_err(body_error)?;
    let change = Edit::Update { id, patch };
    edit(&state, &headers, &user, change, query, StatusCode::OK).await
}

/// `DELETE /api/v1/users/{user}/destinations/{id}`.
pub async fn remove(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Path((user, id)): Path<(String, String)>,
    Query(query): Query<ApplyQuery>,
) -> Result<Response, ApiError> {
    managed(&state, &headers, &user)?;
    edit(
        &state,
        &headers,
        &user,
        Edit::Remove { id },
        query,
        StatusCode::OK,
    )
    .await
}

async fn edit(
    state: &HttpState,
    headers: &HeaderMap,
    user: &str,
    change: Edit,
    query: ApplyQuery,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let done = state
        .relay
        .edit_saved(user, change, expected_version(headers), query.apply_live)
        .await?;
    Ok(versioned(status, &done.version.clone(), done))
}
