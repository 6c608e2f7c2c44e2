//! End-to-end tests of the `jwt` plugin through the gateway binary (HS256 secret from the
//! process environment, RS256 from a JWKS file), over HTTP/1.1 and h2c, and its interplay with
//! `rate_limit` (`jwt:sub` keys, plugin order).

mod common;
mod plugin_support;

use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use common::*;
use plugin_support::*;
use testkit::client::H2Client;
use testkit::EchoServer;

/// Routes: `/alt/` (tokens also from cookie `session` and query `token`), `/rs/` (RS256 from
/// the test JWKS), everything else `/` (Authorization header only).
fn auth_body(echo: &EchoServer) -> String {
    let jwks = testdata("jwks.json");
    body_with(
        echo,
        &format!(
            "{}{}{}{}{}{}",
            plugin_route("alt", "/alt/", &["auth_alt"]),
            plugin_route("rs", "/rs/", &["auth_rs"]),
            plugin_route("api", "/", &["auth"]),
            jwt_plugin("auth", ""),
            jwt_plugin("auth_alt", "cookie = \"session\"\nquery = \"token\""),
            plugin(
                "auth_rs",
                "jwt",
                &format!(
                    "algorithms = [\"RS256\"]\njwks_file = \"{jwks}\"\nissuer = \"{ISSUER}\"\n\
                     audience = \"{AUDIENCE}\"\nforward = {{ sub = \"x-user-id\" }}"
                )
            ),
        ),
    )
}

