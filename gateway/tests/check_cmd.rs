//! `orchestra-gateway check -c FILE`: exit 0 with a summary for a valid config; exit 1 with
//! every error, one per line as `FILE: KEY_PATH: message`, for a broken one.

mod common;

use common::BIN;
use testkit::gateway::run_check;

const VALID: &str = r#"
[listeners]
http = "127.0.0.1:18080"
https = "127.0.0.1:18443"

[server]
threads = 1
grace_period = "5s"
data_dir = "data"

[[upstreams]]
name = "api"
balancer = "round_robin"
protocol = "h1"
targets = [ { addr = "127.0.0.1:3001", weight = 2 }, { addr = "127.0.0.1:3002" } ]
timeouts = { connect = "1s", read = "2s", idle = "60s" }

[[upstreams]]
name = "grpc"
protocol = "h2c"
targets = [ { addr = "127.0.0.1:3003" } ]

[[routes]]
name = "api"
match = { host = "*", path_prefix = "/api/", methods = ["GET", "POST"], headers = { "x-env" = "canary" } }
upstream = "api"
strip_prefix = false
plugins = ["hdrs"]

[[routes]]
name = "exact"
match = { host = "*.example.com", path = "/exact" }
upstream = "grpc"

[plugins.hdrs]
kind = "headers"
request = { set = { "x-added" = "1" }, add = { }, remove = ["x-drop"] }
response = { set = { "x-resp" = "yes" }, remove = ["server"] }
"#;

/// Asserts exit code 1 and that every `key` appears on some stderr line that starts with
/// `cfg.toml: KEY`.
fn assert_errors(stderr: &str, code: Option<i32>, keys: &[&str]) {
    assert_eq!(code, Some(1), "exit code; stderr:\n{stderr}");
    for key in keys {
        let prefix = format!("cfg.toml: {key}");
        assert!(
            stderr.lines().any(|l| l.starts_with(&prefix)),
            "no error line for {key:?}; stderr:\n{stderr}"
        );
    }
}

#[test]
fn valid_config_exits_0_with_a_summary() {
    let out = run_check(BIN, "cfg.toml", VALID).expect("run check");
    assert_eq!(
        out.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one summary line expected, got {lines:?}");
    assert!(lines[0].contains("ok"), "summary: {:?}", lines[0]);
}

#[test]
fn every_semantic_error_is_reported_in_one_run() {
    let broken = r#"
[listeners]
http = "not an address"

[[upstreams]]
name = "api"
targets = []
timeouts = { connect = "1s", read = "10 parsecs" }

[[upstreams]]
name = "api"
balancer = "bogus"
targets = [ { addr = "127.0.0.1:3001" }, { addr = "nohost" } ]

[[routes]]
name = "ok"
match = { path_prefix = "/a/" }
upstream = "api"

[[routes]]
name = "bad-plugin"
match = { path_prefix = "/b/" }
upstream = "api"
plugins = ["missing-plugin"]

[[routes]]
name = "bad-upstream"
match = { path_prefix = "/c/" }
upstream = "nope"
"#;
    let out = run_check(BIN, "cfg.toml", broken).expect("run check");
    assert_errors(
        &out.stderr,
        out.code(),
        &[
            "listeners.http",
            "upstreams[0].targets",
            "upstreams[0].timeouts.read",
            "upstreams[1].name",
            "upstreams[1].balancer",
            "upstreams[1].targets[1].addr",
            "routes[1].plugins",
            "routes[2].upstream",
        ],
    );
}

#[test]
fn unknown_keys_are_reported_with_the_other_errors() {
    let broken = r#"
[listeners]
http = "127.0.0.1:18080"

[[upstreams]]
name = "api"
targets = [ { addr = "127.0.0.1:3001", wieght = 2 } ]

[[routes]]
name = "typo"
match = { pathprefix = "/api/" }
upstream = "api"

[[routes]]
name = "bad-upstream"
match = { path_prefix = "/c/" }
upstream = "nope"
"#;
    let out = run_check(BIN, "cfg.toml", broken).expect("run check");
    assert_errors(
        &out.stderr,
        out.code(),
        &[
            "upstreams[0].targets[0].wieght",
            "routes[0].match.pathprefix",
            "routes[1].upstream",
        ],
    );
}

#[test]
fn bogus_balancer_is_an_error() {
    let broken = r#"
[[upstreams]]
name = "api"
balancer = "bogus"
targets = [ { addr = "127.0.0.1:3001" } ]
"#;
    let out = run_check(BIN, "cfg.toml", broken).expect("run check");
    assert_errors(&out.stderr, out.code(), &["upstreams[0].balancer"]);
}

#[test]
fn toml_syntax_error_names_file_and_line() {
    let broken = "[listeners]\nhttp = \"127.0.0.1:18080\"\n\n[[upstreams]\nname = \"api\"\n";
    let out = run_check(BIN, "cfg.toml", broken).expect("run check");
    assert_eq!(out.code(), Some(1), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("cfg.toml") && l.contains("line 4")),
        "expected a line naming cfg.toml and line 4; stderr:\n{}",
        out.stderr
    );
}

