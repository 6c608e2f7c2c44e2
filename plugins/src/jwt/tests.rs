use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, Method};
use jsonwebtoken::{encode, get_current_timestamp, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::{Chain, PluginCtx};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const RSA_PRIVATE: &str = include_str!("../../testdata/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../../testdata/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("../../testdata/ec_private.pem");
const JWKS: &str = include_str!("../../testdata/jwks.json");

fn now() -> i64 {
    get_current_timestamp() as i64
}

fn hs256(claims: &Value, secret: &[u8], kid: Option<&str>) -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = kid.map(str::to_owned);
    encode(&h, claims, &EncodingKey::from_secret(secret)).expect("encode")
}

fn rs256(claims: &Value, kid: Option<&str>) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("rsa key");
    encode(&h, claims, &key).expect("encode")
}

fn es256(claims: &Value, kid: Option<&str>) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("ec key");
    encode(&h, claims, &key).expect("encode")
}

fn claims() -> Value {
    json!({"sub": "user-1", "role": "admin", "exp": now() + 600, "iss": "auth", "aud": "orchestra"})
}

fn hs_config() -> JwtConfig {
    let mut cfg = JwtConfig::new(vec![Algorithm::HS256]);
    cfg.hmac_secret = Some(SECRET.to_vec());
    cfg.issuer = vec!["auth".into()];
    cfg.audience = vec!["orchestra".into()];
    cfg
}

fn plugin(cfg: JwtConfig) -> Arc<JwtPlugin> {
    Arc::new(JwtPlugin::new("auth", cfg).expect("valid config"))
}

struct Outcome {
    result: Result<(), Reject>,
    headers: HeaderMap,
    ctx: PluginCtx,
}

fn run_with(p: &Arc<JwtPlugin>, headers: HeaderMap, path: &str) -> Outcome {
    let chain = Chain::new(vec![Arc::clone(p) as Arc<dyn Plugin>]);
    let mut headers = headers;
    let mut ctx = PluginCtx::default();
    let result = chain.on_request(&mut RequestView {
        method: &Method::GET,
        path,
        headers: &mut headers,
        client_ip: None,
        ctx: &mut ctx,
    });
    Outcome {
        result,
        headers,
        ctx,
    }
}

fn bearer_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    h
}

fn run(p: &Arc<JwtPlugin>, token: &str) -> Outcome {
    run_with(p, bearer_headers(token), "/api")
}

fn rejected(o: &Outcome) -> &Reject {
    o.result.as_ref().expect_err("should be rejected")
}

fn assert_401(o: &Outcome, message: &str) {
    let r = rejected(o);
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code, "AUTH_001");
    assert_eq!(r.message, message);
    let www = r
        .headers
        .iter()
        .find(|(n, _)| n == http::header::WWW_AUTHENTICATE)
        .map(|(_, v)| v.to_str().expect("ascii"))
        .expect("WWW-Authenticate");
    assert!(www.starts_with("Bearer"), "{www}");
}

#[test]
fn valid_hs256_sets_ctx_and_forwards_claims_without_spoofing() {
    let mut cfg = hs_config();
    cfg.forward = vec![
        ("sub".into(), HeaderName::from_static("x-user-id")),
        ("role".into(), HeaderName::from_static("x-user-role")),
        ("missing".into(), HeaderName::from_static("x-missing")),
    ];
    let p = plugin(cfg);
    let mut h = bearer_headers(&hs256(&claims(), SECRET, None));
    h.insert("x-user-id", HeaderValue::from_static("spoofed"));
    h.insert("x-missing", HeaderValue::from_static("spoofed"));
    let o = run_with(&p, h, "/api");
    o.result.as_ref().expect("accepted");
    assert_eq!(o.ctx.subject.as_deref(), Some("user-1"));
    let c = o.ctx.claims.as_ref().expect("claims");
    assert_eq!(c.get_str("role").as_deref(), Some("admin"));
    assert_eq!(o.headers["x-user-id"], "user-1");
    assert_eq!(o.headers["x-user-role"], "admin");
    assert!(o.headers.get("x-missing").is_none(), "client copy removed");

    // Rejected requests also lose the client's copy (and are not proxied anyway).
    let mut h = HeaderMap::new();
    h.insert("x-user-id", HeaderValue::from_static("spoofed"));
    let o = run_with(&p, h, "/api");
    assert_401(&o, "missing bearer token");
    assert!(o.headers.get("x-user-id").is_none());
}

