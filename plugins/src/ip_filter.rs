//! The `ip_filter` plugin: allow or deny requests by client IP.
//!
//! ```toml
//! [plugins.office-only]
//! kind = "ip_filter"
//! allow = ["203.0.113.0/24", "2001:db8::/32"]   # when non-empty, only these may pass
//! deny = ["203.0.113.66"]                       # never pass; deny wins over allow
//! trusted_proxies = ["10.0.0.0/8"]              # see `client_ip`
//! ```
//!
//! Rules, in order, on the client IP resolved behind trusted proxies (IPv4 and IPv6; IPv4-mapped
//! IPv6 addresses are matched as IPv4):
//! 1. inside any `deny` network → rejected;
//! 2. `allow` non-empty and the address inside none of its networks → rejected;
//! 3. otherwise the request passes.
//!
//! An unknown client address (a front that cannot tell) passes only when `allow` is empty.
//! Rejection: `403`, code `AUTH_001` (the platform has no separate "forbidden" code; the message
//! says the address is not allowed). Lists are scanned linearly: keep them to a few hundred
//! entries.

pub(crate) mod config;

use std::net::IpAddr;

use http::StatusCode;
use ipnet::IpNet;

use crate::client_ip::{canonical, TrustedProxies};
use crate::{Plugin, Reject, RequestView};

/// Typed parameters of an `ip_filter` plugin.
#[derive(Debug, Clone, Default)]
pub struct IpFilterConfig {
    /// Networks allowed; empty = everyone not denied.
    pub allow: Vec<IpNet>,
    /// Networks denied.
    pub deny: Vec<IpNet>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
}

/// The `ip_filter` plugin (see the module doc).
#[derive(Debug)]
pub struct IpFilterPlugin {
    name: String,
    cfg: IpFilterConfig,
}

impl IpFilterPlugin {
    /// Creates the plugin named `name`.
    pub fn new(name: impl Into<String>, cfg: IpFilterConfig) -> Self {
        IpFilterPlugin {
            name: name.into(),
            cfg,
        }
    }

    /// True when `ip` passes the rules.
    pub fn permits(&self, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip.map(canonical) else {
            return self.cfg.allow.is_empty();
        };
        if self.cfg.deny.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        self.cfg.allow.is_empty() || self.cfg.allow.iter().any(|n| n.contains(&ip))
    }
}

impl Plugin for IpFilterPlugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_request(&self, req: &mut RequestView<'_>) -> Result<(), Reject> {
        let ip = self.cfg.trusted_proxies.resolve(req.client_ip, req.headers);
        if self.permits(ip) {
            return Ok(());
        }
        let who = ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        Err(Reject::new(
            StatusCode::FORBIDDEN,
            "AUTH_001",
            format!("client address {who} is not allowed"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_ip::parse_net;
    use crate::{Chain, PluginCtx};
    use http::{HeaderMap, HeaderValue, Method};
    use std::sync::Arc;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| parse_net(n).expect("net")).collect()
    }

    fn check(c: &Chain, peer: Option<&str>, xff: Option<&'static str>) -> Result<(), Reject> {
        let mut h = HeaderMap::new();
        if let Some(x) = xff {
            h.insert("x-forwarded-for", HeaderValue::from_static(x));
        }
        let mut ctx = PluginCtx::default();
        c.on_request(&mut RequestView {
            method: &Method::GET,
            path: "/",
            headers: &mut h,
            client_ip: peer.map(|p| p.parse().expect("ip")),
            ctx: &mut ctx,
        })
    }

    fn chain(allow: &[&str], deny: &[&str], trusted: &[&str]) -> Chain {
        let cfg = IpFilterConfig {
            allow: nets(allow),
            deny: nets(deny),
            trusted_proxies: TrustedProxies::new(nets(trusted)),
        };
        Chain::new(vec![Arc::new(IpFilterPlugin::new("ipf", cfg))])
    }

    #[test]
    fn allow_list_and_deny_wins() {
        let c = chain(
            &["203.0.113.0/24", "2001:db8::/32"],
            &["203.0.113.66", "2001:db8:bad::/48"],
            &[],
        );
        check(&c, Some("203.0.113.5"), None).expect("allowed v4");
        check(&c, Some("2001:db8::1"), None).expect("allowed v6");
        check(&c, Some("::ffff:203.0.113.5"), None).expect("v4-mapped matches v4");
        let e = check(&c, Some("203.0.113.66"), None).expect_err("deny wins");
        assert_eq!((e.status, e.code), (StatusCode::FORBIDDEN, "AUTH_001"));
        assert_eq!(e.message, "client address 203.0.113.66 is not allowed");
        check(&c, Some("2001:db8:bad::7"), None).expect_err("v6 deny wins");
        check(&c, Some("198.51.100.1"), None).expect_err("not in allow");
        check(&c, Some("2001:db9::1"), None).expect_err("v6 not in allow");
        check(&c, None, None).expect_err("unknown address with an allow list");
    }

    #[test]
    fn deny_only() {
        let c = chain(&[], &["192.0.2.0/24", "fe80::/10"], &[]);
        check(&c, Some("198.51.100.1"), None).expect("not denied");
        check(&c, Some("192.0.2.9"), None).expect_err("denied");
        check(&c, Some("fe80::1"), None).expect_err("denied v6");
        check(&c, None, None).expect("unknown address, no allow list");
    }

    #[test]
    fn uses_client_ip_behind_trusted_proxy_only() {
        let c = chain(&[], &["192.0.2.0/24"], &["10.0.0.0/8"]);
        check(&c, Some("10.0.0.1"), Some("192.0.2.9")).expect_err("denied client via proxy");
        check(&c, Some("10.0.0.1"), Some("198.51.100.1")).expect("allowed client via proxy");
        check(&c, Some("192.0.2.9"), Some("198.51.100.1"))
            .expect_err("untrusted peer cannot spoof");
    }
}
