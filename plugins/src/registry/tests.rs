//! Each kind's good and bad tables, through the registry as the config crate calls it.

use std::sync::Arc;

use orchestra_config_core::keypath::join;

use super::*;
use crate::Plugin;

/// Builds `[plugins.p]` of `kind` from `body` (`; ` separates lines); returns the plugin and
/// the errors' key paths.
fn read(kind: &str, body: &str) -> (Option<Arc<dyn Plugin>>, Vec<String>) {
    let text = format!("kind = \"{kind}\"\n{}", body.replace("; ", "\n"));
    let value: toml::Value = toml::from_str(&text).expect("test TOML");
    let mut errors = Vec::new();
    let p = build("p", value, "plugins.p", &mut errors);
    assert_eq!(p.is_none(), !errors.is_empty(), "{errors:?}");
    (p, errors.iter().map(|e| e.path.clone()).collect())
}

fn ok(kind: &str, body: &str) {
    let (p, errors) = read(kind, body);
    assert!(errors.is_empty(), "{body}: {errors:?}");
    assert_eq!(p.expect("plugin").name(), "p");
}

fn err(kind: &str, body: &str, path: &str) {
    let (p, errors) = read(kind, body);
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
    ("headers", ""),
    (
        "headers",
        r#"request = { set = { x-env = "prod" }, add = { via = "gw" }, remove = ["x-debug"] }; response = { remove = ["server"] }"#,
    ),
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
    (
        "headers",
        r#"request = { remove = ["ok", "not ok"] }"#,
        "request.remove[1]",
    ),
    (
        "headers",
        r#"response = { set = { "x y" = "v" } }"#,
        r#"response.set."x y""#,
    ),
    (
        "headers",
        r#"request = { add = { x-a = "a\nb" } }"#,
        "request.add.x-a",
    ),
    ("headers", r#"request = { rename = {} }"#, "request.rename"),
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
        .all(|k| INVALID.iter().any(|(kind, ..)| *kind == k.kind())));
}

#[test]
fn jwt_secrets_and_key_files() {
    let secret_hex = "0123456789abcdef0123456789abcdef";
    std::env::set_var("ORCHESTRA_SPECS_TEST_SECRET", secret_hex);
    let jwks = temp_file("jwks.json", include_str!("../../testdata/jwks.json"));
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

#[test]
fn the_kind_key_is_required_and_must_be_registered() {
    let mut found = Vec::new();
    let table: toml::Value = toml::from_str("rate = \"1/s\"").expect("test TOML");
    assert!(build("p", table, "plugins.p", &mut found).is_none());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "plugins.p.kind");
    assert!(
        matches!(found[0].problem, Problem::Shape { ref message } if message.contains("`kind`"))
    );

    let mut found = Vec::new();
    let table: toml::Value = toml::from_str("kind = \"waf\"").expect("test TOML");
    assert!(build("p", table, "plugins.p", &mut found).is_none());
    assert_eq!(
        found,
        vec![Found::invalid(
            "plugins.p.kind",
            "waf",
            "unknown plugin kind (known: headers, rate_limit, jwt, cors, ip_filter, limits)"
        )]
    );
}

#[test]
fn only_jwt_rereads_files_on_reload() {
    let table = |kind: &str| -> toml::Value {
        toml::from_str(&format!("kind = \"{kind}\"")).expect("test TOML")
    };
    let rereading: Vec<_> = KINDS
        .iter()
        .filter(|k| reads_files(&table(k.kind())))
        .map(|k| k.kind())
        .collect();
    assert_eq!(rereading, ["jwt"]);
    assert!(!reads_files(&table("unknown")));
}