#[test]
fn missing_token_gets_plain_bearer_challenge() {
    let p = plugin(hs_config());
    let o = run_with(&p, HeaderMap::new(), "/api");
    assert_401(&o, "missing bearer token");
    assert_eq!(rejected(&o).headers[0].1, "Bearer");
    // A non-bearer Authorization is not a token.
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Basic dXNlcjpwdw=="),
    );
    assert_401(&run_with(&p, h, "/api"), "missing bearer token");
}

#[test]
fn expired_within_leeway_and_nbf() {
    let p = plugin(hs_config());
    let mut c = claims();
    c["exp"] = json!(now() - 3600);
    let o = run(&p, &hs256(&c, SECRET, None));
    assert_401(&o, "token expired");
    let www = &rejected(&o).headers[0].1;
    assert_eq!(
        www,
        "Bearer error=\"invalid_token\", error_description=\"token expired\""
    );

    c["exp"] = json!(now() - 10); // inside the 30 s leeway
    run(&p, &hs256(&c, SECRET, None))
        .result
        .expect("within leeway");

    let mut c = claims();
    c["nbf"] = json!(now() + 3600);
    assert_401(
        &run(&p, &hs256(&c, SECRET, None)),
        "token not yet valid (nbf)",
    );
    c["nbf"] = json!(now() - 5);
    run(&p, &hs256(&c, SECRET, None))
        .result
        .expect("nbf passed");

    let mut c = claims();
    c.as_object_mut().expect("object").remove("exp");
    assert_401(&run(&p, &hs256(&c, SECRET, None)), "missing required claim");
}

#[test]
fn wrong_signature_issuer_audience() {
    let p = plugin(hs_config());
    let other = b"ffffffffffffffffffffffffffffffff";
    assert_401(&run(&p, &hs256(&claims(), other, None)), "bad signature");

    let mut c = claims();
    c["aud"] = json!("someone-else");
    assert_401(&run(&p, &hs256(&c, SECRET, None)), "wrong audience");
    c["aud"] = json!(["someone-else", "orchestra"]);
    run(&p, &hs256(&c, SECRET, None))
        .result
        .expect("one audience matches");
    c.as_object_mut().expect("object").remove("aud");
    assert_401(&run(&p, &hs256(&c, SECRET, None)), "missing required claim");

    let mut c = claims();
    c["iss"] = json!("evil");
    assert_401(&run(&p, &hs256(&c, SECRET, None)), "wrong issuer");

    // Tampered payload with the original signature.
    let token = hs256(&claims(), SECRET, None);
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut forged = claims();
    forged["sub"] = json!("admin");
    let payload = URL_SAFE_NO_PAD.encode(forged.to_string());
    parts[1] = &payload;
    assert_401(&run(&p, &parts.join(".")), "bad signature");
    assert_401(&run(&p, "not-a-jwt"), "malformed token");
}

#[test]
fn alg_none_is_rejected() {
    let p = plugin(hs_config());
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        let o = run(&p, &token);
        assert_eq!(rejected(&o).status, StatusCode::UNAUTHORIZED);
        assert!(o.ctx.subject.is_none());
    }
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"None"}"#);
    assert_401(
        &run(&p, &format!("{header}.{payload}.")),
        "unsupported or missing alg",
    );
}

fn jwks_config(algorithms: Vec<Algorithm>) -> JwtConfig {
    let mut cfg = JwtConfig::new(algorithms);
    cfg.jwks = Some(JwtKeySet::from_json(JWKS).expect("jwks"));
    cfg
}

#[test]
fn rs256_and_es256_from_jwks_by_kid() {
    let p = plugin(jwks_config(vec![Algorithm::RS256, Algorithm::ES256]));
    let c = json!({"sub": "svc", "exp": now() + 60});
    let o = run(&p, &rs256(&c, Some("rsa-1")));
    o.result.as_ref().expect("rs256 accepted");
    assert_eq!(o.ctx.subject.as_deref(), Some("svc"));
    run(&p, &es256(&c, Some("ec-1")))
        .result
        .expect("es256 accepted");
    // No kid: the only key of the family is used.
    run(&p, &rs256(&c, None)).result.expect("single RSA key");
    assert_401(
        &run(&p, &rs256(&c, Some("nope"))),
        "no key for this token (kid)",
    );
    // A kid naming a key of another family does not help.
    assert_401(
        &run(&p, &rs256(&c, Some("ec-1"))),
        "no key for this token (kid)",
    );
}

