//! Helpers shared by the plugin end-to-end tests (`plugins_*.rs`): TOML snippets for plugin
//! tables and routes, HS256/RS256 token minting, and assertions on rejections.
//!
//! Include with `mod common; mod plugin_support;` (this module uses `crate::common`).
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use testkit::{EchoServer, GatewayProcess};

use crate::common::{assert_json_error, gateway, header, upstream, Plugin, Route};

/// The environment variable the `jwt` plugins of these tests read their secret from.
pub const JWT_SECRET_ENV: &str = "ORCHESTRA_E2E_JWT_SECRET";
/// The HMAC secret given to the gateway (at least 32 bytes).
pub const JWT_SECRET: &str = "e2e-secret-for-plugin-tests-0123456789abcdef";
/// `iss` the test plugins require.
pub const ISSUER: &str = "https://auth.e2e.test";
/// `aud` the test plugins require.
pub const AUDIENCE: &str = "orchestra";

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Valid claims for `sub`: issuer, audience, `iat` now, `exp` in 10 minutes.
pub fn claims_for(sub: &str) -> Value {
    let now = now();
    json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600 })
}

/// `claims` signed with HS256 and `secret`.
pub fn hs256_with(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("encode HS256")
}

/// `claims` signed with HS256 and [`JWT_SECRET`].
pub fn hs256(claims: &Value) -> String {
    hs256_with(JWT_SECRET.as_bytes(), claims)
}

/// A valid HS256 token for `sub`.
pub fn token_for(sub: &str) -> String {
    hs256(&claims_for(sub))
}

/// `claims` signed with `alg` (an HMAC algorithm) and [`JWT_SECRET`].
pub fn hmac_token(alg: Algorithm, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("encode HMAC")
}

/// `claims` signed with RS256 by the test RSA key of `plugins/testdata` (`kid = "rsa-1"`).
pub fn rs256(claims: &Value) -> String {
    let pem = std::fs::read(testdata("rsa_private.pem")).expect("rsa_private.pem");
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa-1".into());
    jsonwebtoken::encode(
        &h,
        claims,
        &EncodingKey::from_rsa_pem(&pem).expect("RSA PEM"),
    )
    .expect("encode RS256")
}

/// An unsigned token (`alg: none`, empty signature).
pub fn alg_none(claims: &Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    )
}

/// A file of `plugins/testdata`.
pub fn testdata(name: &str) -> String {
    format!("{}/../plugins/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `[plugins.NAME]` of kind `jwt`: HS256 with [`JWT_SECRET_ENV`], [`ISSUER`], [`AUDIENCE`],
/// `sub` forwarded as `x-user-id`, plus `extra` lines.
pub fn jwt_plugin(name: &str, extra: &str) -> String {
    format!(
        "[plugins.{name}]\nkind = \"jwt\"\nalgorithms = [\"HS256\"]\nsecret_env = \"{JWT_SECRET_ENV}\"\n\
         issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\nforward = {{ sub = \"x-user-id\" }}\n{extra}\n\n"
    )
}

/// `[plugins.NAME]` of kind `rate_limit` with `key`, `rate` and `extra` lines.
pub fn rate_limit_plugin(name: &str, key: &str, rate: &str, extra: &str) -> String {
    Plugin::new(name, "rate_limit")
        .set("key", key)
        .set("rate", rate)
        .line(extra)
        .to_string()
}

/// `[plugins.NAME]` with `kind` and the given lines.
pub fn plugin(name: &str, kind: &str, lines: &str) -> String {
    Plugin::new(name, kind).line(lines).to_string()
}

/// A `[[routes]]` entry on `path_prefix` to upstream `echo` running `plugins` in order.
pub fn plugin_route(name: &str, prefix: &str, plugins: &[&str]) -> String {
    Route::prefix(name, prefix, "echo")
        .plugins(plugins)
        .to_string()
}

/// The config body: upstream `echo` at `echo`'s address, then `rest` (routes, plugins).
pub fn body_with(echo: &EchoServer, rest: &str) -> String {
    format!("{}{rest}", upstream("echo", &[echo.addr()], ""))
}

/// Starts a gateway with `body` and the JWT secret in its environment.
pub async fn start_with(body: String) -> GatewayProcess {
    gateway()
        .env(JWT_SECRET_ENV, JWT_SECRET)
        .config(body)
        .start()
        .await
        .unwrap_or_else(|e| panic!("gateway starts: {e}"))
}

/// Starts a gateway with `body`, the JWT secret and an admin listener.
pub async fn start_with_admin(body: String) -> GatewayProcess {
    gateway()
        .env(JWT_SECRET_ENV, JWT_SECRET)
        .admin(true)
        .config(body)
        .start()
        .await
        .unwrap_or_else(|e| panic!("gateway starts: {e}"))
}

/// What a 429 carried.
#[derive(Debug)]
pub struct Limited {
    /// `Retry-After` in seconds.
    pub retry_after: u64,
    /// `RateLimit-Policy`.
    pub policy: String,
    /// `RateLimit`.
    pub ratelimit: String,
}

/// Asserts a `429 RATE_LIMITED` JSON error from plugin `name` with quota `q` per `w` seconds:
/// `Retry-After` a whole number of seconds in `1..=w`, `RateLimit-Policy: "name";q=Q;w=W`
/// and `RateLimit: "name";r=0;t=RETRY_AFTER`.
pub async fn assert_limited(resp: reqwest::Response, name: &str, q: u32, w: u64) -> Limited {
    let retry_after = header(&resp, "retry-after")
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", resp.headers()));
    let retry_after: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {retry_after:?} is not whole seconds"));
    assert!(
        (1..=w).contains(&retry_after),
        "Retry-After {retry_after} outside 1..={w}"
    );
    let policy = header(&resp, "ratelimit-policy").expect("RateLimit-Policy on the 429");
    assert_eq!(
        policy,
        format!("\"{name}\";q={q};w={w}"),
        "RateLimit-Policy"
    );
    let ratelimit = header(&resp, "ratelimit").expect("RateLimit on the 429");
    assert_eq!(
        ratelimit,
        format!("\"{name}\";r=0;t={retry_after}"),
        "RateLimit"
    );
    assert_json_error(resp, 429, "RATE_LIMITED").await;
    Limited {
        retry_after,
        policy,
        ratelimit,
    }
}

/// Asserts a `401 AUTH_001` JSON error with a `WWW-Authenticate: Bearer` challenge; returns
/// the challenge.
pub async fn assert_unauthorized(resp: reqwest::Response, context: &str) -> String {
    assert_eq!(resp.status().as_u16(), 401, "{context}");
    let challenge = header(&resp, "www-authenticate")
        .unwrap_or_else(|| panic!("{context}: 401 without WWW-Authenticate"));
    assert!(
        challenge.starts_with("Bearer"),
        "{context}: challenge {challenge:?}"
    );
    assert_json_error(resp, 401, "AUTH_001").await;
    challenge
}

/// Sends `GET url` with `n` clones of `req` (built by `make`) and returns the statuses.
pub async fn statuses<F>(n: usize, make: F) -> Vec<u16>
where
    F: Fn() -> reqwest::RequestBuilder,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(make().send().await.expect("send").status().as_u16());
    }
    out
}

/// Generous bound for single raw exchanges.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(15);
