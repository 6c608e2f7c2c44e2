//! Micro-benchmarks of the policy plugins, and the memory of the rate limiter's key store.
//!
//! `cargo bench -p orchestra-plugins -- --warm-up-time 1 --measurement-time 2`
//!
//! Before the criterion runs, the binary prints the memory of 1,000,000 rate-limit keys,
//! measured as the RSS delta (`/proc/self/statm`) across inserting them, and as the store's own
//! estimate (buckets × bucket size).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, BatchSize, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use jsonwebtoken::{encode, get_current_timestamp, EncodingKey, Header};
use orchestra_plugins::jwt::{Algorithm, JwtConfig, JwtPlugin};
use orchestra_plugins::rate_limit::{LimitKey, Rate, RateLimitConfig, RateLimitPlugin};
use orchestra_plugins::{Chain, HeaderRules, HeadersPlugin, Plugin, PluginCtx, RequestView};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const KEYS: usize = 1_000_000;

/// A limiter that always admits (so the benchmark measures the admitted path), or one that
/// admits `per_sec` per key.
fn limiter(key: LimitKey, per_sec: u32, max_keys: usize, headers: bool) -> RateLimitPlugin {
    let rate = Rate::new(
        NonZeroU32::new(per_sec).expect("rate"),
        Duration::from_secs(1),
    )
    .expect("rate");
    let mut cfg = RateLimitConfig::new(key, rate);
    cfg.max_keys = max_keys;
    cfg.response_headers = headers;
    RateLimitPlugin::new("bench", cfg)
}

/// Deterministic pseudo-random 64-bit keys (xorshift).
fn keys(n: usize) -> Vec<u64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn report_memory() {
    let ks = keys(KEYS);
    let before = rss_bytes();
    let p = limiter(LimitKey::ClientIp, u32::MAX, 2 * KEYS, false);
    for k in &ks {
        black_box(p.check(*k));
    }
    let after = rss_bytes();
    println!(
        "rate_limit memory for {} keys: RSS delta {:.1} MB = {:.1} bytes/key; store estimate {:.1} MB = {:.1} bytes/key",
        p.key_count(),
        (after - before) as f64 / 1e6,
        (after - before) as f64 / KEYS as f64,
        p.approx_memory_bytes() as f64 / 1e6,
        p.approx_memory_bytes() as f64 / KEYS as f64,
    );
}

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

fn view<'a>(headers: &'a mut HeaderMap, ctx: &'a mut PluginCtx) -> RequestView<'a> {
    RequestView {
        method: &Method::GET,
        path: "/api/tasks",
        headers,
        client_ip: Some(CLIENT),
        ctx,
    }
}

fn rate_limit(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate_limit");
    let one = limiter(LimitKey::ClientIp, u32::MAX, KEYS, false);
    g.bench_function("check/1_key", |b| {
        b.iter(|| black_box(one.check(black_box(42))))
    });

    // Baseline: governor's stock keyed limiter (DashMap with SipHash on the key).
    let stock = governor::RateLimiter::<u64, _, _>::dashmap(governor::Quota::per_second(
        NonZeroU32::new(u32::MAX).expect("rate"),
    ));
    g.bench_function("check/1_key_governor_stock_store", |b| {
        b.iter(|| black_box(stock.check_key(&black_box(42u64))))
    });

    let limited = limiter(LimitKey::ClientIp, 1, KEYS, false);
    limited.check(42);
    g.bench_function("check/1_key_limited", |b| {
        b.iter(|| black_box(limited.check(black_box(42))))
    });

    let many = limiter(LimitKey::ClientIp, u32::MAX, 2 * KEYS, false);
    let ks = keys(KEYS);
    for k in &ks {
        many.check(*k);
    }
    let mut i = 0;
    g.bench_function("check/1M_keys_random", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(many.check(ks[i]))
        })
    });

    let mut h = HeaderMap::new();
    g.bench_function("key_of/client_ip", |b| {
        b.iter(|| {
            let mut ctx = PluginCtx::default();
            black_box(one.key_of(&view(&mut h, &mut ctx)))
        })
    });

    for (label, headers) in [
        ("on_request/client_ip", false),
        ("on_request/client_ip+headers", true),
    ] {
        let p = limiter(LimitKey::ClientIp, u32::MAX, KEYS, headers);
        let mut h = HeaderMap::new();
        g.bench_function(label, |b| {
            b.iter(|| {
                let mut ctx = PluginCtx::default();
                black_box(p.on_request(&mut view(&mut h, &mut ctx)))
            })
        });
    }
    g.finish();
}

fn token() -> String {
    let claims = serde_json::json!({
        "sub": "user-123", "role": "admin", "tenant": "acme",
        "iss": "auth", "aud": "orchestra", "exp": get_current_timestamp() + 3600,
    });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .expect("encode")
}

fn jwt_plugin() -> JwtPlugin {
    let mut cfg = JwtConfig::new(vec![Algorithm::HS256]);
    cfg.hmac_secret = Some(SECRET.to_vec());
    cfg.issuer = vec!["auth".into()];
    cfg.audience = vec!["orchestra".into()];
    cfg.forward = vec![("sub".into(), HeaderName::from_static("x-user-id"))];
    JwtPlugin::new("auth", cfg).expect("jwt config")
}

fn jwt(c: &mut Criterion) {
    let p = jwt_plugin();
    let t = token();
    c.bench_function("jwt/verify_hs256", |b| {
        b.iter(|| black_box(p.verify(black_box(&t))))
    });
}

fn chain(c: &mut Criterion) {
    let jwt: Arc<dyn Plugin> = Arc::new(jwt_plugin());
    let limit: Arc<dyn Plugin> = Arc::new(limiter(
        LimitKey::JwtClaim("sub".into()),
        u32::MAX,
        KEYS,
        true,
    ));
    let headers: Arc<dyn Plugin> = Arc::new(HeadersPlugin::new(
        "hdrs",
        HeaderRules {
            set: vec![(
                HeaderName::from_static("x-gateway"),
                HeaderValue::from_static("orchestra"),
            )],
            ..Default::default()
        },
        HeaderRules::default(),
    ));
    let chain = Chain::new(vec![jwt, limit, headers]);
    let mut base = HeaderMap::new();
    base.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", token())).expect("header"),
    );
    base.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    c.bench_function("chain/jwt+rate_limit+headers", |b| {
        b.iter_batched(
            || base.clone(),
            |mut h| {
                let mut ctx = PluginCtx::default();
                let r = chain.on_request(&mut view(&mut h, &mut ctx));
                let mut resp = HeaderMap::new();
                chain.on_response(http::StatusCode::OK, &mut resp, &ctx);
                black_box((r, resp))
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, rate_limit, jwt, chain);

fn main() {
    report_memory();
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
