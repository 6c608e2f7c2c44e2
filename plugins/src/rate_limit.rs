//! The `rate_limit` plugin: per-key request rate limiting with GCRA (the `governor` crate).
//!
//! ```toml
//! [plugins.per-user]
//! kind = "rate_limit"
//! key = "jwt:sub"          # client_ip | header:NAME | jwt:CLAIM | api_key   (default client_ip)
//! rate = "100/min"         # COUNT/UNIT, UNIT = s | min | h | d (also sec, second, m, minute, hour, day)
//! burst = 20               # default: COUNT (the whole per-period quota may be spent at once)
//! max_keys = 1000000       # default 1,000,000 (~37 MB at most)
//! trusted_proxies = ["10.0.0.0/8"]   # for the client IP, see `client_ip`
//! response_headers = true  # RateLimit headers on allowed responses too (default true)
//! ```
//!
//! **Algorithm.** GCRA (a virtual-scheduling token bucket): one request "costs" the emission
//! interval `T = period / COUNT`; a key may run ahead of its schedule by `(burst - 1) · T`. So
//! `rate = "100/min", burst = 20` admits 20 requests at once, then one every 600 ms. Each key's
//! state is one `AtomicU64` (its theoretical arrival time) updated with a CAS: no lock on the
//! request path besides the sharded map's shard read-lock.
//!
//! **Keys.** The key's value is hashed with a per-plugin random SipHash key into 64 bits (two
//! distinct keys share a bucket with probability ~n²/2⁶⁵, negligible; an attacker cannot aim for
//! a collision). `header:NAME` uses the first value of the header; `jwt:CLAIM` the claim stored by
//! the `jwt` plugin earlier in the chain (`jwt:sub` the subject); `api_key` the API key an
//! authentication plugin stored, else the `X-API-Key` header. When the value is missing (no
//! header, no token), the request is limited by its **client IP** instead, so anonymous traffic
//! is never unlimited. Requests whose peer address is unknown share one bucket.
//!
//! **Answer when limited.** `429`, code `RATE_LIMITED`, with `Retry-After` (whole seconds until
//! the next request is admitted, rounded up, at least 1) and the
//! draft-ietf-httpapi-ratelimit-headers-09 fields
//! `RateLimit-Policy: "NAME";q=COUNT;w=PERIOD_SECONDS` and
//! `RateLimit: "NAME";r=0;t=RETRY_AFTER`. With `response_headers = true` allowed responses carry
//! the same two fields with `r` = requests still admitted right now and `t` = seconds until the
//! key's bucket is full again (costs one small allocation per request).
//!
//! **Bounded memory.** At most `max_keys` keys have their own state (`rate_store.rs`):
//! beyond that, new keys share one overflow bucket with the same quota. Idle keys (whose bucket
//! is full again, i.e. indistinguishable from a fresh key) are dropped by
//! [`RateLimitPlugin::maintenance`], which the gateway calls on a timer; when the store is full
//! the request that notices runs it itself at most once every 10 s. Memory at 1,000,000 keys:
//! 31 bytes per key by the store's own count, 37 by the process RSS delta (`benches/plugins.rs`).

pub(crate) mod config;

use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::client_ip::TrustedProxies;
use crate::rate_store::BoundedStore;
use crate::{Plugin, Reject, RequestView};

/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers-09).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-09).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `X-API-Key`, read by `key = "api_key"` when no plugin stored an API key.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// Default for `max_keys`.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;
/// Minimum time between two maintenance runs triggered by a full store.
const AUTO_MAINTENANCE_EVERY: Duration = Duration::from_secs(10);

/// What identifies a client for the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The resolved client IP (`client_ip`).
    ClientIp,
    /// The first value of a request header (`header:NAME`).
    Header(HeaderName),
    /// A claim of the verified JWT (`jwt:CLAIM`).
    JwtClaim(String),
    /// The authenticated API key, else `X-API-Key` (`api_key`).
    ApiKey,
}

impl LimitKey {
    /// Parses `client_ip`, `header:NAME`, `jwt:CLAIM` or `api_key`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "client_ip" => Ok(LimitKey::ClientIp),
            None if s == "api_key" => Ok(LimitKey::ApiKey),
            Some(("header", name)) => HeaderName::from_bytes(name.as_bytes())
                .map(LimitKey::Header)
                .map_err(|_| format!("{name:?} is not a valid header name")),
            Some(("jwt", claim)) if !claim.is_empty() => Ok(LimitKey::JwtClaim(claim.to_string())),
            _ => Err("expected client_ip, header:NAME, jwt:CLAIM or api_key".into()),
        }
    }
}

/// A quota: `count` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: NonZeroU32,
    period: Duration,
}

impl Rate {
    /// `count` requests per `period` (`None` when `period` is zero).
    pub fn new(count: NonZeroU32, period: Duration) -> Option<Self> {
        (!period.is_zero()).then_some(Rate { count, period })
    }

