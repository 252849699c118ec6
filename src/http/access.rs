//! Who an API request is from: the bearer token read and checked (in constant
//! time) against the admin's and the users' tokens, and what that caller may
//! see and change.

use axum::http::{HeaderMap, StatusCode, header};
use subtle::ConstantTimeEq;

use super::HttpState;
use super::error::ApiError;
use crate::relay::StreamRelay;

/// Who a request is from, as its bearer token says: what it may see and change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No token (or one that is nobody's) on an open read: every stream.
    Open,
    /// The admin token (`[http] token`): everything.
    Admin,
    /// A user's `api_token`: that user's streams and saved destinations only.
    User(String),
}

impl Access {
    /// Whether this caller may see (and, with a token, control) `stream`.
    pub fn sees(&self, stream: &StreamRelay) -> bool {
        match self {
            Self::Open | Self::Admin => true,
            Self::User(name) => stream.user() == Some(name.as_str()),
        }
    }

    /// Whether this caller may manage `user`'s saved destinations.
    pub fn manages(&self, user: &str) -> bool {
        match self {
            Self::Admin => true,
            Self::User(name) => name == user,
            Self::Open => false,
        }
    }

    /// Refuses anyone but the admin: configuration-wide operations.
    pub(super) fn admin_only(&self, what: &str) -> Result<(), ApiError> {
        match self {
            Self::Admin => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{what} needs the admin token ([http] token), not a user's"),
            )),
        }
    }
}

/// Checks the bearer token and says whose it is. Control always needs a token
/// (the admin's, or a user's for that user's things; disabled when neither is
/// configured); reads need one when `protect_reads` is on.
pub(super) fn authorize(
    state: &HttpState,
    headers: &HeaderMap,
    control: bool,
) -> Result<Access, ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credentials);
    // `protect_reads` takes effect with an admin token (prism refuses it without).
    let reads_protected = state.protect_reads && state.token.is_some();
    let reads_open = !(control || reads_protected);
    let disabled = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "control endpoints are disabled: set [http] token in the config \
             (or PRISM_HTTP__TOKEN) to enable them, or give a user an api_token",
        )
    };
    let Some(given) = given else {
        if reads_open {
            return Ok(Access::Open);
        }
        if state.token.is_none() {
            return Err(disabled());
        }
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing token: send Authorization: Bearer <token>",
        ));
    };
    if let Some(access) = identify(state, given) {
        return Ok(access);
    }
    if reads_open {
        // An open read is open whatever token comes with it.
        return Ok(Access::Open);
    }
    if state.token.is_none() {
        return Err(disabled());
    }
    Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong token"))
}

/// Whose bearer token `given` is: the admin's or a user's, else nobody's.
fn identify(state: &HttpState, given: &str) -> Option<Access> {
    // Constant time, so response timing does not reveal how much was right.
    if let Some(token) = &state.token
        && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
    {
        return Some(Access::Admin);
    }
    state.relay.user_by_token(given).map(Access::User)
}

/// Whose `Authorization: Bearer` token a request carries, if it is anyone's
/// (for endpoints with their own access rules, such as HLS).
pub(super) fn bearer_access(state: &HttpState, headers: &HeaderMap) -> Option<Access> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credentials)?;
    identify(state, given)
}

/// The credentials of an `Authorization: Bearer <token>` header. The scheme is
/// case-insensitive (RFC 9110, section 11.1: `bearer` and `BEARER` are the same
/// scheme); surrounding whitespace is not part of the token.
pub(super) fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("Bearer").then(|| rest.trim())
}

/// Checks the token for a read of everything (metrics): open unless
/// `protect_reads` is on, then the admin's only.
pub fn authorize_read(state: &HttpState, headers: &HeaderMap) -> Result<(), ApiError> {
    let access = authorize(state, headers, false)?;
    if state.protect_reads && access != Access::Open {
        access.admin_only("reading every stream's metrics")?;
    }
    Ok(())
}

/// Checks the token of a control request.
pub(super) fn authorize_control(
    state: &HttpState,
    headers: &HeaderMap,
) -> Result<Access, ApiError> {
    authorize(state, headers, true)
}

#[cfg(test)]
mod tests {
    use super::bearer_credentials;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in [
            "Bearer tok",
            "bearer tok",
            "BEARER tok",
            "bEaReR tok",
            "Bearer   tok ",
        ] {
            assert_eq!(bearer_credentials(header), Some("tok"), "{header}");
        }
        for header in ["Basic tok", "Bearertok", "Bearer", "tok", "Bearer-x tok"] {
            assert_eq!(bearer_credentials(header), None, "{header}");
        }
    }
}
