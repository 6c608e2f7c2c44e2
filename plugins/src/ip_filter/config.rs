//! `[plugins.NAME]` with `kind = "ip_filter"`: `allow`, `deny`, `trusted_proxies`.

use std::sync::Arc;

use serde::Deserialize;

use super::{IpFilterConfig, IpFilterPlugin};
use crate::section::{Built, PluginKind, Section};
use crate::TrustedProxies;

/// The `ip_filter` kind.
pub(crate) const KIND: PluginKind = PluginKind::new("ip_filter", build);

#[derive(Debug, Deserialize)]
struct RawIpFilter {
    #[allow(dead_code)] // dispatched on by the registry
    kind: String,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

fn build(name: &str, table: toml::Value, s: &mut Section<'_>) -> Built {
    let raw: RawIpFilter = s.typed(table)?;
    if raw.allow.is_empty() && raw.deny.is_empty() {
        s.invalid(
            "allow",
            "[]",
            "set allow, deny or both (an empty filter does nothing)",
        );
    }
    let cfg = IpFilterConfig {
        allow: s.nets("allow", &raw.allow),
        deny: s.nets("deny", &raw.deny),
        trusted_proxies: TrustedProxies::new(s.nets("trusted_proxies", &raw.trusted_proxies)),
    };
    if s.failed() {
        return None;
    }
    Some(Arc::new(IpFilterPlugin::new(name, cfg)))
}
