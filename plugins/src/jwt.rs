//! The `jwt` plugin: verifies a bearer JWT, stores its claims, forwards selected claims upstream.
//!
//! ```toml
//! [plugins.auth]
//! kind = "jwt"
//! algorithms = ["HS256", "RS256", "ES256"]  # allow-list (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)
//! secret_env = "ORCHESTRA_JWT_SECRET"       # HMAC secret from the environment, or
//! secret_file = "secrets/jwt.key"           #   from a file (trailing newline ignored); >= 32 bytes
//! jwks_file = "config/jwks.json"            # public keys for RS/PS/ES/EdDSA, picked by `kid`
//! issuer = "https://auth.example"           # string or list; when set, `iss` is required
//! audience = "orchestra"                    # string or list; when set, `aud` is required
//! leeway = "30s"                            # clock skew allowed on exp / nbf (default 30s)
//! required_claims = ["exp"]                 # of exp, nbf, iss, aud, sub (default ["exp"])
//! cookie = "session"                        # also read the token from this cookie (off by default)
//! query = "token"                           # also read it from this query parameter (off by default)
//! forward = { sub = "x-user-id", role = "x-user-role" }   # claim -> upstream header
//! ```
//!
//! **Token sources**, in order: `Authorization: Bearer <token>` (scheme case-insensitive), the
//! configured cookie (every `Cookie` field is searched), the configured query parameter
//! (percent-decoded). The first one present is verified; the others are not tried.
//!
//! **Verification.**
//! 1. The header's `alg` must be in `algorithms`. `alg: none` never parses, so it is rejected.
//! 2. The key is chosen by the algorithm's *family*, never by the token alone: HMAC algorithms
//!    use only the configured secret; RSA/EC/EdDSA use only JWKS keys of that family (by `kid`
//!    when the token has one, else the single key of that family), and a JWK that names an `alg`
//!    only verifies that `alg`. This defeats algorithm confusion: an `HS256` token "signed" with
//!    an RSA public key as HMAC secret is checked against the HMAC secret and fails. Keys
//!    embedded in the token (`jwk`, `jku`, `x5u`) are ignored.
//! 3. Signature, then `exp` (required by default), `nbf` (when present), `iss` and `aud` (when
//!    configured; a token carrying `aud` is rejected when no audience is configured, per RFC
//!    7519 §4.1.3), with `leeway` on the time checks.
//!
//! **On success** the subject (`sub`) goes to [`PluginCtx::subject`] and the whole claim set to
//! [`PluginCtx::claims`] (read by `rate_limit` with `key = "jwt:CLAIM"`). For each `forward`
//! entry the claim is sent upstream in the named header (strings as is, numbers and booleans in
//! JSON notation, arrays joined with `,`; a claim that is absent or not valid in a header is not
//! sent). Client-sent copies of every `forward` header are removed first, on every request, so a
//! client cannot spoof them.
//!
//! **On failure**: `401`, code `AUTH_001`, with `WWW-Authenticate: Bearer` (token missing) or
//! `WWW-Authenticate: Bearer error="invalid_token", error_description="..."` (RFC 6750).
//! Keys are read when the config is loaded; a reload picks up a new secret or JWKS file.
//!
//! [`PluginCtx::subject`]: crate::PluginCtx::subject
//! [`PluginCtx::claims`]: crate::PluginCtx::claims

pub(crate) mod config;

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::{AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::header_ops::for_each_value;
use crate::{Claims, Plugin, Reject, RequestView};

/// Minimum HMAC secret length (RFC 7518 §3.2: at least the hash output size).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// Tokens longer than this are rejected without parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Default clock-skew leeway.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Claims `required_claims` may name.
pub const REQUIRABLE_CLAIMS: &[&str] = &["exp", "nbf", "iss", "aud", "sub"];

/// Parses an algorithm name of the allow-list (`HS256`, `RS256`, `ES256`, ...).
pub fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    Algorithm::from_str(s).map_err(|_| {
        "unknown algorithm: use HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, \
         ES256, ES384 or EdDSA"
            .to_string()
    })
}

