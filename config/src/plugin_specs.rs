//! `[plugins.NAME]` tables of the policy kinds (`rate_limit`, `jwt`, `cors`, `ip_filter`,
//! `limits`): raw serde shapes, validation with key paths, and construction of the plugins of
//! `orchestra-plugins`. The keys and their meaning are documented on each plugin module there.
//!
//! Secrets and key files (`secret_env`, `secret_file`, `jwks_file`) are read here, when the config
//! is loaded, so a missing variable or an unreadable file is a config error naming its key; a
//! reload reads them again. Relative paths are relative to the working directory, like the other
//! paths of the config.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use orchestra_plugins::cors::{
    parse_origin, AllowedHeaders, AllowedOrigins, CorsConfig, CorsPlugin,
};
use orchestra_plugins::ip_filter::{IpFilterConfig, IpFilterPlugin};
use orchestra_plugins::jwt::{parse_algorithm, JwtConfig, JwtKeySet, JwtPlugin};
use orchestra_plugins::limits::{LimitsConfig, LimitsPlugin};
use orchestra_plugins::rate_limit::{LimitKey, Rate, RateLimitConfig, RateLimitPlugin};
use orchestra_plugins::{parse_net, IpNet, Plugin, TrustedProxies};
use serde::Deserialize;

use crate::duration::parse_duration;
use crate::parse::{join, key, typed};
use crate::{ConfigError, ErrorKind};

/// Plugin kinds built here.
pub(crate) const KINDS: &[&str] = &["rate_limit", "jwt", "cors", "ip_filter", "limits"];

/// Largest accepted `max_keys`.
const MAX_KEYS_LIMIT: i64 = 1_000_000_000;

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The items, each with its key path suffix (`""` for a single string, `[i]` in a list).
    fn items(&self) -> Vec<(String, &str)> {
        match self {
            OneOrMany::One(s) => vec![(String::new(), s.as_str())],
            OneOrMany::Many(v) => v
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("[{i}]"), s.as_str()))
                .collect(),
        }
    }

    fn is_star(&self) -> bool {
        match self {
            OneOrMany::One(s) => s == "*",
            OneOrMany::Many(v) => v.len() == 1 && v[0] == "*",
        }
    }
}

/// A byte size: an integer, or a string with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
struct RawRateLimit {
    #[allow(dead_code)] // dispatched on by the caller
    kind: String,
    key: Option<String>,
    rate: String,
    burst: Option<i64>,
    max_keys: Option<i64>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    response_headers: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct RawJwt {
    #[allow(dead_code)]
    kind: String,
    algorithms: Vec<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
    jwks_file: Option<String>,
    issuer: Option<OneOrMany>,
    audience: Option<OneOrMany>,
    leeway: Option<String>,
    required_claims: Option<Vec<String>>,
    cookie: Option<String>,
    query: Option<String>,
    #[serde(default)]
    forward: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct RawCors {
    #[allow(dead_code)]
    kind: String,
    origins: OneOrMany,
    methods: Option<Vec<String>>,
    headers: Option<OneOrMany>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default)]
    credentials: bool,
    max_age: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawIpFilter {
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawLimits {
    #[allow(dead_code)]
    kind: String,
    max_body: Option<Size>,
    max_header_bytes: Option<Size>,
    max_uri_length: Option<i64>,
}

/// Error collection for one plugin table.
struct Spec<'a> {
    path: &'a str,
    file: &'a str,
    errors: &'a mut Vec<ConfigError>,
    before: usize,
}

impl Spec<'_> {
    fn invalid(&mut self, key: &str, value: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ConfigError::new(
            self.file,
            join(self.path, key),
            ErrorKind::Invalid {
                value: value.into(),
                reason: reason.into(),
            },
        ));
    }

    fn failed(&self) -> bool {
        self.errors.len() > self.before
    }

    fn nets(&mut self, key: &str, list: &[String]) -> Vec<IpNet> {
        let mut out = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            match parse_net(s) {
                Ok(n) => out.push(n),
                Err(reason) => self.invalid(&format!("{key}[{i}]"), s, reason),
            }
        }
        out
    }

    fn header_name(&mut self, key: &str, name: &str) -> Option<HeaderName> {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| self.invalid(key, name, "not a valid HTTP header name"))
            .ok()
    }

    fn duration(&mut self, key: &str, value: Option<&str>) -> Option<Duration> {
        let v = value?;
        parse_duration(v)
            .map_err(|reason| self.invalid(key, v, format!("invalid duration: {reason}")))
            .ok()
    }

    fn positive(&mut self, key: &str, value: Option<i64>, max: i64) -> Option<u64> {
        match value {
            Some(n) if (1..=max).contains(&n) => Some(n as u64),
            Some(n) => {
                self.invalid(key, n.to_string(), format!("must be between 1 and {max}"));
                None
            }
            None => None,
        }
    }

    fn size(&mut self, key: &str, value: Option<&Size>) -> Option<u64> {
        match value? {
            Size::Bytes(n) => self.positive(key, Some(*n), i64::MAX),
            Size::Text(s) => crate::size::parse_size(s)
                .map_err(|reason| self.invalid(key, s, reason))
                .ok(),
        }
    }
}