#[test]
fn missing_file_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(BIN)
        .args(["check", "-c", "does-not-exist.toml"])
        .current_dir(dir.path())
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does-not-exist.toml"), "stderr:\n{stderr}");
}

/// Zero or negative timeouts and values that cannot work are `check` errors, all listed in one
/// run, each with its key path (SPEC "Hardening defaults").
#[test]
fn zero_negative_and_unworkable_values_are_errors() {
    let config = r#"
[server]
header_read_timeout = "0s"
keepalive_timeout = "-5s"
body_read_timeout = "0ms"
write_timeout = "0s"
grace_period = "0s"
max_connections = 0
max_request_body = 0
trusted_proxies = ["not-a-net"]

[[upstreams]]
name = "api"
targets = [ { addr = "127.0.0.1:3001", weight = 0 }, { addr = "127.0.0.1:3002", weight = 0 } ]
timeouts = { connect = "0s", read = "0s", write = "-1s", idle = "0s" }
health_check = { interval = "0s", timeout = "0ms" }
retries = { backoff_base = "0s", backoff_max = "0s" }
circuit_breaker = { eject_for = "0s" }
ewma_decay = "0s"

[[routes]]
match = { path_prefix = "/", methods = [] }
upstream = "api"
plugins = ["rl"]

[plugins.rl]
kind = "rate_limit"
rate = "0/min"
"#;
    let out = run_check(BIN, "cfg.toml", config).expect("run check");
    assert_errors(
        &out.stderr,
        out.code(),
        &[
            "server.header_read_timeout",
            "server.keepalive_timeout",
            "server.body_read_timeout",
            "server.write_timeout",
            "server.grace_period",
            "server.max_connections",
            "server.max_request_body",
            "server.trusted_proxies[0]",
            "upstreams[0].targets[0].weight",
            "upstreams[0].targets[1].weight",
            "upstreams[0].timeouts.connect",
            "upstreams[0].timeouts.read",
            "upstreams[0].timeouts.write",
            "upstreams[0].timeouts.idle",
            "upstreams[0].health_check.interval",
            "upstreams[0].health_check.timeout",
            "upstreams[0].retries.backoff_base",
            "upstreams[0].retries.backoff_max",
            "upstreams[0].circuit_breaker.eject_for",
            "upstreams[0].ewma_decay",
            "routes[0].match.methods",
            "plugins.rl.rate",
        ],
    );
}

/// The summary of a valid config reports the downstream limits in force.
#[test]
fn summary_reports_the_downstream_limits() {
    let config = format!("{VALID}\n",).replace(
        "grace_period = \"5s\"",
        "grace_period = \"5s\"\nheader_read_timeout = \"2s\"\nmax_connections = 500",
    );
    let out = run_check(BIN, "cfg.toml", &config).expect("run check");
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    for part in [
        "header_read_timeout=2s",
        "keepalive_timeout=60s",
        "body_read_timeout=30s",
        "write_timeout=30s",
        "max_connections=500",
        "max_request_body=134217728",
    ] {
        assert!(out.stdout.contains(part), "{part} missing: {}", out.stdout);
    }
}
