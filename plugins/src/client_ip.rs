//! Client IP resolution behind trusted proxies: the one rule the gateway uses for its
//! `[server] trusted_proxies` (the client address plugins receive in
//! [`RequestView::client_ip`](crate::RequestView), and the `X-Forwarded-*` trust), and that
//! `rate_limit` and `ip_filter` apply again with their own `trusted_proxies` when one is set.
//!
//! Parameter: `trusted_proxies = ["10.0.0.0/8", "::1"]` (CIDRs; a bare address is a /32 or /128).
//!
//! Rule (the "rightmost untrusted hop"):
//! 1. The peer address (the TCP/QUIC peer) is the client unless it is a trusted proxy.
//! 2. When the peer is trusted, `X-Forwarded-For` is read **right to left** (all its fields, in
//!    order, each a comma-separated list); trusted hops are skipped and the first untrusted hop
//!    is the client. Everything left of it was written by the client itself and is ignored.
//! 3. When every hop is trusted, the leftmost one is the client. A malformed hop (`unknown`,
//!    garbage) stops the walk: the last hop that could be vouched for is the client.
//!
//! With no trusted proxies, `X-Forwarded-For` is never read, so a client cannot spoof its
//! address. IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, from dual-stack sockets) are
//! normalised to IPv4 before matching. `Forwarded` (RFC 7239) is not read.

use std::net::{IpAddr, SocketAddr};

use http::HeaderName;
use ipnet::IpNet;

use crate::header_ops::for_each_value;
use crate::HeaderOps;

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The proxies whose `X-Forwarded-For` entries are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trusts peers inside any of `nets`.
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies { nets }
    }

    /// True when no proxy is trusted (the peer address is always the client).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Number of trusted networks.
    pub fn len(&self) -> usize {
        self.nets.len()
    }

    /// True when `ip` is inside a trusted network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client address for a request from `peer` with `headers` (see the module doc).
    /// `None` only when the front does not know the peer.
    pub fn resolve(&self, peer: Option<IpAddr>, headers: &dyn HeaderOps) -> Option<IpAddr> {
        let peer = canonical(peer?);
        if self.nets.is_empty() || !self.contains(peer) {
            return Some(peer);
        }
        // Field lines in order; the walk goes from the last line's last hop backwards.
        let mut lines: Vec<&[u8]> = Vec::new();
        for_each_value(headers, &X_FORWARDED_FOR, |v| {
            lines.push(v.as_bytes());
            true
        });
        let mut client = peer;
        for line in lines.iter().rev() {
            for hop in line.rsplit(|&b| b == b',') {
                let hop = hop.trim_ascii();
                if hop.is_empty() {
                    continue;
                }
                let Some(ip) = parse_hop(hop) else {
                    return Some(client);
                };
                client = ip;
                if !self.contains(ip) {
                    return Some(ip);
                }
            }
        }
        Some(client)
    }
}

/// Parses a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a bare address (a single-host network).
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| "expected a CIDR such as 10.0.0.0/8 or 2001:db8::/32, or an IP address".into())
}

/// Maps IPv4-mapped IPv6 addresses to IPv4; other addresses are returned unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` hop: `1.2.3.4`, `2001:db8::1`, `1.2.3.4:5678`, `[2001:db8::1]:80`,
/// `[2001:db8::1]`.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(hop).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| parse_net(n).expect("net")).collect())
    }

    fn xff(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_FORWARDED_FOR, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn untrusted_peer_ignores_xff() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = xff(&["1.1.1.1"]);
        assert_eq!(
            t.resolve(Some(ip("203.0.113.9")), &h),
            Some(ip("203.0.113.9"))
        );
        let none = TrustedProxies::default();
        assert_eq!(none.resolve(Some(ip("10.0.0.1")), &h), Some(ip("10.0.0.1")));
    }

    #[test]
    fn trusted_peer_takes_rightmost_untrusted_hop() {
        let t = trusted(&["10.0.0.0/8", "192.168.0.0/16"]);
        // The client forged "6.6.6.6"; the real client is 1.2.3.4, then two of our proxies.
        let h = xff(&["6.6.6.6, 1.2.3.4, 192.168.1.1"]);
        assert_eq!(t.resolve(Some(ip("10.1.2.3")), &h), Some(ip("1.2.3.4")));
        // Split over two field lines.
        let h = xff(&["6.6.6.6, 1.2.3.4", "192.168.1.1"]);
        assert_eq!(t.resolve(Some(ip("10.1.2.3")), &h), Some(ip("1.2.3.4")));
    }

    #[test]
    fn all_trusted_or_malformed_hops() {
        let t = trusted(&["10.0.0.0/8"]);
        let h = xff(&["10.0.0.7, 10.0.0.8"]);
        assert_eq!(t.resolve(Some(ip("10.0.0.1")), &h), Some(ip("10.0.0.7")));
        let h = xff(&["1.2.3.4, unknown, 10.0.0.8"]);
        assert_eq!(t.resolve(Some(ip("10.0.0.1")), &h), Some(ip("10.0.0.8")));
        let h = HeaderMap::new();
        assert_eq!(t.resolve(Some(ip("10.0.0.1")), &h), Some(ip("10.0.0.1")));
        assert_eq!(t.resolve(None, &h), None);
    }

    #[test]
    fn ipv6_ports_and_mapped_addresses() {
        let t = trusted(&["::1", "fd00::/8"]);
        let h = xff(&["[2001:db8::5]:443, fd00::2"]);
        assert_eq!(t.resolve(Some(ip("::1")), &h), Some(ip("2001:db8::5")));
        let t4 = trusted(&["127.0.0.1"]);
        let h = xff(&["1.2.3.4:5555"]);
        assert_eq!(
            t4.resolve(Some(ip("::ffff:127.0.0.1")), &h),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(canonical(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
    }

    #[test]
    fn parses_nets() {
        assert_eq!(
            parse_net("10.1.2.3/8").expect("net").to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(parse_net("::1").expect("net").to_string(), "::1/128");
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("nope").is_err());
    }
}
