//! The request head as routing sees it, built the same way by every front.
//!
//! [`RequestHead::parse`] takes what any HTTP version carries (method, URI, headers) plus the
//! peer and the scheme, and:
//! - takes the host from the URI's authority (`:authority`, absolute-form) or else the single
//!   `Host` header; several `Host` headers, or one that is not a plain `host[:port]`, are
//!   refused (routing on a host the upstream reads differently is a bypass);
//! - normalizes the path ([`normalize_path`]); the query is kept as sent;
//! - classifies the upgrade ([`Upgrade`]).

use std::borrow::Cow;
use std::net::IpAddr;

use http::{HeaderMap, Method, Uri};

use crate::forwarded::Scheme;
use crate::normalize::{normalize_path, PathError};
use crate::upgrade::Upgrade;

/// Why a request head was refused (400 `PARAM_001`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The path cannot be normalized.
    #[error(transparent)]
    Path(#[from] PathError),
    /// More than one `Host` header.
    #[error("the request has more than one Host header")]
    DuplicateHost,
    /// A `Host` (or authority) that is not `host[:port]`.
    #[error("the Host header is not a valid host[:port]")]
    BadHost,
}

/// A request head, checked and normalized.
#[derive(Debug, Clone)]
pub struct RequestHead<'a> {
    /// Method.
    pub method: &'a Method,
    /// Host from `:authority` or `Host` (port included when sent).
    pub host: Option<&'a str>,
    /// The normalized path (no query); borrowed when the client sent it in canonical form.
    pub path: Cow<'a, str>,
    /// Query string (without `?`), as sent.
    pub query: Option<&'a str>,
    /// Request headers as received.
    pub headers: &'a HeaderMap,
    /// The connected peer's address.
    pub client_ip: Option<IpAddr>,
    /// How the client reached the gateway.
    pub scheme: Scheme,
    /// What the `Upgrade` header asks for.
    pub upgrade: Upgrade,
}

impl<'a> RequestHead<'a> {
    /// Checks and normalizes one request head (see the module doc).
    pub fn parse(
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        peer: Option<IpAddr>,
        scheme: Scheme,
    ) -> Result<Self, HeadError> {
        let host = host_of(uri, headers)?;
        let path = normalize_path(uri.path())?;
        Ok(RequestHead {
            method,
            host,
            path,
            query: uri.query(),
            headers,
            client_ip: peer,
            scheme,
            upgrade: Upgrade::of(headers),
        })
    }

    /// True when the path sent upstream differs from the one the client sent.
    pub fn path_changed(&self) -> bool {
        matches!(self.path, Cow::Owned(_))
    }

    /// The normalized path followed by `?query` when there is one.
    pub fn path_and_query(&self) -> String {
        let mut out =
            String::with_capacity(self.path.len() + self.query.map_or(0, |q| q.len() + 1));
        out.push_str(&self.path);
        if let Some(q) = self.query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

fn host_of<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Result<Option<&'a str>, HeadError> {
    let mut values = headers.get_all(http::header::HOST).iter();
    let header = values.next();
    if values.next().is_some() {
        return Err(HeadError::DuplicateHost);
    }
    if let Some(authority) = uri.authority() {
        // The authority of the request target wins over `Host` (RFC 9112 §3.2.2); http's
        // parser already refused a malformed one, but not a user-info part.
        if authority.as_str().contains('@') {
            return Err(HeadError::BadHost);
        }
        return Ok(Some(authority.as_str()));
    }
    let Some(value) = header else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| HeadError::BadHost)?;
    if text.is_empty() {
        return Ok(None);
    }
    if valid_host(text.as_bytes()) {
        Ok(Some(text))
    } else {
        Err(HeadError::BadHost)
    }
}

/// `host[:port]` as RFC 3986 allows it in `Host`: a reg-name (unreserved, sub-delims, `%`) or a
/// bracketed IPv6 literal, and an optional numeric port. Checked in place (no allocation, unlike
/// parsing an `http::uri::Authority`); no user-info, path, or white space.
fn valid_host(b: &[u8]) -> bool {
    let (host, port) = if b.first() == Some(&b'[') {
        let Some(end) = b.iter().position(|&c| c == b']') else {
            return false;
        };
        let literal = &b[1..end];
        let ok = !literal.is_empty()
            && literal
                .iter()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.'));
        if !ok {
            return false;
        }
        match &b[end + 1..] {
            [] => return true,
            [b':', port @ ..] => (&b[..0], port),
            _ => return false,
        }
    } else {
        match b.iter().rposition(|&c| c == b':') {
            Some(i) => (&b[..i], &b[i + 1..]),
            None => (b, &b[..0]),
        }
    };
    let reg_name = |c: &u8| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
            )
    };
    let host_ok = b.first() == Some(&b'[') || (!host.is_empty() && host.iter().all(reg_name));
    let port_ok = port.len() <= 5 && port.iter().all(u8::is_ascii_digit);
    let had_colon = b.first() != Some(&b'[') && host.len() < b.len();
    host_ok && port_ok && !(had_colon && port.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Result<RequestHead<'a>, HeadError> {
        RequestHead::parse(&Method::GET, uri, headers, None, Scheme::Http)
    }

    #[test]
    fn host_from_authority_or_single_header() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("a.example:8080"));
        let uri: Uri = "/x?y=1".parse().expect("uri");
        let head = parse(&uri, &h).expect("head");
        assert_eq!(head.host, Some("a.example:8080"));
        assert_eq!(head.query, Some("y=1"));
        assert!(!head.path_changed());
        let abs: Uri = "http://b.example/%70?q".parse().expect("uri");
        let head = parse(&abs, &h).expect("head");
        assert_eq!(head.host, Some("b.example"));
        assert_eq!(head.path, "/p");
        assert!(head.path_changed());
        assert_eq!(head.path_and_query(), "/p?q");
    }

    #[test]
    fn refuses_ambiguous_hosts() {
        let uri: Uri = "/".parse().expect("uri");
        let mut h = HeaderMap::new();
        h.append("host", HeaderValue::from_static("a.example"));
        h.append("host", HeaderValue::from_static("b.example"));
        assert_eq!(parse(&uri, &h).err(), Some(HeadError::DuplicateHost));
        for bad in [
            "a b",
            "a/b",
            "u@a.example",
            "a.example:x:y",
            "[::1",
            "[::1]x",
            "[]",
            ":80",
            "a.example:",
            "a.example:123456",
            "a\\b",
        ] {
            let mut h = HeaderMap::new();
            h.insert("host", HeaderValue::from_static(bad));
            assert_eq!(parse(&uri, &h).err(), Some(HeadError::BadHost), "{bad}");
        }
        for good in [
            "a.example",
            "a.example:8080",
            "[::1]",
            "[::1]:8443",
            "127.0.0.1:80",
            "x_y-z~",
        ] {
            let mut h = HeaderMap::new();
            h.insert("host", HeaderValue::from_static(good));
            assert_eq!(parse(&uri, &h).expect(good).host, Some(good));
        }
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static(""));
        assert_eq!(parse(&uri, &h).expect("empty host").host, None);
        let bad_path: Uri = "/a/%2Fb".parse().expect("uri");
        assert_eq!(
            parse(&bad_path, &HeaderMap::new()).err(),
            Some(HeadError::Path(PathError::EncodedSlash))
        );
    }
}
