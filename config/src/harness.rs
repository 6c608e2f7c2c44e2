//! Invariants of config compilation and route matching, as functions that panic when one is
//! broken: the fuzz targets in `fuzz/` call them on arbitrary input, the property tests on
//! generated input in the normal test run. Not for production code paths.

use http::{HeaderMap, Method};

use crate::route::{strip_port, RouteRequest, RouteTable};
use crate::{from_str, Snapshot};

/// Compiles `text`. A config either compiles, or fails with at least one error, each naming
/// the file; a compiled config's route index agrees with a linear scan on sample requests.
///
/// Inputs whose `addr` values are not literal `IP:PORT` (host names would be resolved through
/// DNS) or that name files to read (`secret_file`, `jwks_file`: `/dev/zero` never ends) are
/// skipped. Returns the snapshot when it compiled.
pub fn check_config(text: &str) -> Option<Snapshot> {
    if let Ok(value) = text.parse::<toml::Value>() {
        if touches_outside(&value, None) {
            return None;
        }
    }
    match from_str(text, "fuzz.toml") {
        Ok(snapshot) => {
            let h = HeaderMap::new();
            for path in ["/", "/api/x", "/a", "", "/x/y/z", "/%41"] {
                for host in [None, Some("a.example"), Some("b.example:80")] {
                    let req = RouteRequest {
                        host,
                        path,
                        method: &Method::GET,
                        headers: &h,
                    };
                    check_route(&snapshot.routes, &req);
                }
            }
            Some(snapshot)
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "rejected without an error");
            for e in &errors.0 {
                assert_eq!(e.file, "fuzz.toml");
                assert!(!e.to_string().is_empty());
            }
            None
        }
    }
}

fn touches_outside(v: &toml::Value, key: Option<&str>) -> bool {
    match v {
        toml::Value::String(s) => match key {
            Some("addr") => s.parse::<std::net::SocketAddr>().is_err(),
            Some("secret_file" | "jwks_file" | "secret_env" | "token_env") => true,
            _ => false,
        },
        toml::Value::Array(a) => a.iter().any(|x| touches_outside(x, key)),
        toml::Value::Table(t) => t.iter().any(|(k, x)| touches_outside(x, Some(k))),
        _ => false,
    }
}

/// The route table's indexed lookup finds the same route as a first-match linear scan.
pub fn check_route(table: &RouteTable, req: &RouteRequest<'_>) -> Option<usize> {
    let found = table.find(req).map(|(i, _)| i);
    let host = req.host.map(strip_port);
    let scan = table.routes().iter().position(|r| r.matches(req, host));
    assert_eq!(found, scan, "index and scan disagree on {:?}", req.path);
    found
}

/// Routes used by the route fuzz targets: a protected prefix first, then prefixes that share
/// first segments with it, an exact path, a host route, and a catch-all.
pub const SAMPLE_CONFIG: &str = r#"
[[upstreams]]
name = "u"
targets = [{ addr = "127.0.0.1:9" }]

[plugins.deny]
kind = "ip_filter"
deny = ["0.0.0.0/0", "::/0"]

[[routes]]
name = "private"
match = { path_prefix = "/private/" }
upstream = "u"
plugins = ["deny"]

[[routes]]
name = "api"
match = { path_prefix = "/api/", methods = ["GET", "POST"] }
upstream = "u"
strip_prefix = true

[[routes]]
name = "exact"
match = { path = "/x" }
upstream = "u"

[[routes]]
name = "short"
match = { path_prefix = "/pr" }
upstream = "u"

[[routes]]
name = "host"
match = { host = "*.example", path_prefix = "/" }
upstream = "u"

[[routes]]
name = "all"
match = { path_prefix = "/" }
upstream = "u"
"#;

/// The snapshot of [`SAMPLE_CONFIG`].
pub fn sample_snapshot() -> Snapshot {
    from_str(SAMPLE_CONFIG, "sample.toml").unwrap_or_else(|e| panic!("sample config: {e}"))
}

/// Routes a normalized path on [`sample_snapshot`]'s table: the index agrees with a scan, and a
/// path under `/private/` always lands on the protected route (it comes first).
pub fn check_sample_route(
    snapshot: &Snapshot,
    method: &Method,
    host: Option<&str>,
    path: &str,
) -> Option<usize> {
    let h = HeaderMap::new();
    let req = RouteRequest {
        host,
        path,
        method,
        headers: &h,
    };
    let found = check_route(&snapshot.routes, &req);
    if path.starts_with("/private/") {
        let name = found.map(|i| &*snapshot.routes.routes()[i].name);
        assert_eq!(
            name,
            Some("private"),
            "{path:?} bypassed the protected route"
        );
    }
    found
}