#[test]
fn algorithm_confusion_is_rejected() {
    let c = claims();
    // HS256 "signed" with the RSA public key (which the attacker knows) as the HMAC secret.
    let forged = hs256(&c, RSA_PUBLIC.as_bytes(), Some("rsa-1"));
    // RS256-only config: HS256 is not on the allow-list.
    let rs_only = plugin(jwks_config(vec![Algorithm::RS256]));
    assert_401(&run(&rs_only, &forged), "algorithm not allowed");
    // Both allowed: HS256 is checked against the HMAC secret only, never the RSA key.
    let mut both = jwks_config(vec![Algorithm::HS256, Algorithm::RS256]);
    both.hmac_secret = Some(SECRET.to_vec());
    let both = plugin(both);
    assert_401(&run(&both, &forged), "bad signature");
    run(&both, &hs256(&json!({"exp": now() + 60}), SECRET, None))
        .result
        .expect("a real HS256 token still works");
    // RS256 token but ES256 not allowed etc.: the allow-list is per algorithm.
    let es_only = plugin(jwks_config(vec![Algorithm::ES256]));
    assert_401(
        &run(&es_only, &rs256(&c, Some("rsa-1"))),
        "algorithm not allowed",
    );
}

#[test]
fn token_from_cookie_and_query() {
    let mut cfg = hs_config();
    cfg.cookie = Some("session".into());
    cfg.query = Some("token".into());
    let p = plugin(cfg);
    let token = hs256(&claims(), SECRET, None);

    let mut h = HeaderMap::new();
    h.append(http::header::COOKIE, HeaderValue::from_static("theme=dark"));
    h.append(
        http::header::COOKIE,
        HeaderValue::from_str(&format!("a=1; session={token}; b=2")).expect("cookie"),
    );
    let o = run_with(&p, h, "/ws");
    o.result.as_ref().expect("cookie token accepted");
    assert_eq!(o.ctx.subject.as_deref(), Some("user-1"));

    let o = run_with(&p, HeaderMap::new(), &format!("/ws?x=1&token={token}&y=2"));
    o.result.as_ref().expect("query token accepted");
    let encoded = token.replace('.', "%2E");
    run_with(&p, HeaderMap::new(), &format!("/ws?token={encoded}"))
        .result
        .expect("percent-decoded");
    assert_401(
        &run_with(&p, HeaderMap::new(), "/ws?tokens=x"),
        "missing bearer token",
    );

    // Sources not configured are not read.
    let plain = plugin(hs_config());
    assert_401(
        &run_with(&plain, HeaderMap::new(), &format!("/ws?token={token}")),
        "missing bearer token",
    );
}

#[test]
fn config_errors_name_the_parameter() {
    let e = JwtPlugin::new("a", JwtConfig::new(vec![])).expect_err("empty");
    assert_eq!(e.key, "algorithms");
    let e = JwtPlugin::new("a", JwtConfig::new(vec![Algorithm::HS256])).expect_err("no secret");
    assert_eq!(e.key, "algorithms");
    let e = JwtPlugin::new("a", JwtConfig::new(vec![Algorithm::RS256])).expect_err("no jwks");
    assert_eq!(e.key, "algorithms");
    let mut short = JwtConfig::new(vec![Algorithm::HS256]);
    short.hmac_secret = Some(b"short".to_vec());
    assert_eq!(JwtPlugin::new("a", short).expect_err("short").key, "secret");
    let mut unused = jwks_config(vec![Algorithm::RS256]);
    unused.hmac_secret = Some(SECRET.to_vec());
    assert_eq!(
        JwtPlugin::new("a", unused).expect_err("unused").key,
        "secret"
    );
    let mut bad = hs_config();
    bad.required_claims = vec!["jti".into()];
    assert_eq!(
        JwtPlugin::new("a", bad).expect_err("claim").key,
        "required_claims"
    );

    let oct = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#;
    assert!(JwtKeySet::from_json(oct)
        .expect_err("oct")
        .contains("symmetric"));
    assert!(JwtKeySet::from_json(r#"{"keys":[]}"#).is_err());
    assert!(JwtKeySet::from_json("{").is_err());
    assert!(parse_algorithm("none").is_err());
    assert_eq!(parse_algorithm("ES256"), Ok(Algorithm::ES256));
}