    /// Parses `COUNT/UNIT`: `100/min`, `10/s`, `5000/h`, `1/d` (see the module doc for units).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (count, unit) = s
            .split_once('/')
            .ok_or("expected COUNT/UNIT, e.g. 100/min, 10/s or 5000/h")?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("{:?} is not a whole number of requests", count.trim()))?;
        let count = NonZeroU32::new(count).ok_or("the count must be at least 1")?;
        let secs = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            u => return Err(format!("unknown unit {u:?}: use s, min, h or d")),
        };
        Ok(Rate {
            count,
            period: Duration::from_secs(secs),
        })
    }

    /// Requests per period.
    pub fn count(&self) -> NonZeroU32 {
        self.count
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }
}

/// Typed parameters of a `rate_limit` plugin.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// What identifies a client.
    pub key: LimitKey,
    /// The quota.
    pub rate: Rate,
    /// Requests admitted at once; `None` = the rate's count.
    pub burst: Option<NonZeroU32>,
    /// Keys with their own state before new keys share the overflow bucket.
    pub max_keys: usize,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Add `RateLimit` / `RateLimit-Policy` to allowed responses too.
    pub response_headers: bool,
}

impl RateLimitConfig {
    /// Defaults for everything but the key and the rate.
    pub fn new(key: LimitKey, rate: Rate) -> Self {
        RateLimitConfig {
            key,
            rate,
            burst: None,
            max_keys: DEFAULT_MAX_KEYS,
            trusted_proxies: TrustedProxies::default(),
            response_headers: true,
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted.
    Allowed {
        /// Requests this key may still make right now.
        remaining: u32,
        /// Time until the key's bucket is full again.
        reset: Duration,
    },
    /// Over the limit.
    Limited {
        /// Time until the next request would be admitted.
        retry_after: Duration,
    },
}

type Limiter<C> = RateLimiter<u64, BoundedStore, C, StateInformationMiddleware>;

/// The `rate_limit` plugin (see the module doc). `C` is the clock; tests inject a fake one.
pub struct RateLimitPlugin<C: Clock = DefaultClock> {
    name: String,
    key: LimitKey,
    limiter: Limiter<C>,
    store: BoundedStore,
    hasher: RandomState,
    trusted: TrustedProxies,
    /// `"NAME"` as an sf-string, for the `RateLimit` field.
    policy_name: String,
    policy: HeaderValue,
    interval: Duration,
    burst: u32,
    response_headers: bool,
    start: C::Instant,
    last_maintenance_ns: AtomicU64,
}

impl<C: Clock> std::fmt::Debug for RateLimitPlugin<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitPlugin")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("policy", &self.policy)
            .field("keys", &self.store.key_count())
            .finish_non_exhaustive()
    }
}

impl RateLimitPlugin<DefaultClock> {
    /// Creates the plugin named `name` on the monotonic clock.
    pub fn new(name: impl Into<String>, config: RateLimitConfig) -> Self {
        Self::with_clock(name, config, DefaultClock::default())
    }
}