/// One verification key from a JWKS document.
#[derive(Debug, Clone)]
struct JwtKey {
    kid: Option<String>,
    alg: Option<Algorithm>,
    family: AlgorithmFamily,
    key: DecodingKey,
}

/// The public keys of a JWKS document (`{"keys": [...]}`).
#[derive(Debug, Clone, Default)]
pub struct JwtKeySet {
    keys: Vec<JwtKey>,
}

impl JwtKeySet {
    /// Parses a JWKS document. Symmetric (`oct`) keys and keys marked `"use": "enc"` are
    /// refused: HMAC secrets belong in `secret_env` / `secret_file`.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let set: JwkSet =
            serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::with_capacity(set.keys.len());
        for (i, jwk) in set.keys.iter().enumerate() {
            let what = || match &jwk.common.key_id {
                Some(kid) => format!("key {kid:?}"),
                None => format!("key #{i}"),
            };
            if let AlgorithmParameters::OctetKey(_) = jwk.algorithm {
                return Err(format!(
                    "{}: symmetric (oct) keys are not accepted; put HMAC secrets in secret_env or secret_file",
                    what()
                ));
            }
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                return Err(format!("{}: \"use\" is \"enc\", not \"sig\"", what()));
            }
            let alg = match &jwk.common.key_algorithm {
                Some(a) => Some(
                    Algorithm::from_str(&a.to_string())
                        .map_err(|_| format!("{}: unsupported alg {a}", what()))?,
                ),
                None => None,
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("{}: {e}", what()))?;
            let family = key.family();
            if let Some(a) = alg {
                if a.family() != family {
                    return Err(format!("{}: alg {a:?} does not match the key type", what()));
                }
            }
            keys.push(JwtKey {
                kid: jwk.common.key_id.clone(),
                alg,
                family,
                key,
            });
        }
        if keys.is_empty() {
            return Err("the key set is empty".into());
        }
        Ok(JwtKeySet { keys })
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the set has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// True when some key can verify `alg`.
    fn supports(&self, alg: Algorithm) -> bool {
        self.keys
            .iter()
            .any(|k| k.family == alg.family() && !matches!(k.alg, Some(a) if a != alg))
    }

    /// The key for a token with `alg` and `kid` (see the module doc).
    fn select(&self, alg: Algorithm, kid: Option<&str>) -> Option<&DecodingKey> {
        let fits = |k: &&JwtKey| k.family == alg.family() && !matches!(k.alg, Some(a) if a != alg);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(fits)
                .find(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let mut it = self.keys.iter().filter(fits);
                match (it.next(), it.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }
        }
        .map(|k| &k.key)
    }
}

/// Typed parameters of a `jwt` plugin. `Debug` never shows the HMAC secret.
#[derive(Clone)]
pub struct JwtConfig {
    /// Accepted algorithms.
    pub algorithms: Vec<Algorithm>,
    /// HMAC secret (for HS*).
    pub hmac_secret: Option<Vec<u8>>,
    /// Public keys (for RS*, PS*, ES*, EdDSA).
    pub jwks: Option<JwtKeySet>,
    /// Accepted issuers; empty = not checked.
    pub issuer: Vec<String>,
    /// Accepted audiences; empty = tokens must not carry `aud`.
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Claims that must be present (of [`REQUIRABLE_CLAIMS`]).
    pub required_claims: Vec<String>,
    /// Cookie that may carry the token.
    pub cookie: Option<String>,
    /// Query parameter that may carry the token.
    pub query: Option<String>,
    /// Claim → upstream header.
    pub forward: Vec<(String, HeaderName)>,
}

impl JwtConfig {
    /// Defaults for everything but the algorithms.
    pub fn new(algorithms: Vec<Algorithm>) -> Self {
        JwtConfig {
            algorithms,
            hmac_secret: None,
            jwks: None,
            issuer: Vec::new(),
            audience: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            required_claims: vec!["exp".into()],
            cookie: None,
            query: None,
            forward: Vec::new(),
        }
    }
}

