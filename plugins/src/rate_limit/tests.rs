use super::*;
use crate::client_ip::parse_net;
use crate::{Chain, PluginCtx};
use governor::clock::FakeRelativeClock;
use http::{HeaderMap, Method};
use std::sync::Arc;

fn plugin(rate: &str, burst: Option<u32>, key: LimitKey) -> RateLimitPlugin<FakeRelativeClock> {
    let mut cfg = RateLimitConfig::new(key, Rate::parse(rate).expect("rate"));
    cfg.burst = burst.and_then(NonZeroU32::new);
    RateLimitPlugin::with_clock("api", cfg, FakeRelativeClock::default())
}

fn run(
    p: &dyn Plugin,
    ip: &str,
    headers: &mut HeaderMap,
    ctx: &mut PluginCtx,
) -> Result<(), Reject> {
    p.on_request(&mut RequestView {
        method: &Method::GET,
        path: "/",
        headers,
        client_ip: Some(ip.parse().expect("ip")),
        ctx,
    })
}

fn hdr<'a>(r: &'a Reject, name: &str) -> &'a str {
    r.headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.to_str().ok())
        .unwrap_or_else(|| panic!("missing {name}"))
}

#[test]
fn parses_rates_and_keys() {
    let r = Rate::parse("100/min").expect("rate");
    assert_eq!(
        (r.count().get(), r.period()),
        (100, Duration::from_secs(60))
    );
    assert_eq!(
        Rate::parse("10/s").expect("rate").period(),
        Duration::from_secs(1)
    );
    assert_eq!(
        Rate::parse("5000/h").expect("rate").period(),
        Duration::from_secs(3600)
    );
    for bad in ["100", "0/s", "x/s", "10/fortnight", "-1/s"] {
        assert!(Rate::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(LimitKey::parse("client_ip"), Ok(LimitKey::ClientIp));
    assert_eq!(
        LimitKey::parse("jwt:sub"),
        Ok(LimitKey::JwtClaim("sub".into()))
    );
    assert!(matches!(
        LimitKey::parse("header:x-user"),
        Ok(LimitKey::Header(_))
    ));
    assert!(LimitKey::parse("header:bad name").is_err());
    assert!(LimitKey::parse("cookie:x").is_err());
    assert!(LimitKey::parse("jwt:").is_err());
}

#[test]
fn burst_then_429_with_headers() {
    let p = plugin("60/min", Some(3), LimitKey::ClientIp);
    let chain = Chain::new(vec![Arc::new(p)]);
    let mut h = HeaderMap::new();
    for i in 0..3 {
        let mut ctx = PluginCtx::default();
        chain
            .on_request(&mut RequestView {
                method: &Method::GET,
                path: "/",
                headers: &mut h,
                client_ip: Some("198.51.100.1".parse().expect("ip")),
                ctx: &mut ctx,
            })
            .expect("within burst");
        // Success headers are queued and applied on the response.
        let mut resp = HeaderMap::new();
        chain.on_response(StatusCode::OK, &mut resp, &ctx);
        assert_eq!(resp["ratelimit-policy"], "\"api\";q=60;w=60");
        assert_eq!(
            resp["ratelimit"].to_str().expect("ascii"),
            format!("\"api\";r={};t={}", 2 - i, i + 1)
        );
    }
    let mut ctx = PluginCtx::default();
    let r = chain
        .on_request(&mut RequestView {
            method: &Method::GET,
            path: "/",
            headers: &mut h,
            client_ip: Some("198.51.100.1".parse().expect("ip")),
            ctx: &mut ctx,
        })
        .expect_err("over the burst");
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.code, "RATE_LIMITED");
    assert!(!r.plain_answer);
    assert_eq!(hdr(&r, "retry-after"), "1");
    assert_eq!(hdr(&r, "ratelimit-policy"), "\"api\";q=60;w=60");
    assert_eq!(hdr(&r, "ratelimit"), "\"api\";r=0;t=1");
}

#[test]
fn retry_after_rounds_up_and_refills_with_time() {
    let p = plugin("100/min", Some(1), LimitKey::ClientIp); // one per 600 ms
    let mut h = HeaderMap::new();
    let mut ctx = PluginCtx::default();
    run(&p, "198.51.100.1", &mut h, &mut ctx).expect("first");
    let r = run(&p, "198.51.100.1", &mut h, &mut ctx).expect_err("second");
    assert_eq!(hdr(&r, "retry-after"), "1");
    p.limiter.clock().advance(Duration::from_millis(600));
    run(&p, "198.51.100.1", &mut h, &mut ctx).expect("refilled");

    let slow = plugin("2/h", Some(1), LimitKey::ClientIp); // one per 30 min
    run(&slow, "198.51.100.1", &mut h, &mut ctx).expect("first");
    slow.limiter.clock().advance(Duration::from_millis(500));
    let r = run(&slow, "198.51.100.1", &mut h, &mut ctx).expect_err("second");
    assert_eq!(hdr(&r, "retry-after"), "1800"); // 1799.5 s rounded up
    assert_eq!(hdr(&r, "ratelimit-policy"), "\"api\";q=2;w=3600");
}

#[test]
fn keys_are_independent() {
    let p = plugin(
        "1/min",
        None,
        LimitKey::Header(HeaderName::from_static("x-user")),
    );
    let mut a = HeaderMap::new();
    a.insert("x-user", HeaderValue::from_static("alice"));
    let mut b = HeaderMap::new();
    b.insert("x-user", HeaderValue::from_static("bob"));
    let mut ctx = PluginCtx::default();
    run(&p, "198.51.100.1", &mut a, &mut ctx).expect("alice 1");
    run(&p, "198.51.100.1", &mut b, &mut ctx).expect("bob 1, same IP");
    run(&p, "198.51.100.1", &mut a, &mut ctx).expect_err("alice 2");
    run(&p, "198.51.100.1", &mut b, &mut ctx).expect_err("bob 2");
    // No header: falls back to the client IP, a separate bucket.
    run(&p, "198.51.100.1", &mut HeaderMap::new(), &mut ctx).expect("by ip");
    run(&p, "198.51.100.2", &mut HeaderMap::new(), &mut ctx).expect("other ip");
}

#[test]
fn jwt_claim_and_api_key_keys() {
    let p = plugin("1/min", None, LimitKey::JwtClaim("sub".into()));
    let mut h = HeaderMap::new();
    let mut alice = PluginCtx {
        subject: Some("alice".into()),
        ..Default::default()
    };
    run(&p, "198.51.100.1", &mut h, &mut alice).expect("alice");
    run(&p, "198.51.100.9", &mut h, &mut alice).expect_err("alice from another IP");
    let mut bob = PluginCtx {
        subject: Some("bob".into()),
        ..Default::default()
    };
    run(&p, "198.51.100.1", &mut h, &mut bob).expect("bob");

    let p = plugin("1/min", None, LimitKey::ApiKey);
    let mut k1 = HeaderMap::new();
    k1.insert(X_API_KEY, HeaderValue::from_static("k1"));
    let mut ctx = PluginCtx::default();
    run(&p, "198.51.100.1", &mut k1, &mut ctx).expect("k1");
    run(&p, "198.51.100.2", &mut k1, &mut ctx).expect_err("k1 again");
    let mut stored = PluginCtx {
        api_key: Some("k2".into()),
        ..Default::default()
    };
    run(&p, "198.51.100.1", &mut k1, &mut stored).expect("k2 from ctx wins");
    let mut k1_ctx = PluginCtx {
        api_key: Some("k1".into()),
        ..Default::default()
    };
    run(&p, "198.51.100.1", &mut HeaderMap::new(), &mut k1_ctx)
        .expect_err("same key whether from ctx or header");
}

#[test]
fn xff_only_from_trusted_peer() {
    let mut cfg = RateLimitConfig::new(LimitKey::ClientIp, Rate::parse("1/min").expect("rate"));
    cfg.trusted_proxies = TrustedProxies::new(vec![parse_net("10.0.0.0/8").expect("net")]);
    let p = RateLimitPlugin::with_clock("api", cfg, FakeRelativeClock::default());
    let mut ctx = PluginCtx::default();
    let mut h1 = HeaderMap::new();
    h1.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.1"));
    let mut h2 = HeaderMap::new();
    h2.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.2"));
    // Untrusted peer: XFF ignored, both requests count against the peer.
    run(&p, "192.0.2.50", &mut h1, &mut ctx).expect("peer 1st");
    run(&p, "192.0.2.50", &mut h2, &mut ctx).expect_err("same peer, spoofed XFF ignored");
    // Trusted proxy: each forwarded client has its own bucket.
    run(&p, "10.0.0.1", &mut h1, &mut ctx).expect("client 1 via proxy");
    run(&p, "10.0.0.1", &mut h2, &mut ctx).expect("client 2 via proxy");
    run(&p, "10.0.0.2", &mut h1, &mut ctx).expect_err("client 1 via another proxy");
}

#[test]
fn max_keys_overflow_bucket_and_maintenance() {
    let mut cfg = RateLimitConfig::new(LimitKey::ClientIp, Rate::parse("2/s").expect("rate"));
    cfg.max_keys = 2;
    let p = RateLimitPlugin::with_clock("api", cfg, FakeRelativeClock::default());
    let mut h = HeaderMap::new();
    let mut ctx = PluginCtx::default();
    run(&p, "192.0.2.1", &mut h, &mut ctx).expect("key 1");
    run(&p, "192.0.2.2", &mut h, &mut ctx).expect("key 2");
    assert_eq!(p.key_count(), 2);
    // New keys share one overflow bucket of 2.
    run(&p, "192.0.2.3", &mut h, &mut ctx).expect("overflow 1");
    run(&p, "192.0.2.4", &mut h, &mut ctx).expect("overflow 2");
    run(&p, "192.0.2.5", &mut h, &mut ctx).expect_err("overflow exhausted");
    assert_eq!(p.key_count(), 2);
    assert_eq!(p.overflowed(), 3);
    // Existing keys keep their own budget.
    run(&p, "192.0.2.1", &mut h, &mut ctx).expect("key 1 again");
    // Once the buckets are full again, maintenance drops the idle keys.
    p.limiter.clock().advance(Duration::from_secs(2));
    p.maintenance();
    assert_eq!(p.key_count(), 0);
    run(&p, "192.0.2.5", &mut h, &mut ctx).expect("own bucket after maintenance");
    assert_eq!(p.key_count(), 1);
}

#[test]
fn sf_string_escapes() {
    assert_eq!(sf_string("a\"b\\c d"), "\"a\\\"b\\\\c d\"");
    assert_eq!(sf_string("é"), "\"_\"");
}
