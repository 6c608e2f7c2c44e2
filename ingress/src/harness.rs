//! Invariants of this crate, as functions that panic when one is broken: the fuzz targets in
//! `fuzz/` call them on arbitrary input, and the property tests call them on generated input in
//! the normal test run. Not for production code paths.

use std::borrow::Cow;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use orchestra_plugins::{HeaderOps, TrustedProxies};

use crate::forwarded::{set_forwarded, Scheme, X_FORWARDED_FOR};
use crate::head::RequestHead;
use crate::normalize::normalize_path;
use crate::upgrade::{strip_foreign_upgrade, Upgrade};

/// Normalizes `path` and checks the canonical form: a fixed point (returned borrowed), starting
/// with `/`, without `//`, dot segments, `\`, escapes of unreserved characters, of `/` or `\`,
/// or lower-case hex. Returns the canonical path.
pub fn check_path(path: &str) -> Option<String> {
    let n = normalize_path(path).ok()?.into_owned();
    match normalize_path(&n) {
        Ok(Cow::Borrowed(again)) => assert_eq!(again, n, "canonical form changed"),
        other => panic!("{n:?} is not a fixed point: {other:?}"),
    }
    if n == "*" {
        return Some(n);
    }
    assert!(n.starts_with('/'), "{n:?}");
    assert!(!n.contains("//"), "{n:?}");
    assert!(!n.contains('\\'), "{n:?}");
    assert!(n.split('/').all(|s| s != "." && s != ".."), "{n:?}");
    let bytes = n.as_bytes();
    for (i, _) in n.match_indices('%') {
        let hex = &bytes[i + 1..i + 3];
        assert!(
            hex.iter()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
            "{n:?}"
        );
        let v = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16)
            .unwrap_or_else(|_| panic!("bad escape kept in {n:?}"));
        assert!(
            !(v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\')),
            "{n:?} keeps an escape it should have decoded or refused"
        );
    }
    Some(n)
}

/// What [`check_head`] hands on to routing.
#[derive(Debug, Clone)]
pub struct CheckedHead {
    /// Method.
    pub method: Method,
    /// Host, when the head named one.
    pub host: Option<String>,
    /// Normalized path.
    pub path: String,
    /// Headers as received.
    pub headers: HeaderMap,
}

/// An HTTP/1 request head (`GET /x HTTP/1.1\r\nHost: ...\r\n\r\n`) as pingora receives it:
/// parsed by `httparse` into `http` types (a head those cannot hold is one pingora answers 400),
/// then through [`RequestHead::parse`], the upgrade filter and the forwarded headers, checking:
/// the path is canonical ([`check_path`]); after the filter, only a WebSocket upgrade is left;
/// `X-Forwarded-For` ends with the peer and, from an untrusted peer, is the peer alone.
pub fn check_head(bytes: &[u8], peer: IpAddr, trust_peer: bool) -> Option<CheckedHead> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut slots);
    let httparse::Status::Complete(_) = req.parse(bytes).ok()? else {
        return None;
    };
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let uri = Uri::try_from(req.path?).ok()?;
    let mut headers = HeaderMap::new();
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        headers.append(name, value);
    }
    let head = RequestHead::parse(&method, &uri, &headers, Some(peer), Scheme::Http).ok()?;
    let path = check_path(uri.path()).unwrap_or_else(|| panic!("parse accepted {uri}"));
    assert_eq!(path, head.path, "head path differs from check_path");
    let host = head.host.map(str::to_string);
    let upgrade = head.upgrade;

    let mut upstream = headers.clone();
    let kept = strip_foreign_upgrade(&mut upstream);
    assert_eq!(kept, upgrade);
    assert_ne!(
        Upgrade::of(&upstream),
        Upgrade::Other,
        "foreign upgrade left"
    );
    let trusted = if trust_peer {
        TrustedProxies::new(vec![peer.into()])
    } else {
        TrustedProxies::default()
    };
    set_forwarded(
        &mut upstream,
        Some(peer),
        &trusted,
        Scheme::Http,
        host.as_deref()
            .and_then(|h| HeaderValue::from_str(h).ok())
            .as_ref(),
    );
    let xff: Vec<&HeaderValue> = upstream.get_all(X_FORWARDED_FOR).iter().collect();
    assert_eq!(xff.len(), 1, "one X-Forwarded-For line");
    // Bytes, not text: a trusted proxy's chain is forwarded as it came, obs-text included.
    let xff = xff[0].as_bytes();
    let peer_text = peer.to_string();
    assert!(
        xff.ends_with(peer_text.as_bytes()),
        "{xff:?} does not end with {peer_text}"
    );
    if !trust_peer {
        assert_eq!(
            xff,
            peer_text.as_bytes(),
            "an untrusted peer's X-Forwarded-For was kept"
        );
    }
    assert!(HeaderOps::get(&upstream, &crate::forwarded::X_FORWARDED_PROTO).is_some());
    Some(CheckedHead {
        method,
        host,
        path,
        headers,
    })
}