/// A `jwt` config that cannot work; `key` names the parameter to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfigError {
    /// `algorithms`, `secret`, `jwks` or `required_claims`.
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// The `jwt` plugin (see the module doc). `Debug` never shows key material.
pub struct JwtPlugin {
    name: String,
    /// The allow-list, each with its validation rules.
    validations: Vec<(Algorithm, Validation)>,
    hmac: Option<DecodingKey>,
    jwks: JwtKeySet,
    cookie: Option<String>,
    query: Option<String>,
    forward: Vec<(String, HeaderName)>,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("algorithms", &self.algorithms)
            .field("hmac_secret", &self.hmac_secret.as_ref().map(|_| "***"))
            .field("jwks_keys", &self.jwks.as_ref().map(JwtKeySet::len))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("cookie", &self.cookie)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for JwtPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithms: Vec<Algorithm> = self.validations.iter().map(|(a, _)| *a).collect();
        f.debug_struct("JwtPlugin")
            .field("name", &self.name)
            .field("algorithms", &algorithms)
            .field("hmac", &self.hmac.as_ref().map(|_| "***"))
            .field("jwks_keys", &self.jwks.len())
            .finish_non_exhaustive()
    }
}

impl JwtPlugin {
    /// Checks the parameters against each other and builds the plugin.
    pub fn new(name: impl Into<String>, cfg: JwtConfig) -> Result<Self, JwtConfigError> {
        let err = |key, reason: String| JwtConfigError { key, reason };
        if cfg.algorithms.is_empty() {
            return Err(err("algorithms", "list at least one algorithm".into()));
        }
        let jwks = cfg.jwks.unwrap_or_default();
        let has_hmac = cfg
            .algorithms
            .iter()
            .any(|a| a.family() == AlgorithmFamily::Hmac);
        for alg in &cfg.algorithms {
            if alg.family() == AlgorithmFamily::Hmac {
                if cfg.hmac_secret.is_none() {
                    return Err(err(
                        "algorithms",
                        format!("{alg:?} needs secret_env or secret_file"),
                    ));
                }
            } else if !jwks.supports(*alg) {
                return Err(err(
                    "algorithms",
                    format!("{alg:?} needs a jwks_file with a key for it"),
                ));
            }
        }
        if let Some(secret) = &cfg.hmac_secret {
            if !has_hmac {
                return Err(err(
                    "secret",
                    "a secret is set but no HS* algorithm is allowed".into(),
                ));
            }
            if secret.len() < MIN_HMAC_SECRET_BYTES {
                return Err(err(
                    "secret",
                    format!(
                        "the secret has {} bytes; HMAC needs at least {MIN_HMAC_SECRET_BYTES}",
                        secret.len()
                    ),
                ));
            }
        }
        if !jwks.is_empty() && cfg.algorithms.iter().all(|a| !jwks.supports(*a)) {
            return Err(err("jwks", "no allowed algorithm uses these keys".into()));
        }
        if let Some(c) = cfg
            .required_claims
            .iter()
            .find(|c| !REQUIRABLE_CLAIMS.contains(&c.as_str()))
        {
            return Err(err(
                "required_claims",
                format!("{c:?} is not one of exp, nbf, iss, aud, sub"),
            ));
        }
        // jsonwebtoken wants every algorithm of a `Validation` in the key's family: one per alg.
        let mut validation = Validation::new(cfg.algorithms[0]);
        validation.leeway = cfg.leeway.as_secs() + u64::from(cfg.leeway.subsec_nanos() > 0);
        validation.validate_nbf = true;
        validation.validate_exp = true;
        let mut required = cfg.required_claims.clone();
        if !cfg.issuer.is_empty() {
            validation.set_issuer(&cfg.issuer);
            required.push("iss".into());
        }
        if !cfg.audience.is_empty() {
            validation.set_audience(&cfg.audience);
            required.push("aud".into());
        }
        validation.set_required_spec_claims(&required);
        let validations = cfg
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = validation.clone();
                v.algorithms = vec![alg];
                (alg, v)
            })
            .collect();
        Ok(JwtPlugin {
            name: name.into(),
            validations,
            hmac: cfg.hmac_secret.as_deref().map(DecodingKey::from_secret),
            jwks,
            cookie: cfg.cookie,
            query: cfg.query,
            forward: cfg.forward,
        })
    }

    /// Verifies `token` and returns its claims, or the reason for the 401.
    pub fn verify(&self, token: &str) -> Result<Claims, &'static str> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err("token too large");
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithmName | ErrorKind::Json(_) => "unsupported or missing alg",
            _ => "malformed token",
        })?;
        let (_, validation) = self
            .validations
            .iter()
            .find(|(alg, _)| *alg == header.alg)
            .ok_or("algorithm not allowed")?;
        let key = match header.alg.family() {
            AlgorithmFamily::Hmac => self.hmac.as_ref(),
            _ => self.jwks.select(header.alg, header.kid.as_deref()),
        }
        .ok_or("no key for this token (kid)")?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation).map_err(
            |e| match e.kind() {
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::ExpiredSignature => "token expired",
                ErrorKind::ImmatureSignature => "token not yet valid (nbf)",
                ErrorKind::InvalidIssuer => "wrong issuer",
                ErrorKind::InvalidAudience => "wrong audience",
                ErrorKind::InvalidAlgorithm => "algorithm not allowed",
                ErrorKind::MissingRequiredClaim(_) => "missing required claim",
                ErrorKind::InvalidClaimFormat(_) => "malformed claim",
                _ => "malformed token",
            },
        )?;
        Ok(Claims::new(data.claims))
    }

    /// The token of a request, from the first source that has one (see the module doc).
    fn token<'r>(&self, req: &'r RequestView<'_>) -> Option<Cow<'r, str>> {
        if let Some(auth) = req.headers.get(&http::header::AUTHORIZATION) {
            if let Some(t) = bearer(auth.as_bytes()) {
                return Some(Cow::Borrowed(t));
            }
        }
        if let Some(name) = &self.cookie {
            let mut found = None;
            for_each_value(req.headers, &http::header::COOKIE, |v| {
                found = cookie_value(v.as_bytes(), name);
                found.is_none()
            });
            if let Some(t) = found {
                return Some(Cow::Borrowed(t));
            }
        }
        let param = self.query.as_deref()?;
        query_param(req.query()?, param)
    }
}

