//! `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host` toward the upstream.
//!
//! - From a peer inside `[server] trusted_proxies` (a load balancer in front of the gateway),
//!   the client's chain is kept and the peer is appended to `X-Forwarded-For`
//!   (`client, proxy1, peer`); its `X-Forwarded-Proto` / `-Host` are kept when present.
//! - From any other peer, whatever the client sent under these names is dropped:
//!   `X-Forwarded-For` becomes the peer address alone, `X-Forwarded-Proto` the scheme the
//!   client used to reach the gateway (`https` over TLS and QUIC, else `http`), and
//!   `X-Forwarded-Host` the host it asked for (removed when it named none).
//!
//! The client address the plugins see (`rate_limit` on `client_ip`, `ip_filter`, consistent
//! hashing on `client_ip`) is resolved from the same trust list by
//! [`TrustedProxies::resolve`](orchestra_plugins::TrustedProxies::resolve), in the pipeline.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use orchestra_plugins::client_ip::canonical;
use orchestra_plugins::{HeaderOps, TrustedProxies};

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// How the client reached the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Cleartext TCP.
    Http,
    /// TLS or QUIC.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Rewrites the forwarding headers of a request from `peer` (see the module doc). `host` is the
/// host the client asked for; a value that is not visible ASCII is not forwarded.
pub fn set_forwarded(
    headers: &mut dyn HeaderOps,
    peer: Option<IpAddr>,
    trusted: &TrustedProxies,
    scheme: Scheme,
    host: Option<&HeaderValue>,
) {
    let peer = peer.map(canonical);
    let from_proxy = peer.is_some_and(|p| trusted.contains(p));
    let peer_text = peer.map(ip_text);
    let chain = if from_proxy {
        headers.as_map().and_then(|m| {
            let mut joined: Vec<u8> = Vec::new();
            for v in m.get_all(X_FORWARDED_FOR) {
                let v = v.as_bytes().trim_ascii();
                if v.is_empty() {
                    continue;
                }
                if !joined.is_empty() {
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(v);
            }
            (!joined.is_empty()).then_some(joined)
        })
    } else {
        None
    };
    // The buffers become the header values without another copy.
    let xff = match (chain, peer_text) {
        (Some(mut chain), Some(p)) => {
            chain.extend_from_slice(b", ");
            chain.extend_from_slice(&p);
            HeaderValue::from_maybe_shared(Bytes::from(chain)).ok()
        }
        (None, Some(p)) => HeaderValue::from_maybe_shared(Bytes::from(p)).ok(),
        (_, None) => None,
    };
    // `set` replaces every value under the name, so the old chain needs no lookup of its own.
    match xff {
        Some(v) => headers.set(X_FORWARDED_FOR, v),
        None => headers.remove(&X_FORWARDED_FOR),
    }
    let keep = |h: &dyn HeaderOps, name: &HeaderName| from_proxy && h.get(name).is_some();
    if !keep(headers, &X_FORWARDED_PROTO) {
        headers.set(X_FORWARDED_PROTO, HeaderValue::from_static(scheme.as_str()));
    }
    if !keep(headers, &X_FORWARDED_HOST) {
        // The client's `Host` value is shared, not copied.
        match host.filter(|h| h.to_str().is_ok()) {
            Some(v) => headers.set(X_FORWARDED_HOST, v.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        }
    }
}

/// The address as `X-Forwarded-For` spells it (`Display`).
fn ip_text(ip: IpAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(15);
    write_ip(&mut out, ip);
    out
}

/// Appends `ip` as its `Display` spells it, written without the formatter for IPv4 (the common
/// case on the request path: `X-Forwarded-For`, the access log's target).
pub fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(_) => out.extend_from_slice(ip.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use orchestra_plugins::parse_net;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| parse_net(n).expect("net")).collect())
    }

    fn get(h: &HeaderMap, n: &HeaderName) -> Option<String> {
        h.get(n).map(|v| v.to_str().expect("ascii").to_string())
    }

    #[test]
    fn untrusted_peer_replaces_everything() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("7.7.7.7"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        h.insert(X_FORWARDED_HOST, HeaderValue::from_static("evil.example"));
        let peer = "203.0.113.5".parse().ok();
        set_forwarded(
            &mut h,
            peer,
            &trusted(&["10.0.0.0/8"]),
            Scheme::Http,
            Some(&HeaderValue::from_static("api.example:8080")),
        );
        assert_eq!(get(&h, &X_FORWARDED_FOR).as_deref(), Some("203.0.113.5"));
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(get(&h, &X_FORWARDED_PROTO).as_deref(), Some("http"));
        assert_eq!(
            get(&h, &X_FORWARDED_HOST).as_deref(),
            Some("api.example:8080")
        );
        set_forwarded(
            &mut h,
            peer,
            &TrustedProxies::default(),
            Scheme::Https,
            None,
        );
        assert_eq!(get(&h, &X_FORWARDED_PROTO).as_deref(), Some("https"));
        assert!(h.get(X_FORWARDED_HOST).is_none());
    }

    #[test]
    fn trusted_peer_appends_and_keeps() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.9"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let peer = "::ffff:10.0.0.1".parse().ok();
        set_forwarded(
            &mut h,
            peer,
            &trusted(&["10.0.0.0/8"]),
            Scheme::Http,
            Some(&HeaderValue::from_static("a.example")),
        );
        assert_eq!(
            get(&h, &X_FORWARDED_FOR).as_deref(),
            Some("1.2.3.4, 10.0.0.9, 10.0.0.1")
        );
        assert_eq!(get(&h, &X_FORWARDED_PROTO).as_deref(), Some("https"));
        assert_eq!(get(&h, &X_FORWARDED_HOST).as_deref(), Some("a.example"));
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, peer, &trusted(&["10.0.0.0/8"]), Scheme::Http, None);
        assert_eq!(get(&h, &X_FORWARDED_FOR).as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn ip_text_spells_addresses_like_display() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.100.255",
            "127.0.0.1",
            "2001:db8::3",
            "::1",
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(ip_text(ip), ip.to_string().into_bytes(), "{ip}");
        }
        for a in [0u8, 9, 10, 99, 100, 199, 200, 255] {
            let ip = IpAddr::from([a, 255 - a, a / 2, 7]);
            assert_eq!(ip_text(ip), ip.to_string().into_bytes(), "{ip}");
        }
    }

    #[test]
    fn host_that_is_not_visible_ascii_is_not_forwarded() {
        let mut h = HeaderMap::new();
        let host = HeaderValue::from_bytes(b"h\xd2st").expect("obs-text is allowed");
        set_forwarded(
            &mut h,
            "1.2.3.4".parse().ok(),
            &TrustedProxies::default(),
            Scheme::Http,
            Some(&host),
        );
        assert!(h.get(X_FORWARDED_HOST).is_none());
    }

    /// Fuzz finding (http1_head, bench/RESULTS.md): a trusted proxy's chain may hold obs-text
    /// bytes; it is forwarded byte for byte with the peer appended, never dropped or mangled.
    #[test]
    fn trusted_chain_with_obs_text_is_kept_as_bytes() {
        let mut h = HeaderMap::new();
        let raw = b"6\xd2\xc9.6";
        h.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(raw).expect("obs-text is allowed"),
        );
        let peer = "2001:db8::3".parse().ok();
        set_forwarded(
            &mut h,
            peer,
            &trusted(&["2001:db8::/32"]),
            Scheme::Http,
            None,
        );
        let v = h.get(X_FORWARDED_FOR).expect("xff").as_bytes();
        assert_eq!(v, b"6\xd2\xc9.6, 2001:db8::3");
        let head = b"GET / HTTP/1.1\r\nX-Forwarded-For: 6\xd2\xc9.6\r\n\r\n";
        let peer = "2001:db8::3".parse().expect("ip");
        assert!(crate::harness::check_head(head, peer, true).is_some());
    }
}
