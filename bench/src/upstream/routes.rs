//! Request routing of the bench upstream. Fixed bodies are `Bytes` clones or slices of buffers
//! allocated at start; only `/sse` and error bodies allocate per request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body as _, Incoming};

use super::{sse, ws, State};

/// Response body of every route: a full buffer, or a stream (SSE).
pub type Body = Either<Full<Bytes>, BoxBody<Bytes, Infallible>>;

/// Longest `/slow?ms=N` delay honoured.
const MAX_SLOW_MS: u64 = 60_000;

/// Serves one request.
pub async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Body>, Infallible> {
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    let path = req.uri().path();
    if path == "/ws" {
        return Ok(ws::upgrade(req));
    }
    if path == "/sse" {
        let interval = query_u64(req.uri().query(), "interval_ms")
            .map(Duration::from_millis)
            .unwrap_or(state.sse_interval);
        return Ok(sse::response(interval.max(Duration::from_millis(1))));
    }

    let (parts, body) = req.into_parts();
    if !body.is_end_stream() {
        // Drain (and discard) the request body so the connection can be reused.
        let mut body = body;
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                break;
            }
        }
    }
    let path = parts.uri.path();
    let resp = match path {
        "/" | "/hello" => full(StatusCode::OK, state.hello.clone(), "text/plain"),
        "/healthz" => full(StatusCode::OK, Bytes::from_static(b"ok\n"), "text/plain"),
        "/slow" => {
            let ms = query_u64(parts.uri.query(), "ms")
                .unwrap_or(0)
                .min(MAX_SLOW_MS);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            full(StatusCode::OK, state.hello.clone(), "text/plain")
        }
        _ => match path.strip_prefix("/bytes/").map(str::parse::<usize>) {
            Some(Ok(n)) if n <= state.big.len() => full(
                StatusCode::OK,
                state.big.slice(..n),
                "application/octet-stream",
            ),
            Some(_) => full(
                StatusCode::BAD_REQUEST,
                Bytes::from(format!(
                    "/bytes/N needs 0 <= N <= {} (--max-bytes)\n",
                    state.big.len()
                )),
                "text/plain",
            ),
            // Any other path: a small JSON greeting naming it, so the demo setup
            // (`scripts/setup`) answers every route of the shipped config.
            None => full(
                StatusCode::OK,
                Bytes::from(format!(
                    "{{\"upstream\":\"bench-upstream\",\"path\":{path:?}}}\n"
                )),
                "application/json",
            ),
        },
    };
    Ok(resp)
}

/// A response with a complete body.
pub fn full(status: StatusCode, body: Bytes, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(Either::Left(Full::new(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The value of `key=<u64>` in a query string, if present and numeric.
pub fn query_u64(query: Option<&str>, key: &str) -> Option<u64> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if k == key {
            v.parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::query_u64;

    #[test]
    fn query_parsing() {
        assert_eq!(query_u64(Some("ms=25"), "ms"), Some(25));
        assert_eq!(query_u64(Some("a=1&ms=7"), "ms"), Some(7));
        assert_eq!(query_u64(Some("ms=x"), "ms"), None);
        assert_eq!(query_u64(None, "ms"), None);
    }
}
