//! Pieces shared by the HTTP modes: the request template, header parsing, draining a response
//! body, and mapping hyper errors to [`ErrorKind`].

use std::error::Error as _;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::net::Target;
use crate::stats::{note_error, ErrorKind};

/// Parses `-H "Name: value"` flags.
pub fn parse_headers(raw: &[String]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for h in raw {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("header {h:?}: expected \"Name: value\""))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|e| format!("header {h:?}: bad name: {e}"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|e| format!("header {h:?}: bad value: {e}"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Everything needed to build the same request again and again cheaply (the body is a shared
/// `Bytes`, the URI is reference-counted).
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl RequestTemplate {
    /// A template for `target`. HTTP/1.1 requests use the origin form (`/path`) and a `Host`
    /// header (unless `-H Host:` was given); HTTP/2 requests use the absolute URI, from which
    /// `:scheme` and `:authority` come.
    pub fn new(
        target: &Target,
        version: Version,
        method: &str,
        mut headers: HeaderMap,
        body_size: usize,
    ) -> Result<Self, String> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("invalid method {method:?}"))?;
        let uri = if version == Version::HTTP_2 {
            target.uri.clone()
        } else {
            target
                .path_and_query
                .parse()
                .map_err(|e| format!("bad path {:?}: {e}", target.path_and_query))?
        };
        if version != Version::HTTP_2 && !headers.contains_key(HOST) {
            let host = HeaderValue::from_str(&target.authority)
                .map_err(|e| format!("bad host {:?}: {e}", target.authority))?;
            headers.insert(HOST, host);
        }
        Ok(Self {
            method,
            uri,
            version,
            headers,
            body: Bytes::from(vec![b'x'; body_size]),
        })
    }

    /// Adds a header to every request.
    pub fn insert_header(&mut self, name: HeaderName, value: HeaderValue) {
        self.headers.insert(name, value);
    }

    /// A fresh request.
    pub fn build(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Reads a response body to its end without keeping it; returns its length.
pub async fn drain(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            n += data.len() as u64;
        }
    }
    Ok(n)
}

/// Maps a hyper error: closed/reset/incomplete connections are [`ErrorKind::Reset`], timeouts
/// [`ErrorKind::Timeout`], parse and other protocol violations [`ErrorKind::Protocol`].
pub fn classify(e: &hyper::Error) -> ErrorKind {
    note_error(classify_kind(e), e)
}

fn classify_kind(e: &hyper::Error) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() || e.is_body_write_aborted() {
        return ErrorKind::Reset;
    }
    if e.is_parse() || e.is_parse_status() || e.is_user() {
        return ErrorKind::Protocol;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return crate::net::classify_io(io, ErrorKind::Reset);
        }
        source = s.source();
    }
    ErrorKind::Protocol
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let h =
            parse_headers(&["x-a: 1".into(), "X-B:two words".into(), "x-a: 3".into()]).expect("ok");
        assert_eq!(h.get_all("x-a").iter().count(), 2);
        assert_eq!(h["x-b"], "two words");
        assert!(parse_headers(&["nocolon".into()]).is_err());
        assert!(parse_headers(&["bad name: 1".into()]).is_err());
    }

    #[test]
    fn templates() {
        let t = Target::parse("http://127.0.0.1:8080/p?q=1", &["http"]).expect("ok");
        let h1 = RequestTemplate::new(&t, Version::HTTP_11, "GET", HeaderMap::new(), 0)
            .expect("ok")
            .build();
        assert_eq!(h1.uri(), "/p?q=1");
        assert_eq!(h1.headers()[HOST], "127.0.0.1:8080");
        let h2 = RequestTemplate::new(&t, Version::HTTP_2, "POST", HeaderMap::new(), 5)
            .expect("ok")
            .build();
        assert_eq!(h2.uri(), "http://127.0.0.1:8080/p?q=1");
        assert_eq!(h2.method(), Method::POST);
        assert!(h2.headers().get(HOST).is_none());
        assert!(
            RequestTemplate::new(&t, Version::HTTP_11, "BAD METHOD", HeaderMap::new(), 0).is_err()
        );
    }
}
