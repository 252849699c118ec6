//! The API's error answers: a status code and `{"error": "..."}`, with the
//! headers some of them need (`WWW-Authenticate` on a 401, `Retry-After` on a
//! 429), and how the relay's control errors map onto them.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::relay::ControlError;

/// An error answer: a status code and `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// `Retry-After` (seconds), for a 429.
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A 429 telling the client when to try again.
    pub fn too_many(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: message.into(),
            retry_after: Some(retry_after_secs),
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
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<ControlError> for ApiError {
    fn from(err: ControlError) -> Self {
        let status = match err {
            ControlError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) | ControlError::Ambiguous(_) => StatusCode::CONFLICT,
            ControlError::TooSoon { .. } => StatusCode::TOO_MANY_REQUESTS,
        };
        let retry_after = match err {
            ControlError::TooSoon {
                retry_after_secs, ..
            } => Some(retry_after_secs),
            _ => None,
        };
        Self {
            retry_after,
            ..Self::new(status, err.to_string())
        }
    }
}
