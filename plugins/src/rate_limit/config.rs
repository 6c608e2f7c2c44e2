//! `[plugins.NAME]` with `kind = "rate_limit"`: `rate`, `key`, `burst`, `max_keys`,
//! `trusted_proxies`, `response_headers` (see the module docs of [`super`]).

use std::num::NonZeroU32;
use std::sync::Arc;

use serde::Deserialize;

use super::{LimitKey, Rate, RateLimitConfig, RateLimitPlugin};
use crate::section::{Built, PluginKind, Section};
use crate::TrustedProxies;

/// Largest accepted `max_keys`.
const MAX_KEYS_LIMIT: i64 = 1_000_000_000;

/// The `rate_limit` kind.
pub(crate) const KIND: PluginKind = PluginKind::new("rate_limit", build);

#[derive(Debug, Deserialize)]
struct RawRateLimit {
    #[allow(dead_code)] // dispatched on by the registry
    kind: String,
    key: Option<String>,
    rate: String,
    burst: Option<i64>,
    max_keys: Option<i64>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    response_headers: Option<bool>,
}

fn build(name: &str, table: toml::Value, s: &mut Section<'_>) -> Built {
    let raw: RawRateLimit = s.typed(table)?;
    let key_text = raw.key.as_deref().unwrap_or("client_ip");
    let key = LimitKey::parse(key_text)
        .map_err(|reason| s.invalid("key", key_text, reason))
        .ok();
    let rate = Rate::parse(&raw.rate)
        .map_err(|reason| s.invalid("rate", &raw.rate, reason))
        .ok();
    let burst = s
        .positive("burst", raw.burst, i64::from(u32::MAX))
        .and_then(|b| NonZeroU32::new(b as u32));
    let max_keys = s.positive("max_keys", raw.max_keys, MAX_KEYS_LIMIT);
    let trusted = s.nets("trusted_proxies", &raw.trusted_proxies);
    let (Some(key), Some(rate)) = (key, rate) else {
        return None;
    };
    if s.failed() {
        return None;
    }
    let mut cfg = RateLimitConfig::new(key, rate);
    cfg.burst = burst;
    if let Some(m) = max_keys {
        cfg.max_keys = m as usize;
    }
    cfg.trusted_proxies = TrustedProxies::new(trusted);
    cfg.response_headers = raw.response_headers.unwrap_or(true);
    Some(Arc::new(RateLimitPlugin::new(name, cfg)))
}