/// The headers the echo upstream saw, from its JSON answer.
async fn upstream_headers(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 200, "expected the upstream's answer");
    let body: Value = resp.json().await.expect("echo JSON");
    body["headers"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_reaches_upstream_with_forwarded_sub_and_no_spoofed_copy() {
    let echo = EchoServer::start("jwt").await.expect("echo");
    let gw = start_with(auth_body(&echo)).await;
    let client = http_client();

    let resp = client
        .get(gw.http_url("/me"))
        .bearer_auth(token_for("alice"))
        .send()
        .await
        .expect("send");
    let seen = upstream_headers(resp).await;
    assert_eq!(seen["x-user-id"], "alice", "upstream headers: {seen}");

    // A client-sent x-user-id is replaced, not joined.
    let resp = client
        .get(gw.http_url("/me"))
        .bearer_auth(token_for("alice"))
        .header("x-user-id", "mallory")
        .send()
        .await
        .expect("send");
    let seen = upstream_headers(resp).await;
    assert_eq!(seen["x-user-id"], "alice", "upstream headers: {seen}");

    // A valid token without `sub`: the spoofed header is removed and nothing replaces it.
    let mut claims = claims_for("x");
    claims.as_object_mut().expect("object").remove("sub");
    let resp = client
        .get(gw.http_url("/me"))
        .bearer_auth(hs256(&claims))
        .header("x-user-id", "mallory")
        .send()
        .await
        .expect("send");
    let seen = upstream_headers(resp).await;
    assert!(
        seen.get("x-user-id").is_none(),
        "spoofed x-user-id reached the upstream: {seen}"
    );

    // Lower-case scheme is accepted (RFC 7235: case-insensitive).
    let resp = client
        .get(gw.http_url("/me"))
        .header("authorization", format!("bearer {}", token_for("carol")))
        .send()
        .await
        .expect("send");
    let seen = upstream_headers(resp).await;
    assert_eq!(seen["x-user-id"], "carol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_tokens_get_401_invalid_token_and_never_reach_upstream() {
    let echo = EchoServer::start("jwt").await.expect("echo");
    let gw = start_with(auth_body(&echo)).await;
    let client = http_client();
    let now = now();
    let with = |patch: Value| {
        let mut c = claims_for("alice");
        for (k, v) in patch.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    let cases: Vec<(&str, String)> = vec![
        ("expired", hs256(&with(json!({ "exp": now - 3600 })))),
        (
            "not yet valid",
            hs256(&with(json!({ "nbf": now + 3600, "exp": now + 7200 }))),
        ),
        (
            "wrong signature",
            hs256_with(
                b"another-secret-of-at-least-32-bytes!!",
                &claims_for("alice"),
            ),
        ),
        ("alg none", alg_none(&claims_for("alice"))),
        (
            "wrong audience",
            hs256(&with(json!({ "aud": "someone-else" }))),
        ),
        (
            "wrong issuer",
            hs256(&with(json!({ "iss": "https://evil.test" }))),
        ),
        (
            "algorithm not allowed (HS512)",
            hmac_token(Algorithm::HS512, &claims_for("alice")),
        ),
        ("RS256 on an HS256-only route", rs256(&claims_for("alice"))),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (label, token) in cases {
        let resp = client
            .get(gw.http_url("/me"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("send");
        let challenge = assert_unauthorized(resp, label).await;
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{label}: challenge {challenge:?}"
        );
    }
    assert_eq!(echo.count(), 0, "a rejected request reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_gets_401_with_a_bare_bearer_challenge() {
    let echo = EchoServer::start("jwt").await.expect("echo");
    let gw = start_with(auth_body(&echo)).await;
    let client = http_client();
    let resp = client.get(gw.http_url("/me")).send().await.expect("send");
    let challenge = assert_unauthorized(resp, "no token").await;
    assert!(
        !challenge.contains("error="),
        "a missing token is not an invalid one (RFC 6750 §3.1): {challenge:?}"
    );
    let resp = client
        .get(gw.http_url("/me"))
        .basic_auth("alice", Some("pw"))
        .send()
        .await
        .expect("send");
    assert_unauthorized(resp, "Basic credentials").await;
    assert_eq!(echo.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_query_or_cookie_only_where_configured() {
    let echo = EchoServer::start("jwt").await.expect("echo");
    let gw = start_with(auth_body(&echo)).await;
    let client = http_client();
    let token = token_for("dave");

    let resp = client
        .get(gw.http_url(&format!("/alt/q?a=1&token={token}")))
        .send()
        .await
        .expect("send");
    assert_eq!(upstream_headers(resp).await["x-user-id"], "dave", "?token=");

    let resp = client
        .get(gw.http_url("/alt/c"))
        .header("cookie", format!("theme=dark; session={token}"))
        .send()
        .await
        .expect("send");
    assert_eq!(upstream_headers(resp).await["x-user-id"], "dave", "cookie");

    let resp = client
        .get(gw.http_url("/alt/q?token=not.a.jwt"))
        .send()
        .await
        .expect("send");
    assert_unauthorized(resp, "bad ?token=").await;

    let expired =
        hs256(&json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "dave", "exp": now() - 3600 }));
    let resp = client
        .get(gw.http_url("/alt/c"))
        .header("cookie", format!("session={expired}"))
        .send()
        .await
        .expect("send");
    assert_unauthorized(resp, "expired cookie").await;

    // The `/` route configures neither source.
    let resp = client
        .get(gw.http_url(&format!("/q?token={token}")))
        .send()
        .await
        .expect("send");
    assert_unauthorized(resp, "?token= where not configured").await;
    let resp = client
        .get(gw.http_url("/c"))
        .header("cookie", format!("session={token}"))
        .send()
        .await
        .expect("send");
    assert_unauthorized(resp, "cookie where not configured").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_from_jwks_file_and_no_algorithm_confusion() {
    let echo = EchoServer::start("jwt").await.expect("echo");
    let gw = start_with(auth_body(&echo)).await;
    let client = http_client();
    let resp = client
        .get(gw.http_url("/rs/me"))
        .bearer_auth(rs256(&claims_for("erin")))
        .send()
        .await
        .expect("send");
    assert_eq!(upstream_headers(resp).await["x-user-id"], "erin");

    // HS256 "signed" with the RSA public key as HMAC secret must not pass an RS256 route.
    let public_pem = std::fs::read(testdata("rsa_public.pem")).expect("rsa_public.pem");
    let forged = hs256_with(&public_pem, &claims_for("erin"));
    let resp = client
        .get(gw.http_url("/rs/me"))
        .bearer_auth(forged)
        .send()
        .await
        .expect("send");
    assert_unauthorized(resp, "HS256 signed with the RSA public key").await;
}

fn h2_get(h2: &H2Client, path: &str, headers: &[(&str, String)]) -> http::Request<Full<Bytes>> {
    let mut b = h2.request(http::Method::GET, path);
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.body(Full::new(Bytes::new())).expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_requests_are_authenticated_the_same_way() {
    let echo = EchoServer::start("jwt").await.expect("echo");
    let gw = start_with(auth_body(&echo)).await;
    let mut h2 = H2Client::connect_h2c(gw.http_addr())
        .await
        .expect("h2c connect");

    let req = h2_get(
        &h2,
        "/me",
        &[
            ("authorization", format!("Bearer {}", token_for("frank"))),
            ("x-user-id", "mallory".to_string()),
        ],
    );
    let resp = h2.send_full(req).await.expect("h2 send");
    assert_eq!(resp.status, 200, "body: {:?}", resp.body);
    assert_eq!(resp.version, http::Version::HTTP_2);
    let seen = resp.json().expect("echo JSON");
    assert_eq!(seen["headers"]["x-user-id"], "frank", "{seen}");

    let check_401 = |resp: &testkit::client::FullResponse, label: &str, invalid: bool| {
        assert_eq!(resp.status, 401, "{label}");
        let challenge = resp
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("{label}: no WWW-Authenticate"));
        assert!(challenge.starts_with("Bearer"), "{label}: {challenge:?}");
        assert_eq!(
            challenge.contains("error=\"invalid_token\""),
            invalid,
            "{label}: {challenge:?}"
        );
        let body = resp.json().expect("JSON error body");
        assert_eq!(body["error"]["code"], "AUTH_001", "{label}: {body}");
        assert_eq!(
            body["error"]["request_id"].as_str(),
            resp.header("x-request-id"),
            "{label}: {body}"
        );
    };

    let resp = h2.send_full(h2_get(&h2, "/me", &[])).await.expect("send");
    check_401(&resp, "h2c without a token", false);

    let expired =
        hs256(&json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "frank", "exp": now() - 3600 }));
    let req = h2_get(
        &h2,
        "/me",
        &[("authorization", format!("Bearer {expired}"))],
    );
    let resp = h2.send_full(req).await.expect("send");
    check_401(&resp, "h2c expired", true);

    let req = h2_get(
        &h2,
        "/me",
        &[(
            "authorization",
            format!("Bearer {}", alg_none(&claims_for("frank"))),
        )],
    );
    let resp = h2.send_full(req).await.expect("send");
    check_401(&resp, "h2c alg none", true);

    // The connection is still usable after rejections.
    let req = h2_get(&h2, &format!("/alt/x?token={}", token_for("gina")), &[]);
    let resp = h2.send_full(req).await.expect("send");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json().expect("JSON")["headers"]["x-user-id"], "gina");
    assert_eq!(
        echo.count(),
        2,
        "exactly the two valid requests reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_by_jwt_sub_limits_subjects_independently() {
    let echo = EchoServer::start("jwt").await.expect("echo");
    let body = body_with(
        &echo,
        &format!(
            "{}{}{}",
            plugin_route("api", "/", &["auth", "per_user"]),
            jwt_plugin("auth", ""),
            rate_limit_plugin("per_user", "jwt:sub", "2/min", ""),
        ),
    );
    let gw = start_with(body).await;
    let client = http_client();
    let (alice, bob) = (token_for("alice"), token_for("bob"));
    let get = |t: &str| client.get(gw.http_url("/u")).bearer_auth(t.to_string());

    assert_eq!(statuses(2, || get(&alice)).await, vec![200, 200]);
    assert_limited(get(&alice).send().await.expect("send"), "per_user", 2, 60).await;
    // Same client IP, another subject: its own bucket.
    assert_eq!(statuses(2, || get(&bob)).await, vec![200, 200]);
    assert_limited(get(&bob).send().await.expect("send"), "per_user", 2, 60).await;
    // A fresh token for alice (different bytes, same sub) is still limited.
    let alice2 =
        hs256(&json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now() + 900 }));
    assert_limited(get(&alice2).send().await.expect("send"), "per_user", 2, 60).await;
}

/// `/auth-first/` runs `["auth", "rl_a"]`, `/rl-first/` runs `["rl_b", "auth"]`; both limits
/// are per client IP, 3 per minute.
fn order_body(echo: &EchoServer) -> String {
    body_with(
        echo,
        &format!(
            "{}{}{}{}{}",
            plugin_route("auth_first", "/auth-first/", &["auth", "rl_a"]),
            plugin_route("rl_first", "/rl-first/", &["rl_b", "auth"]),
            jwt_plugin("auth", ""),
            rate_limit_plugin("rl_a", "client_ip", "3/min", ""),
            rate_limit_plugin("rl_b", "client_ip", "3/min", ""),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_before_rate_limit_unauthenticated_flood_does_not_use_the_bucket() {
    let echo = EchoServer::start("jwt").await.expect("echo");
    let gw = start_with(order_body(&echo)).await;
    let client = http_client();
    let flood = statuses(10, || client.get(gw.http_url("/auth-first/x"))).await;
    assert_eq!(flood, vec![401; 10], "unauthenticated flood");
    let token = token_for("alice");
    let ok = statuses(3, || {
        client.get(gw.http_url("/auth-first/x")).bearer_auth(&token)
    })
    .await;
    assert_eq!(
        ok,
        vec![200; 3],
        "the valid token's full burst after the flood"
    );
    let resp = client
        .get(gw.http_url("/auth-first/x"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_limited(resp, "rl_a", 3, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_before_auth_unauthenticated_flood_uses_the_bucket() {
    let echo = EchoServer::start("jwt").await.expect("echo");
    let gw = start_with(order_body(&echo)).await;
    let client = http_client();
    let flood = statuses(10, || client.get(gw.http_url("/rl-first/x"))).await;
    let mut expected = vec![401; 3];
    expected.extend([429; 7]);
    assert_eq!(flood, expected, "unauthenticated flood");
    let resp = client
        .get(gw.http_url("/rl-first/x"))
        .bearer_auth(token_for("alice"))
        .send()
        .await
        .expect("send");
    assert_limited(resp, "rl_b", 3, 60).await;
    assert_eq!(echo.count(), 0);
}

/// A gateway whose `auth` plugin reads its HMAC secret from `secret_path`, with an admin
/// listener; `extra_route` adds an unrelated route.
fn secret_file_body(echo: &EchoServer, secret_path: &str, extra_route: bool) -> String {
    let mut rest = String::new();
    if extra_route {
        rest.push_str(&route("other", "path_prefix = \"/other/\"", "echo", ""));
    }
    rest.push_str(&plugin_route("api", "/", &["auth"]));
    rest.push_str(&plugin(
        "auth",
        "jwt",
        &format!(
            "algorithms = [\"HS256\"]\nsecret_file = \"{secret_path}\"\nforward = {{ sub = \"x-user-id\" }}"
        ),
    ));
    body_with(echo, &rest)
}

const OLD_SECRET: &str = "old-secret-0123456789abcdef0123456789abcdef";
const NEW_SECRET: &str = "new-secret-fedcba9876543210fedcba9876543210";

/// Claims without `iss` / `aud` (the secret-file plugin requires neither).
fn plain_claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": now() + 600 })
}

/// A gateway (with an admin listener) whose `jwt` plugin reads its HS256 secret from a file
/// that holds [`OLD_SECRET`] at start.
struct SecretFileGateway {
    echo: EchoServer,
    _keys: tempfile::TempDir,
    secret_path: std::path::PathBuf,
    gw: testkit::GatewayProcess,
    admin: common::admin::Admin,
    client: reqwest::Client,
}

impl SecretFileGateway {
    async fn start() -> Self {
        let echo = EchoServer::start("jwt").await.expect("echo");
        let keys = tempfile::tempdir().expect("tempdir");
        let secret_path = keys.path().join("jwt.key");
        std::fs::write(&secret_path, format!("{OLD_SECRET}\n")).expect("write secret");
        let body = secret_file_body(&echo, &secret_path.display().to_string(), false);
        let gw = start_with_admin(body).await;
        let admin = common::admin::Admin::new(&gw);
        Self {
            echo,
            _keys: keys,
            secret_path,
            gw,
            admin,
            client: http_client(),
        }
    }

    /// The config body again, with an unrelated route when `extra_route`.
    fn body(&self, extra_route: bool) -> String {
        let path = self.secret_path.display().to_string();
        secret_file_body(&self.echo, &path, extra_route)
    }

    /// Replaces the key file's secret with [`NEW_SECRET`], as an operator rotating it.
    fn rotate(&self) {
        std::fs::write(&self.secret_path, format!("{NEW_SECRET}\n")).expect("rotate secret");
    }

    /// The status of `GET /me` with a token for `alice` signed with `secret`.
    async fn status_signed_with(&self, secret: &str) -> u16 {
        let token = hs256_with(secret.as_bytes(), &plain_claims("alice"));
        self.client
            .get(self.gw.http_url("/me"))
            .bearer_auth(token)
            .send()
            .await
            .expect("send")
            .status()
            .as_u16()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_secret_file_is_picked_up_by_a_reload_that_changes_the_config() {
    let fx = SecretFileGateway::start().await;
    assert_eq!(fx.status_signed_with(OLD_SECRET).await, 200);
    assert_eq!(fx.status_signed_with(NEW_SECRET).await, 401);

    fx.rotate();
    fx.admin.apply(&fx.gw.config_text(&fx.body(true))).await;
    assert_eq!(
        fx.status_signed_with(NEW_SECRET).await,
        200,
        "token signed with the rotated secret after a reload"
    );
    assert_eq!(
        fx.status_signed_with(OLD_SECRET).await,
        401,
        "token signed with the retired secret after a reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_secret_file_is_picked_up_by_reload_of_an_unchanged_config_file() {
    let fx = SecretFileGateway::start().await;
    assert_eq!(fx.status_signed_with(OLD_SECRET).await, 200);

    // Key rotation as an operator does it: replace the key file, ask for a reload. The
    // config file itself did not change (plugins/src/jwt.rs: "a reload picks up a new secret
    // or JWKS file"; config/src/plugin_specs.rs: "a reload reads them again").
    fx.rotate();
    let answer = fx.admin.reload().await;
    assert_eq!(answer.status, 200, "POST /admin/reload: {}", answer.text);
    assert_eq!(
        fx.status_signed_with(NEW_SECRET).await,
        200,
        "token signed with the rotated secret after POST /admin/reload (answer: {})",
        answer.text
    );
    assert_eq!(
        fx.status_signed_with(OLD_SECRET).await,
        401,
        "token signed with the retired secret after POST /admin/reload"
    );
}