fn bearer(value: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = s.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn cookie_value<'v>(header: &'v [u8], name: &str) -> Option<&'v str> {
    let s = std::str::from_utf8(header).ok()?;
    s.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        (k.trim() == name && !v.is_empty()).then_some(v)
    })
}

fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    crate::query::percent_decode(crate::query::param(query, name)?)
}

fn unauthorized(message: &'static str, missing: bool) -> Reject {
    let challenge = if missing {
        HeaderValue::from_static("Bearer")
    } else {
        HeaderValue::try_from(format!(
            "Bearer error=\"invalid_token\", error_description=\"{message}\""
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\""))
    };
    Reject::new(StatusCode::UNAUTHORIZED, "AUTH_001", message)
        .with_header(http::header::WWW_AUTHENTICATE, challenge)
}

impl Plugin for JwtPlugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_request(&self, req: &mut RequestView<'_>) -> Result<(), Reject> {
        for (_, header) in &self.forward {
            req.headers.remove(header);
        }
        let claims = {
            let token = self
                .token(req)
                .ok_or_else(|| unauthorized("missing bearer token", true))?;
            self.verify(&token).map_err(|m| unauthorized(m, false))?
        };
        for (claim, header) in &self.forward {
            let value = match claim.as_str() {
                "sub" => claims.subject().map(Cow::Borrowed),
                c => claims.get_str(c),
            };
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                req.headers.set(header.clone(), v);
            }
        }
        req.ctx.subject = claims.subject().map(str::to_owned);
        req.ctx.claims = Some(Arc::new(claims));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