impl<C: Clock> RateLimitPlugin<C> {
    /// Creates the plugin named `name` on `clock`.
    pub fn with_clock(name: impl Into<String>, config: RateLimitConfig, clock: C) -> Self {
        let name = name.into();
        let count = config.rate.count;
        let burst = config.burst.unwrap_or(count);
        let interval = (config.rate.period / count.get()).max(Duration::from_nanos(1));
        // `with_period` only fails on a zero interval, excluded above.
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(count))
            .allow_burst(burst);
        let store = BoundedStore::new(config.max_keys);
        let start = clock.now();
        let limiter: Limiter<C> = RateLimiter::new(quota, store.clone(), clock);
        let policy_name = sf_string(&name);
        let policy = format!(
            "{policy_name};q={};w={}",
            count,
            config.rate.period.as_secs().max(1)
        );
        RateLimitPlugin {
            key: config.key,
            limiter,
            store,
            hasher: RandomState::new(),
            trusted: config.trusted_proxies,
            // The sf-string escaping leaves only visible ASCII.
            policy: HeaderValue::try_from(policy)
                .unwrap_or_else(|_| HeaderValue::from_static("\"rate_limit\"")),
            policy_name,
            interval,
            burst: burst.get(),
            response_headers: config.response_headers,
            start,
            last_maintenance_ns: AtomicU64::new(0),
            name,
        }
    }

    /// The 64-bit key of a request (see the module doc for the fallbacks).
    pub fn key_of(&self, req: &RequestView<'_>) -> u64 {
        let h = |tag: u8, v: &[u8]| self.hash(tag, v);
        let own = match &self.key {
            LimitKey::ClientIp => None,
            LimitKey::Header(name) => req.headers.get(name).map(|v| h(1, v.as_bytes())),
            LimitKey::JwtClaim(claim) => match (&req.ctx.subject, &req.ctx.claims) {
                (Some(sub), _) if claim == "sub" => Some(h(2, sub.as_bytes())),
                (_, Some(claims)) => claims.get_str(claim).map(|v| h(2, v.as_bytes())),
                _ => None,
            },
            LimitKey::ApiKey => match &req.ctx.api_key {
                Some(k) => Some(h(3, k.as_bytes())),
                None => req.headers.get(&X_API_KEY).map(|v| h(3, v.as_bytes())),
            },
        };
        own.unwrap_or_else(|| self.ip_key(self.trusted.resolve(req.client_ip, req.headers)))
    }

    fn ip_key(&self, ip: Option<IpAddr>) -> u64 {
        match ip {
            Some(IpAddr::V4(v4)) => self.hash(4, &v4.octets()),
            Some(IpAddr::V6(v6)) => self.hash(6, &v6.octets()),
            None => self.hash(0, &[]),
        }
    }

    /// SipHash of `tag` then `value`, in two writes (cheaper than hashing a tuple).
    fn hash(&self, tag: u8, value: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u8(tag);
        h.write(value);
        h.finish()
    }

    /// Counts one request against `key` (from [`RateLimitPlugin::key_of`]).
    pub fn check(&self, key: u64) -> Decision {
        match self.limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = self.burst.saturating_sub(remaining);
                Decision::Allowed {
                    remaining,
                    reset: self.interval.saturating_mul(used),
                }
            }
            Err(not_until) => Decision::Limited {
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            },
        }
    }

    /// Drops idle keys (those whose bucket is full again) and recounts the store.
    pub fn maintenance(&self) {
        self.limiter.retain_recent();
        self.last_maintenance_ns
            .store(self.elapsed_ns().max(1), Ordering::Relaxed);
    }

    /// Keys that currently have their own state.
    pub fn key_count(&self) -> usize {
        self.store.key_count()
    }

    /// Checks that were measured against the shared overflow bucket because the store was full.
    pub fn overflowed(&self) -> u64 {
        self.store.overflowed()
    }

    /// Approximate heap bytes of the key store (buckets × bucket size).
    pub fn approx_memory_bytes(&self) -> usize {
        self.store.approx_bytes()
    }

    fn elapsed_ns(&self) -> u64 {
        self.limiter
            .clock()
            .now()
            .duration_since(self.start)
            .as_u64()
    }

    /// Runs maintenance from the request path when the store is full, at most once per
    /// [`AUTO_MAINTENANCE_EVERY`] (one thread wins the compare-exchange).
    fn auto_maintenance(&self) {
        let now = self.elapsed_ns().max(1);
        let last = self.last_maintenance_ns.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= AUTO_MAINTENANCE_EVERY.as_nanos() as u64;
        if due
            && self
                .last_maintenance_ns
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.limiter.retain_recent();
        }
    }

    /// `"NAME";r=REMAINING;t=RESET`, built without the formatting machinery (hot path).
    fn rate_limit_value(&self, remaining: u32, reset_secs: u64) -> Option<HeaderValue> {
        let mut v = Vec::with_capacity(self.policy_name.len() + 28);
        v.extend_from_slice(self.policy_name.as_bytes());
        v.extend_from_slice(b";r=");
        push_decimal(&mut v, u64::from(remaining));
        v.extend_from_slice(b";t=");
        push_decimal(&mut v, reset_secs);
        HeaderValue::try_from(v).ok()
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `name` as a structured-field string: quoted, `"` and `\` escaped, other characters outside
/// visible ASCII replaced by `_`.
fn sf_string(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
    out
}

impl<C> Plugin for RateLimitPlugin<C>
where
    C: Clock + Send + Sync,
    C::Instant: Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn on_request(&self, req: &mut RequestView<'_>) -> Result<(), Reject> {
        if self.store.is_full() {
            self.auto_maintenance();
        }
        match self.check(self.key_of(req)) {
            Decision::Allowed { remaining, reset } => {
                if self.response_headers {
                    if let Some(v) = self.rate_limit_value(remaining, ceil_secs(reset)) {
                        let queue = &mut req.ctx.response_headers;
                        queue.push((RATELIMIT_POLICY, self.policy.clone()));
                        queue.push((RATELIMIT, v));
                    }
                }
                Ok(())
            }
            Decision::Limited { retry_after } => {
                let secs = ceil_secs(retry_after).max(1);
                let mut reject = Reject::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    format!("rate limit {:?} exceeded; retry in {secs} s", self.name),
                )
                .with_header(http::header::RETRY_AFTER, HeaderValue::from(secs))
                .with_header(RATELIMIT_POLICY, self.policy.clone());
                if let Some(v) = self.rate_limit_value(0, secs) {
                    reject = reject.with_header(RATELIMIT, v);
                }
                Err(reject)
            }
        }
    }

    fn maintenance(&self) {
        RateLimitPlugin::maintenance(self);
    }
}

#[cfg(test)]
mod tests;
