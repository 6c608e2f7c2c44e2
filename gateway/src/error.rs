//! Errors the gateway answers itself, mapped in one place to a status code, a platform error
//! code and a JSON body: `{"error": {"code": "...", "message": "...", "request_id": "..."}}`.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use orchestra_plugins::Reject;

/// Why the gateway answered a request itself.
#[derive(Debug, Clone)]
pub enum GatewayError {
    /// No route matched.
    NoRoute,
    /// The upstream could not be reached (connect refused or timed out, TLS failure, reset).
    UpstreamUnavailable {
        /// Upstream name.
        upstream: String,
        /// What failed.
        reason: String,
    },
    /// The upstream did not answer within its read timeout.
    UpstreamTimeout {
        /// Upstream name.
        upstream: String,
    },
    /// The upstream has no target that can take the request.
    NoTarget {
        /// Upstream name.
        upstream: String,
    },
    /// The upstream's circuit breaker refused the request.
    Overloaded {
        /// Upstream name.
        upstream: String,
        /// Open breaker or in-flight cap.
        reason: String,
        /// When a probe may go through again.
        retry_after: Option<std::time::Duration>,
    },
    /// The request is malformed.
    BadRequest(String),
    /// A plugin rejected the request.
    Rejected(Reject),
    /// A service the route names (`serve = "..."`) is not running in this process.
    ServiceUnavailable(&'static str),
    /// A bug or an unexpected condition inside the gateway.
    Internal(String),
}

impl GatewayError {
    /// HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::UpstreamUnavailable { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::NoTarget { .. }
            | GatewayError::Overloaded { .. }
            | GatewayError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::Rejected(r) => r.status,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Platform error code (SPEC.md).
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "NO_ROUTE",
            GatewayError::UpstreamUnavailable { .. }
            | GatewayError::NoTarget { .. }
            | GatewayError::Overloaded { .. } => "UPSTREAM_UNAVAILABLE",
            GatewayError::UpstreamTimeout { .. } => "UPSTREAM_TIMEOUT",
            GatewayError::BadRequest(_) => "PARAM_001",
            GatewayError::Rejected(r) => r.code,
            GatewayError::Internal(_) | GatewayError::ServiceUnavailable(_) => "SYS_001",
        }
    }

    /// Human-readable message for the body and the log.
    pub fn message(&self) -> String {
        match self {
            GatewayError::NoRoute => "no route matches this request".into(),
            GatewayError::UpstreamUnavailable { upstream, reason } => {
                format!("upstream {upstream:?} is unavailable: {reason}")
            }
            GatewayError::UpstreamTimeout { upstream } => {
                format!("upstream {upstream:?} did not answer in time")
            }
            GatewayError::NoTarget { upstream } => {
                format!("upstream {upstream:?} has no available target")
            }
            GatewayError::Overloaded {
                upstream, reason, ..
            } => {
                format!("upstream {upstream:?} refused by its circuit breaker: {reason}")
            }
            GatewayError::BadRequest(m) => m.clone(),
            GatewayError::Rejected(r) => r.message.clone(),
            GatewayError::ServiceUnavailable(s) => format!("the {s} service is not running"),
            GatewayError::Internal(m) => format!("internal error: {m}"),
        }
    }

    /// Extra headers the answer carries (e.g. `Retry-After` from a rate limiter or an open
    /// circuit breaker).
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        match self {
            GatewayError::Rejected(r) => r.headers.clone(),
            GatewayError::Overloaded {
                retry_after: Some(d),
                ..
            } => {
                let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                vec![(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)))]
            }
            _ => Vec::new(),
        }
    }

    /// The JSON body for this error.
    pub fn body(&self, request_id: &str) -> Bytes {
        let v = serde_json::json!({
            "error": {
                "code": self.code(),
                "message": self.message(),
                "request_id": request_id,
            }
        });
        Bytes::from(v.to_string())
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for GatewayError {}
