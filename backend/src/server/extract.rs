//! Request extractors that turn every malformed input into a 400 `PARAM_001` with a message
//! (axum's own rejections answer plain text with assorted statuses).

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Largest request body: 8 MiB (an event batch of 50 large output items fits many times).
pub const MAX_BODY: usize = 8 << 20;
/// Longest id (path segment or body field).
pub const MAX_ID: usize = 256;

/// A JSON body of at most [`MAX_BODY`] bytes, decoded with the model's `deny_unknown_fields`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|e| {
                if std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                    || e.to_string().contains("length limit")
                {
                    ApiError::BadRequest(format!("request body larger than {MAX_BODY} bytes"))
                } else {
                    ApiError::BadRequest(format!("could not read the request body: {e}"))
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

/// Query parameters; unknown or malformed ones are a 400.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Params(v))
            .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))
    }
}

/// The `{id}` path segment, at most [`MAX_ID`] bytes.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("invalid id: {}", e.body_text())))?;
        check_id("id", &id)?;
        Ok(Id(id))
    }
}

/// An id is 1 to [`MAX_ID`] bytes without control characters.
pub fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "{field} must be 1 to {MAX_ID} bytes without control characters"
        )));
    }
    Ok(())
}
