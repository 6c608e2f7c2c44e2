//! The service's errors as HTTP answers: `{"error": {"code", "message"}}` (SPEC "Data plane"
//! error shape) with the status that tells the caller what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::model::{ErrorBody, ErrorDetail};
use crate::store::StoreError;

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad JSON, unknown fields, oversized body, bad query or path: 400 `PARAM_001`.
    #[error("{0}")]
    BadRequest(String),
    /// An unknown id or path: 404 `NOT_FOUND`.
    #[error("{0}")]
    NotFound(String),
    /// Illegal task transition or stale version: 409 `PARAM_001`.
    #[error("{0}")]
    Conflict(String),
    /// The method is not served on this path: 405 `PARAM_001`.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The database cannot take the call now (no connection, locked past the busy timeout):
    /// 503 `SYS_001` (the caller retries).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: 500 `SYS_001`.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "PARAM_001"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "PARAM_001"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "PARAM_001"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "SYS_001"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "SYS_001"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match &e {
            StoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            StoreError::IllegalTransition { .. } | StoreError::StaleVersion { .. } => {
                ApiError::Conflict(e.to_string())
            }
            StoreError::Invalid(_) => ApiError::BadRequest(e.to_string()),
            _ if e.is_transient() => {
                tracing::error!(error = %e, "database unavailable");
                ApiError::Unavailable(e.to_string())
            }
            _ => {
                tracing::error!(error = %e, "store error");
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: self.to_string(),
            },
        };
        (status, Json(body)).into_response()
    }
}
