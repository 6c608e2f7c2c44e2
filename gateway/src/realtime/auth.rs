//! Who a realtime client is: the `jwt` plugin named in `[realtime] auth`, run through the
//! [`Plugin`](orchestra_plugins::Plugin) trait on a token taken from one of three carriers.
//!
//! | carrier | form | note |
//! |---|---|---|
//! | `Authorization` | `Bearer <token>` | any client |
//! | `Sec-WebSocket-Protocol` | `bearer.<token>` among the offered protocols | browsers' WebSocket API cannot set headers; the `101` then selects that protocol |
//! | query | `?token=<token>` | `EventSource` cannot set headers either |
//!
//! The token found first (in that order) is put in an `Authorization: Bearer` header of a
//! request view of its own, and the plugin verifies it exactly as on any route (signature,
//! `exp`, issuer, audience); its rejection (`401 AUTH_001` with `WWW-Authenticate`) is the
//! answer. The verified `sub` is the user. No `[realtime] auth`: every client is the anonymous
//! user [`ANONYMOUS`] (the gateway warns once at start).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use orchestra_config::Snapshot;
use orchestra_plugins::{PluginCtx, Reject, RequestView};

use crate::error::GatewayError;

/// The user of every client when `[realtime] auth` is absent.
pub const ANONYMOUS: &str = "anonymous";

/// The subprotocol prefix that carries a token.
pub const BEARER_PROTOCOL: &str = "bearer.";

/// An authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The JWT `sub` (or [`ANONYMOUS`]).
    pub user: Arc<str>,
    /// The `Sec-WebSocket-Protocol` the `101` must select (the `bearer.<token>` offered).
    pub protocol: Option<String>,
}

fn unauthorized(message: &str) -> GatewayError {
    GatewayError::Rejected(
        Reject::new(StatusCode::UNAUTHORIZED, "AUTH_001", message.to_string()).with_header(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        ),
    )
}

/// The token and, when it came from a subprotocol, that protocol.
fn find_token(headers: &HeaderMap, query: Option<&str>) -> Option<(String, Option<String>)> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = v.trim().split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some((token.trim().to_string(), None));
        }
        return None;
    }
    for v in headers.get_all(http::header::SEC_WEBSOCKET_PROTOCOL) {
        let Ok(v) = v.to_str() else { continue };
        for p in v.split(',').map(str::trim) {
            if let Some(token) = p.strip_prefix(BEARER_PROTOCOL) {
                return Some((token.to_string(), Some(p.to_string())));
            }
        }
    }
    query_token(query?).map(|t| (t, None))
}

/// `token=` of a query string, percent-decoded.
fn query_token(query: &str) -> Option<String> {
    let raw = orchestra_plugins::query::param(query, "token")?;
    orchestra_plugins::query::percent_decode(raw).map(Cow::into_owned)
}

/// Authenticates a realtime request (see the module doc).
pub fn authenticate(
    snapshot: &Snapshot,
    headers: &HeaderMap,
    query: Option<&str>,
    client_ip: Option<IpAddr>,
) -> Result<Identity, GatewayError> {
    let Some(name) = snapshot.realtime.auth.as_deref() else {
        return Ok(Identity {
            user: Arc::from(ANONYMOUS),
            protocol: None,
        });
    };
    let Some(def) = snapshot.plugins.get(name) else {
        // `check` refuses such a config; a missing plugin here is a bug, not the client's.
        return Err(GatewayError::Internal(format!(
            "[realtime] auth names plugin {name:?}, which is not loaded"
        )));
    };
    let Some((token, protocol)) = find_token(headers, query) else {
        return Err(unauthorized(
            "missing bearer token (Authorization: Bearer, Sec-WebSocket-Protocol: bearer.<token>, or ?token=)",
        ));
    };
    let mut view_headers = HeaderMap::with_capacity(1);
    let value = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| unauthorized("malformed bearer token"))?;
    view_headers.insert(http::header::AUTHORIZATION, value);
    let mut ctx = PluginCtx::default();
    let mut view = RequestView {
        method: &Method::GET,
        path: "/",
        headers: &mut view_headers,
        client_ip,
        ctx: &mut ctx,
    };
    def.plugin
        .on_request(&mut view)
        .map_err(GatewayError::Rejected)?;
    let Some(sub) = ctx.subject.filter(|s| !s.is_empty() && s.len() <= 256) else {
        return Err(unauthorized("the token has no usable sub claim"));
    };
    Ok(Identity {
        user: Arc::from(sub),
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_token_in_each_carrier() {
        let mut h = HeaderMap::new();
        assert_eq!(
            find_token(&h, Some("a=1&token=x%2Ey")),
            Some(("x.y".into(), None))
        );
        h.insert(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("json, bearer.abc"),
        );
        assert_eq!(
            find_token(&h, Some("token=q")),
            Some(("abc".into(), Some("bearer.abc".into())))
        );
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer zz"),
        );
        assert_eq!(find_token(&h, None), Some(("zz".into(), None)));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Basic zz"),
        );
        assert_eq!(find_token(&h, None), None);
        assert_eq!(query_token("token=%zz"), None);
    }
}