/// Builds the plugin `name` of `kind` (one of [`KINDS`]) from its table `value` at key path
/// `path`. Returns `None` after pushing every error found.
pub(crate) fn build_plugin(
    name: &str,
    kind: &str,
    value: toml::Value,
    path: &str,
    file: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<dyn Plugin>> {
    let before = errors.len();
    let mut spec = Spec {
        path,
        file,
        errors,
        before,
    };
    match kind {
        "rate_limit" => {
            let raw = typed::<RawRateLimit>(value, path, file, spec.errors)?;
            rate_limit(name, raw, &mut spec)
        }
        "jwt" => {
            let raw = typed::<RawJwt>(value, path, file, spec.errors)?;
            jwt(name, raw, &mut spec)
        }
        "cors" => {
            let raw = typed::<RawCors>(value, path, file, spec.errors)?;
            cors(name, raw, &mut spec)
        }
        "ip_filter" => {
            let raw = typed::<RawIpFilter>(value, path, file, spec.errors)?;
            ip_filter(name, raw, &mut spec)
        }
        "limits" => {
            let raw = typed::<RawLimits>(value, path, file, spec.errors)?;
            limits(name, raw, &mut spec)
        }
        other => {
            spec.invalid("kind", other, format!("not one of {}", KINDS.join(", ")));
            None
        }
    }
}

fn rate_limit(name: &str, raw: RawRateLimit, s: &mut Spec<'_>) -> Option<Arc<dyn Plugin>> {
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

/// Reads a secret file; one trailing newline is not part of the secret.
fn read_secret(path: &str) -> Result<Vec<u8>, String> {
    let mut bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    Ok(bytes)
}

fn jwt(name: &str, raw: RawJwt, s: &mut Spec<'_>) -> Option<Arc<dyn Plugin>> {
    let mut algorithms = Vec::new();
    for (i, a) in raw.algorithms.iter().enumerate() {
        match parse_algorithm(a) {
            Ok(alg) => algorithms.push(alg),
            Err(reason) => s.invalid(&format!("algorithms[{i}]"), a, reason),
        }
    }
    let (secret, secret_key) = match (&raw.secret_env, &raw.secret_file) {
        (Some(_), Some(f)) => {
            s.invalid(
                "secret_file",
                f,
                "set either secret_env or secret_file, not both",
            );
            (None, "secret_file")
        }
        (Some(var), None) => match std::env::var(var) {
            Ok(v) => (Some(v.into_bytes()), "secret_env"),
            Err(e) => {
                s.invalid("secret_env", var, format!("environment variable: {e}"));
                (None, "secret_env")
            }
        },
        (None, Some(f)) => match read_secret(f) {
            Ok(b) => (Some(b), "secret_file"),
            Err(reason) => {
                s.invalid("secret_file", f, reason);
                (None, "secret_file")
            }
        },
        (None, None) => (None, "secret_env"),
    };
    let jwks = raw.jwks_file.as_deref().and_then(|f| {
        std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read the file: {e}"))
            .and_then(|text| JwtKeySet::from_json(&text))
            .map_err(|reason| s.invalid("jwks_file", f, reason))
            .ok()
    });
    let leeway = s.duration("leeway", raw.leeway.as_deref());
    let mut forward = Vec::new();
    for (claim, header) in &raw.forward {
        let k = join("forward", &key(claim));
        if let Some(h) = s.header_name(&k, header) {
            forward.push((claim.clone(), h));
        }
    }
    for (k, v) in [("cookie", &raw.cookie), ("query", &raw.query)] {
        if v.as_deref() == Some("") {
            s.invalid(k, "", "must not be empty");
        }
    }
    if s.failed() {
        return None;
    }
    let mut cfg = JwtConfig::new(algorithms);
    cfg.hmac_secret = secret;
    cfg.jwks = jwks;
    let list = |v: &Option<OneOrMany>| {
        v.as_ref()
            .map(|v| v.items().into_iter().map(|(_, s)| s.to_string()).collect())
            .unwrap_or_default()
    };
    cfg.issuer = list(&raw.issuer);
    cfg.audience = list(&raw.audience);
    if let Some(l) = leeway {
        cfg.leeway = l;
    }
    if let Some(r) = raw.required_claims {
        cfg.required_claims = r;
    }
    cfg.cookie = raw.cookie;
    cfg.query = raw.query;
    cfg.forward = forward;
    match JwtPlugin::new(name, cfg) {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            let (k, value) = match e.key {
                "secret" => (secret_key, raw.secret_env.or(raw.secret_file)),
                "jwks" => ("jwks_file", raw.jwks_file),
                "algorithms" => ("algorithms", Some(raw.algorithms.join(", "))),
                other => (other, None),
            };
            s.invalid(k, value.unwrap_or_default(), e.reason);
            None
        }
    }
}

fn cors(name: &str, raw: RawCors, s: &mut Spec<'_>) -> Option<Arc<dyn Plugin>> {
    let origins = if raw.origins.is_star() {
        AllowedOrigins::Any
    } else {
        let mut list = Vec::new();
        for (suffix, o) in raw.origins.items() {
            let k = format!("origins{suffix}");
            if o == "*" {
                s.invalid(&k, o, "\"*\" must be the only origin");
            } else {
                match parse_origin(o) {
                    Ok(o) => list.push(o),
                    Err(reason) => s.invalid(&k, o, reason),
                }
            }
        }
        if list.is_empty() && !s.failed() {
            s.invalid("origins", "[]", "list at least one origin, or \"*\"");
        }
        AllowedOrigins::List(list)
    };
    let mut cfg = CorsConfig::new(origins);
    if let Some(methods) = &raw.methods {
        if methods.is_empty() {
            s.invalid("methods", "[]", "list at least one method");
        }
        cfg.methods = methods
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| s.invalid(&format!("methods[{i}]"), m, "not an HTTP method"))
                    .ok()
            })
            .collect();
    }
    cfg.headers = match &raw.headers {
        None => AllowedHeaders::List(Vec::new()),
        Some(h) if h.is_star() => AllowedHeaders::Any,
        Some(h) => AllowedHeaders::List(
            h.items()
                .into_iter()
                .filter_map(|(suffix, n)| s.header_name(&format!("headers{suffix}"), n))
                .collect(),
        ),
    };
    cfg.expose_headers = raw
        .expose_headers
        .iter()
        .enumerate()
        .filter_map(|(i, n)| s.header_name(&format!("expose_headers[{i}]"), n))
        .collect();
    cfg.credentials = raw.credentials;
    cfg.max_age = s.duration("max_age", raw.max_age.as_deref());
    if s.failed() {
        return None;
    }
    Some(Arc::new(CorsPlugin::new(name, cfg)))
}

