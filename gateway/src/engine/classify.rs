//! The one table from a failed attempt's error to what the balancer learns ([`Failure`]) and
//! what the client is told ([`GatewayError`]), for every front.
//!
//! | error (pingora `ErrorType`)                                  | balancer          | client |
//! |--------------------------------------------------------------|-------------------|--------|
//! | `Connect*`, TLS handshake, bad certificate, socket/bind       | `ConnectFailure`  | 502 `UPSTREAM_UNAVAILABLE` |
//! | `ReadTimedout`, `WriteTimedout`                              | `Timeout`         | 504 `UPSTREAM_TIMEOUT` |
//! | anything else on the upstream side (reset, closed, bad head) | `Reset`           | 502 `UPSTREAM_UNAVAILABLE` |
//! | `HTTPStatus(400)` (pingora rejected the request)             | —                 | 400 `PARAM_001` |
//! | downstream side (the client went away)                       | —                 | nothing to answer |
//! | anything else (internal)                                     | —                 | 500 `SYS_001` |
//!
//! The HTTP/3 front and the WebSocket tunnel turn their own I/O errors into pingora errors of
//! the matching type ([`io_error`]), so this table is the only classification in the gateway.

use orchestra_lb::Failure;
use pingora::{Error, ErrorSource, ErrorType};

use crate::error::GatewayError;

/// What one error means for the balancer and for the client.
#[derive(Debug)]
pub struct Classified {
    /// The attempt's outcome for the balancer and the retry policy; `None` when the upstream is
    /// not at fault.
    pub failure: Option<Failure>,
    /// The answer for the client; `None` when there is no one to answer (the client is gone).
    pub error: Option<GatewayError>,
}

/// Classifies an error whose side pingora recorded (`ErrorSource`): the pingora front's
/// `fail_to_proxy` sees errors of every origin.
pub fn classify(e: &Error, upstream: &str) -> Classified {
    match (e.esource(), e.etype()) {
        (_, ErrorType::HTTPStatus(400)) => Classified {
            failure: None,
            error: Some(GatewayError::BadRequest("malformed request".into())),
        },
        (ErrorSource::Upstream, _) => classify_upstream(e, upstream),
        (ErrorSource::Downstream, _) => Classified {
            failure: None,
            error: None,
        },
        _ => Classified {
            failure: None,
            error: Some(GatewayError::Internal(e.etype().as_str().to_string())),
        },
    }
}

/// Classifies an error known to come from the upstream side of an attempt (connect, request
/// write, response head read). A downstream error (the client's body failed) is still not the
/// upstream's fault.
pub fn classify_upstream(e: &Error, upstream: &str) -> Classified {
    if e.esource() == &ErrorSource::Downstream {
        return Classified {
            failure: None,
            error: None,
        };
    }
    let unavailable = || GatewayError::UpstreamUnavailable {
        upstream: upstream.to_string(),
        reason: e.etype().as_str().to_string(),
    };
    let (failure, error) = match e.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => (
            Failure::Timeout,
            GatewayError::UpstreamTimeout {
                upstream: upstream.to_string(),
            },
        ),
        t if is_connect(t) => (Failure::ConnectFailure, unavailable()),
        _ => (Failure::Reset, unavailable()),
    };
    Classified {
        failure: Some(failure),
        error: Some(error),
    }
}

/// Errors that mean the connection never came up: nothing of the request was sent.
fn is_connect(t: &ErrorType) -> bool {
    matches!(
        t,
        ErrorType::ConnectTimedout
            | ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::BindError
            | ErrorType::ConnectProxyFailure
            | ErrorType::TLSHandshakeFailure
            | ErrorType::TLSHandshakeTimedout
            | ErrorType::InvalidCert
            | ErrorType::HandshakeError
            | ErrorType::SocketError
    )
}

/// A pingora error (upstream side) for an I/O error of an attempt, typed for [`classify`]:
/// `connecting` selects the connect family.
pub fn io_error(e: &std::io::Error, connecting: bool, context: &'static str) -> Box<Error> {
    use std::io::ErrorKind;
    let etype = match (connecting, e.kind()) {
        (true, ErrorKind::ConnectionRefused) => ErrorType::ConnectRefused,
        (true, ErrorKind::TimedOut) => ErrorType::ConnectTimedout,
        (true, _) => ErrorType::ConnectError,
        (false, ErrorKind::TimedOut) => ErrorType::ReadTimedout,
        (false, ErrorKind::UnexpectedEof) => ErrorType::ConnectionClosed,
        (false, ErrorKind::ConnectionReset) => ErrorType::ConnectionClosed,
        (false, _) => ErrorType::ReadError,
    };
    let mut err = Error::explain(etype, format!("{context}: {e}"));
    err.as_up();
    err
}

/// A pingora error (upstream side) of type `etype` with an explanation.
pub fn upstream_error(etype: ErrorType, context: impl Into<String>) -> Box<Error> {
    let mut err = Error::explain(etype, context.into());
    err.as_up();
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(t: ErrorType) -> Box<Error> {
        upstream_error(t, "test")
    }

    #[test]
    fn one_table_for_every_front() {
        let c = classify(&up(ErrorType::ConnectRefused), "u");
        assert_eq!(c.failure, Some(Failure::ConnectFailure));
        assert_eq!(c.error.map(|e| e.status().as_u16()), Some(502));
        let c = classify(&up(ErrorType::ConnectTimedout), "u");
        assert_eq!(c.failure, Some(Failure::ConnectFailure));
        assert_eq!(c.error.map(|e| e.code()), Some("UPSTREAM_UNAVAILABLE"));
        let c = classify(&up(ErrorType::ReadTimedout), "u");
        assert_eq!(c.failure, Some(Failure::Timeout));
        assert_eq!(c.error.map(|e| e.status().as_u16()), Some(504));
        let c = classify(&up(ErrorType::ConnectionClosed), "u");
        assert_eq!(c.failure, Some(Failure::Reset));
        assert_eq!(c.error.map(|e| e.code()), Some("UPSTREAM_UNAVAILABLE"));
    }

    #[test]
    fn client_side_and_internal_errors_are_not_the_upstreams_fault() {
        let mut e = Error::explain(ErrorType::ConnectionClosed, "client left");
        e.as_down();
        let c = classify(&e, "u");
        assert!(c.failure.is_none() && c.error.is_none());
        assert!(classify_upstream(&e, "u").failure.is_none());
        let c = classify(&Error::explain(ErrorType::InternalError, "x"), "u");
        assert_eq!(c.error.map(|e| e.status().as_u16()), Some(500));
        let c = classify(&Error::explain(ErrorType::HTTPStatus(400), "x"), "u");
        assert_eq!(c.error.map(|e| e.code()), Some("PARAM_001"));
    }

    #[test]
    fn io_errors_map_onto_the_same_table() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let c = classify(&io_error(&refused, true, "connect"), "u");
        assert_eq!(c.failure, Some(Failure::ConnectFailure));
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        let c = classify(&io_error(&eof, false, "read"), "u");
        assert_eq!(c.failure, Some(Failure::Reset));
    }
}