fn ip_filter(name: &str, raw: RawIpFilter, s: &mut Spec<'_>) -> Option<Arc<dyn Plugin>> {
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

fn limits(name: &str, raw: RawLimits, s: &mut Spec<'_>) -> Option<Arc<dyn Plugin>> {
    let cfg = LimitsConfig {
        max_body: s.size("max_body", raw.max_body.as_ref()),
        max_header_bytes: s.size("max_header_bytes", raw.max_header_bytes.as_ref()),
        max_uri_length: s.positive("max_uri_length", raw.max_uri_length, i64::MAX),
    };
    if s.failed() {
        return None;
    }
    if cfg == LimitsConfig::default() {
        s.invalid(
            "",
            "",
            "set at least one of max_body, max_header_bytes, max_uri_length",
        );
        return None;
    }
    Some(Arc::new(LimitsPlugin::new(name, cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds `[plugins.p]` of `kind` from `body` (`; ` separates lines); returns the plugin and
    /// the errors' key paths.
    fn build(kind: &str, body: &str) -> (Option<Arc<dyn Plugin>>, Vec<String>) {
        let text = format!("kind = \"{kind}\"\n{}", body.replace("; ", "\n"));
        let value: toml::Value = toml::from_str(&text).expect("test TOML");
        let mut errors = Vec::new();
        let p = build_plugin("p", kind, value, "plugins.p", "gw.toml", &mut errors);
        assert_eq!(p.is_none(), !errors.is_empty(), "{errors:?}");
        (p, errors.iter().map(|e| e.path.clone()).collect())
    }

    fn ok(kind: &str, body: &str) {
        let (p, errors) = build(kind, body);
        assert!(errors.is_empty(), "{body}: {errors:?}");
        assert_eq!(p.expect("plugin").name(), "p");
    }

    fn err(kind: &str, body: &str, path: &str) {
        let (p, errors) = build(kind, body);
        assert!(p.is_none(), "{body}: expected an error at {path}");
        assert!(
            errors.iter().any(|e| e == path),
            "{body}: {errors:?}, expected {path}"
        );
    }

    fn temp_file(name: &str, content: &str) -> String {
        let file = format!("orchestra-specs-{}-{name}", std::process::id());
        let path = std::env::temp_dir().join(file);
        std::fs::write(&path, content).expect("write temp file");
        path.display().to_string()
    }

    const VALID: &[(&str, &str)] = &[
        ("rate_limit", r#"rate = "10/s""#),
        (
            "rate_limit",
            r#"key = "jwt:sub"; rate = "100/min"; burst = 20; max_keys = 1000000"#,
        ),
        (
            "rate_limit",
            r#"rate = "5000/h"; trusted_proxies = ["127.0.0.1/32", "::1"]"#,
        ),
        (
            "rate_limit",
            r#"key = "header:x-api-user"; rate = "1/d"; response_headers = false"#,
        ),
        ("cors", r#"origins = "*"; headers = "*""#),
        (
            "cors",
            r#"origins = ["https://app.example"]; methods = ["get", "POST"]"#,
        ),
        (
            "cors",
            r#"origins = "https://a.example"; headers = ["authorization"]"#,
        ),
        (
            "cors",
            r#"origins = "*"; expose_headers = ["x-request-id"]; max_age = "10m""#,
        ),
        (
            "cors",
            r#"origins = ["http://localhost:5173"]; credentials = true"#,
        ),
        (
            "ip_filter",
            r#"allow = ["203.0.113.0/24", "2001:db8::/32"]; deny = ["203.0.113.66"]"#,
        ),
        (
            "ip_filter",
            r#"deny = ["192.0.2.0/24"]; trusted_proxies = ["10.0.0.0/8"]"#,
        ),
        (
            "limits",
            r#"max_body = "10MiB"; max_header_bytes = 16384; max_uri_length = 4096"#,
        ),
        ("limits", r#"max_body = 1048576"#),
    ];

    const INVALID: &[(&str, &str, &str)] = &[
        ("rate_limit", r#"rate = "100/fortnight""#, "rate"),
        ("rate_limit", r#"rate = "0/s""#, "rate"),
        ("rate_limit", r#"rate = 5"#, "rate"),
        ("rate_limit", "", ""),
        ("rate_limit", r#"rate = "1/s"; key = "cookie:x""#, "key"),
        ("rate_limit", r#"rate = "1/s"; burst = 0"#, "burst"),
        ("rate_limit", r#"rate = "1/s"; max_keys = -1"#, "max_keys"),
        (
            "rate_limit",
            r#"rate = "1/s"; trusted_proxies = ["::1", "nope"]"#,
            "trusted_proxies[1]",
        ),
        ("rate_limit", r#"rate = "1/s"; bogus = 1"#, "bogus"),
        ("jwt", r#"algorithms = ["HS256", "none"]"#, "algorithms[1]"),
        ("jwt", r#"algorithms = ["HS256"]"#, "algorithms"),
        ("jwt", r#"algorithms = ["RS256"]"#, "algorithms"),
        (
            "jwt",
            r#"algorithms = ["HS256"]; secret_env = "ORCHESTRA_SPECS_UNSET""#,
            "secret_env",
        ),
        (
            "jwt",
            r#"algorithms = ["HS256"]; secret_file = "/nonexistent/s""#,
            "secret_file",
        ),
        (
            "jwt",
            r#"algorithms = ["RS256"]; jwks_file = "/nonexistent/j""#,
            "jwks_file",
        ),
        ("jwt", r#"secret_env = "X""#, ""),
        (
            "cors",
            r#"origins = ["https://a.example", "*"]"#,
            "origins[1]",
        ),
        (
            "cors",
            r#"origins = ["https://a.example/path"]"#,
            "origins[0]",
        ),
        ("cors", r#"origins = "a.example""#, "origins"),
        ("cors", r#"origins = []"#, "origins"),
        (
            "cors",
            r#"origins = "*"; methods = ["GET", "BAD METHOD"]"#,
            "methods[1]",
        ),
        ("cors", r#"origins = "*"; methods = []"#, "methods"),
        (
            "cors",
            r#"origins = "*"; headers = ["ok", "not ok"]"#,
            "headers[1]",
        ),
        (
            "cors",
            r#"origins = "*"; expose_headers = ["x(y)"]"#,
            "expose_headers[0]",
        ),
        ("cors", r#"origins = "*"; max_age = "forever""#, "max_age"),
        ("ip_filter", r#"allow = ["203.0.113.0/33"]"#, "allow[0]"),
        ("ip_filter", r#"deny = ["x"]"#, "deny[0]"),
        ("ip_filter", "", "allow"),
        ("limits", r#"max_body = "10 parsecs""#, "max_body"),
        ("limits", r#"max_body = 0"#, "max_body"),
        ("limits", r#"max_header_bytes = "-5KB""#, "max_header_bytes"),
        ("limits", r#"max_uri_length = 0"#, "max_uri_length"),
        ("limits", "", ""),
    ];

    #[test]
    fn valid_tables_build() {
        for (kind, body) in VALID {
            ok(kind, body);
        }
    }

    #[test]
    fn each_invalid_param_names_its_key() {
        for (kind, body, key) in INVALID {
            err(kind, body, &join("plugins.p", key));
        }
        assert!(KINDS
            .iter()
            .all(|k| INVALID.iter().any(|(kind, ..)| kind == k)));
    }

    #[test]
    fn jwt_secrets_and_key_files() {
        let secret_hex = "0123456789abcdef0123456789abcdef";
        std::env::set_var("ORCHESTRA_SPECS_TEST_SECRET", secret_hex);
        let jwks = temp_file(
            "jwks.json",
            include_str!("../../plugins/testdata/jwks.json"),
        );
        let secret = temp_file("secret", &format!("{secret_hex}\n"));
        let short = temp_file("short", "short");
        let oct = temp_file("oct.json", r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#);
        let env = r#"secret_env = "ORCHESTRA_SPECS_TEST_SECRET""#;
        let file = format!("secret_file = \"{secret}\"");
        let hs = r#"algorithms = ["HS256"]"#;
        ok(
            "jwt",
            &format!(
                r#"algorithms = ["HS256", "RS256", "ES256"]; {env}; jwks_file = "{jwks}"; issuer = "https://auth.example"; audience = ["orchestra", "admin"]; leeway = "10s"; required_claims = ["exp", "sub"]; cookie = "session"; query = "token"; forward = {{ sub = "x-user-id", role = "x-user-role" }}"#
            ),
        );
        ok("jwt", &format!("{hs}; {file}"));
        let cases = [
            (format!("{hs}; {env}; {file}"), "secret_file"),
            (format!("{hs}; secret_file = \"{short}\""), "secret_file"),
            (
                format!(r#"algorithms = ["RS256"]; jwks_file = "{oct}""#),
                "jwks_file",
            ),
            (
                format!(r#"{hs}; {file}; jwks_file = "{jwks}""#),
                "jwks_file",
            ),
            (format!(r#"{hs}; {file}; leeway = "30""#), "leeway"),
            (
                format!(r#"{hs}; {file}; forward = {{ sub = "bad header" }}"#),
                "forward.sub",
            ),
            (
                format!(r#"{hs}; {file}; required_claims = ["jti"]"#),
                "required_claims",
            ),
            (format!(r#"{hs}; {file}; cookie = """#), "cookie"),
        ];
        for (body, key) in cases {
            err("jwt", &body, &join("plugins.p", key));
        }
    }
}
