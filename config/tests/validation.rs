//! Config validation: every error reported at once, each with its key path.

use orchestra_config::{from_str, ErrorKind, HostMatch, PathMatch, Problem, UpstreamProtocol};

const VALID: &str = r#"
[listeners]
http = "127.0.0.1:8080"
https = "127.0.0.1:8443"

[server]
threads = 3
grace_period = "5s"

[[upstreams]]
name = "api"
protocol = "h2c"
targets = [ { addr = "127.0.0.1:3001", weight = 3 }, { addr = "localhost:3002" } ]
timeouts = { connect = "250ms", read = "2s" }

[[routes]]
name = "api"
match = { host = "*.example.com", path_prefix = "/api/", methods = ["get", "POST"], headers = { "x-env" = "canary" } }
upstream = "api"
plugins = ["h"]
strip_prefix = true

[[routes]]
match = { path = "/exact" }
upstream = "api"

[plugins.h]
kind = "headers"
request = { set = { "x-a" = "1" }, remove = ["x-b"] }
"#;

#[test]
fn valid_config_compiles() {
    let s = from_str(VALID, "valid.toml").expect("valid config");
    assert_eq!(s.server.threads, 3);
    assert_eq!(s.server.grace_period.as_secs(), 5);
    assert_eq!(s.upstreams.len(), 1);
    let u = &s.upstreams[0];
    assert_eq!(u.protocol, UpstreamProtocol::H2c);
    assert_eq!(u.timeouts.connect.as_millis(), 250);
    assert_eq!(u.balancer.targets().len(), 2);
    assert_eq!(u.balancer.targets()[0].weight, 3);
    let routes = s.routes.routes();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0].host, HostMatch::Suffix(".example.com".into()));
    assert_eq!(routes[0].path, PathMatch::Prefix("/api/".into()));
    assert_eq!(routes[0].methods.as_ref().map(Vec::len), Some(2));
    assert_eq!(routes[0].chain.names().collect::<Vec<_>>(), vec!["h"]);
    assert_eq!(
        &*routes[1].name, "route-1",
        "unnamed routes get a positional name"
    );
}

#[test]
fn defaults_apply_when_omitted() {
    let s = from_str(
        "[[upstreams]]\nname = \"u\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n",
        "min.toml",
    )
    .expect("minimal config");
    assert_eq!(s.listeners.http.map(|a| a.port()), Some(8080));
    assert_eq!(s.listeners.https, None);
    assert_eq!(s.server.grace_period.as_secs(), 30);
    assert_eq!(s.upstreams[0].timeouts.read.as_secs(), 30);
}

fn paths(text: &str) -> Vec<String> {
    let errs = from_str(text, "bad.toml").expect_err("config must be rejected");
    for e in &errs.0 {
        assert_eq!(e.file, "bad.toml");
        assert!(e.to_string().starts_with("bad.toml: "), "{e}");
    }
    errs.0.into_iter().map(|e| e.path).collect()
}

#[test]
fn every_error_is_reported_with_its_key_path() {
    let text = r#"
[listeners]
http = "nope"

[server]
grace_period = "10 parsecs"

[[upstreams]]
name = "api"
balancer = "bogus"
targets = []
timeouts = { read = "5", conect = "1s" }

[[upstreams]]
name = "api"
targets = [ { addr = "127.0.0.1:1" }, { addr = "no-such-host.invalid:80" } ]

[[routes]]
match = { pathprefix = "/x" }
upstream = "nope"
plugins = ["missing"]

[[routes]]
match = { path = "relative" }
upstream = "api"
"#;
    let got = paths(text);
    for want in [
        "listeners.http",
        "server.grace_period",
        "upstreams[0].balancer",
        "upstreams[0].targets",
        "upstreams[0].timeouts.read",
        "upstreams[0].timeouts.conect",
        "upstreams[1].name",
        "upstreams[1].targets[1].addr",
        "routes[0].match.pathprefix",
        "routes[0].upstream",
        "routes[0].plugins[0]",
        "routes[1].match.path",
    ] {
        assert!(got.iter().any(|p| p == want), "missing {want} in {got:#?}");
    }
    assert_eq!(got.len(), 12, "exactly the expected errors: {got:#?}");
}

#[test]
fn shape_error_in_one_route_does_not_hide_the_next() {
    let text = r#"
[[upstreams]]
name = "u"
targets = [{ addr = "127.0.0.1:1" }]

[[routes]]
upstream = 5

[[routes]]
upstream = "missing"
"#;
    assert_eq!(
        paths(text),
        vec!["routes[0].upstream", "routes[1].upstream"]
    );
}

#[test]
fn service_sections_compile_with_defaults_and_report_bad_values() {
    let ok = r#"
[backend]
url = "http://127.0.0.1:7070"

[agents]
keys_file = "config/agent-keys.toml"
heartbeat_interval = "5s"
dispatch = "resource_based"

[realtime]
send_queue = 16

[[upstreams]]
name = "u"
targets = [{ addr = "127.0.0.1:1" }]

[[routes]]
match = { path = "/ws" }
serve = "realtime"

[[routes]]
match = { path = "/agent/ws" }
serve = "agents"
"#;
    let s = from_str(ok, "ok.toml").expect("valid");
    assert_eq!(s.backend.url.as_deref(), Some("http://127.0.0.1:7070"));
    assert_eq!(s.backend.batch_max_events, 50);
    let agents = s.agents.as_ref().expect("agents on");
    assert_eq!(agents.heartbeat_interval, std::time::Duration::from_secs(5));
    assert_eq!(agents.offline_after_missed, 3);
    assert_eq!(s.realtime.send_queue, 16);
    assert_eq!(s.realtime.auth, None);
    assert_eq!(
        s.routes.routes()[0].service(),
        Some(orchestra_config::Service::Realtime)
    );

    let bad = r#"
[backend]
url = "ftp://x"
batch_max_delay = "0s"

[agents]
heartbeat_interval = "10s"

[realtime]
auth = "nope"
send_queue = 0

[[upstreams]]
name = "u"
targets = [{ addr = "127.0.0.1:1" }]

[[routes]]
match = { path = "/a" }
upstream = "u"
serve = "realtime"

[[routes]]
match = { path = "/b" }
serve = "teleport"

[[routes]]
match = { path = "/c" }
"#;
    assert_eq!(
        paths(bad),
        vec![
            "backend.url",
            "backend.batch_max_delay",
            "agents.keys_file",
            "realtime.auth",
            "realtime.send_queue",
            "routes[0].serve",
            "routes[1].serve",
            "routes[2]",
        ]
    );
}

#[test]
fn syntax_error_names_the_line() {
    let errs = from_str("a = 1\nb = [\n", "syn.toml").expect_err("syntax");
    assert_eq!(errs.0.len(), 1);
    assert!(
        matches!(errs.0[0].kind, ErrorKind::Problem(Problem::Syntax { line, .. }) if line >= 2),
        "{:?}",
        errs.0[0]
    );
}

#[test]
fn inconsistent_upstream_protocol_and_tls() {
    let text = r#"
[[upstreams]]
name = "a"
protocol = "h2"
targets = [{ addr = "127.0.0.1:1" }]

[[upstreams]]
name = "b"
protocol = "h2c"
tls = true
targets = [{ addr = "127.0.0.1:1" }]
"#;
    assert_eq!(
        paths(text),
        vec!["upstreams[0].protocol", "upstreams[1].protocol"]
    );
}

#[test]
fn upstream_policies_are_validated() {
    let text = r#"
[[upstreams]]
name = "a"
balancer = "consistent_hash"
targets = [{ addr = "127.0.0.1:1" }]

[[upstreams]]
name = "b"
balancer = "least_request"
hash_key = "header:x-user"
targets = [{ addr = "127.0.0.1:1" }]
health_check = { kind = "udp", interval = "soon" }
retries = { attempts = -1, on = ["connect-failure", "teapot"], budget_percent = 150 }
circuit_breaker = { consecutive_failures = 0, eject_for = "1x" }
"#;
    let got = paths(text);
    for want in [
        "upstreams[0].hash_key",
        "upstreams[1].hash_key",
        "upstreams[1].health_check.kind",
        "upstreams[1].retries.attempts",
        "upstreams[1].retries.on",
        "upstreams[1].retries.budget_percent",
        "upstreams[1].circuit_breaker.consecutive_failures",
        "upstreams[1].circuit_breaker.eject_for",
    ] {
        assert!(got.iter().any(|p| p == want), "missing {want} in {got:#?}");
    }
}

#[test]
fn upstream_policies_compile() {
    let text = r#"
[[upstreams]]
name = "a"
balancer = "consistent_hash"
hash_key = "cookie:session"
targets = [{ addr = "127.0.0.1:1" }, { addr = "127.0.0.1:2" }]
health_check = { path = "/ready", interval = "1s", timeout = "200ms", unhealthy_after = 2, healthy_after = 1 }
retries = { attempts = 3, on = ["connect-failure", "503"], budget_percent = 25 }
circuit_breaker = { max_in_flight = 10, consecutive_failures = 3, eject_for = "5s" }
"#;
    let s = from_str(text, "ok.toml").expect("valid");
    let u = &s.upstreams[0];
    assert_eq!(u.balancer.strategy(), "consistent_hash");
    assert!(u.policy.hash_key.is_some());
    assert_eq!(u.policy.health.as_ref().map(|h| h.unhealthy_after), Some(2));
    assert_eq!(u.policy.retry.as_ref().map(|r| r.attempts), Some(3));
    assert!(u.policy.breaker.is_some());
    let d = from_str(
        "[[upstreams]]\nname = \"d\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n",
        "d.toml",
    )
    .expect("default");
    assert_eq!(
        d.upstreams[0].balancer.strategy(),
        "peak_ewma",
        "peak_ewma is the default"
    );
}

/// Zero or negative timeouts, and other values that cannot work, are refused with their key path
/// (SPEC "Hardening defaults").
#[test]
fn zero_negative_and_unworkable_values_are_refused() {
    let base = "[[upstreams]]\nname = \"u\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n";
    let cases: &[(&str, &str)] = &[
        (
            "[server]\nheader_read_timeout = \"0s\"\n",
            "server.header_read_timeout",
        ),
        (
            "[server]\nkeepalive_timeout = \"0ms\"\n",
            "server.keepalive_timeout",
        ),
        (
            "[server]\nbody_read_timeout = \"-1s\"\n",
            "server.body_read_timeout",
        ),
        ("[server]\nwrite_timeout = \"0s\"\n", "server.write_timeout"),
        ("[server]\ngrace_period = \"0s\"\n", "server.grace_period"),
        ("[server]\nmax_connections = 0\n", "server.max_connections"),
        (
            "[server]\nmax_request_body = 0\n",
            "server.max_request_body",
        ),
        (
            "[server]\nmax_request_body = \"-5MiB\"\n",
            "server.max_request_body",
        ),
        (
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"nope\"]\n",
            "server.trusted_proxies[1]",
        ),
    ];
    for (server, key) in cases {
        let errs = paths(&format!("{server}{base}"));
        assert!(errs.iter().any(|p| p == key), "{server}: {errs:?}");
    }
    let upstream = |extra: &str| {
        format!("[[upstreams]]\nname = \"u\"\ntargets = [{{ addr = \"127.0.0.1:1\" }}]\n{extra}\n")
    };
    let cases: &[(&str, &str)] = &[
        (
            "timeouts = { connect = \"0s\" }",
            "upstreams[0].timeouts.connect",
        ),
        ("timeouts = { read = \"0s\" }", "upstreams[0].timeouts.read"),
        (
            "timeouts = { write = \"-2s\" }",
            "upstreams[0].timeouts.write",
        ),
        (
            "timeouts = { idle = \"0ms\" }",
            "upstreams[0].timeouts.idle",
        ),
        (
            "health_check = { interval = \"0s\" }",
            "upstreams[0].health_check.interval",
        ),
        (
            "health_check = { timeout = \"0s\" }",
            "upstreams[0].health_check.timeout",
        ),
        (
            "retries = { backoff_base = \"0s\" }",
            "upstreams[0].retries.backoff_base",
        ),
        (
            "retries = { backoff_max = \"0s\" }",
            "upstreams[0].retries.backoff_max",
        ),
        (
            "circuit_breaker = { eject_for = \"0s\" }",
            "upstreams[0].circuit_breaker.eject_for",
        ),
        ("ewma_decay = \"0s\"", "upstreams[0].ewma_decay"),
    ];
    for (extra, key) in cases {
        let errs = paths(&upstream(extra));
        assert!(errs.iter().any(|p| p == key), "{extra}: {errs:?}");
    }
    // A weight of 0 on every target: no target could ever be picked.
    let errs = paths(
        "[[upstreams]]\nname = \"u\"\ntargets = [{ addr = \"127.0.0.1:1\", weight = 0 }, \
         { addr = \"127.0.0.1:2\", weight = 0 }]\n",
    );
    assert!(
        errs.iter().any(|p| p == "upstreams[0].targets[0].weight"),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|p| p == "upstreams[0].targets[1].weight"),
        "{errs:?}"
    );
    // An empty method list matches nothing.
    let errs = paths(&format!(
        "{base}[[routes]]\nmatch = {{ path_prefix = \"/\", methods = [] }}\nupstream = \"u\"\n"
    ));
    assert!(
        errs.iter().any(|p| p == "routes[0].match.methods"),
        "{errs:?}"
    );
    // A rate of 0.
    let errs = paths(&format!(
        "{base}[plugins.rl]\nkind = \"rate_limit\"\nrate = \"0/s\"\n"
    ));
    assert!(errs.iter().any(|p| p == "plugins.rl.rate"), "{errs:?}");
}

#[test]
fn server_limits_have_the_spec_defaults_and_parse() {
    let s = from_str(
        "[[upstreams]]\nname = \"u\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n",
        "min.toml",
    )
    .expect("minimal config");
    let l = s.server.limits;
    assert_eq!(l.header_read_timeout.as_secs(), 10);
    assert_eq!(l.keepalive_timeout.as_secs(), 60);
    assert_eq!(l.body_read_timeout.as_secs(), 30);
    assert_eq!(l.write_timeout.as_secs(), 30);
    assert_eq!(l.max_connections, 100_000);
    assert_eq!(l.max_request_body, 128 * 1024 * 1024);
    assert!(s.server.trusted_proxies.is_empty());
    let s = from_str(
        "[server]\nheader_read_timeout = \"1s\"\nkeepalive_timeout = \"5s\"\n\
         body_read_timeout = \"2s\"\nwrite_timeout = \"3s\"\nmax_connections = 7\n\
         max_request_body = \"1KiB\"\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n\
         [[upstreams]]\nname = \"u\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n",
        "set.toml",
    )
    .expect("config with limits");
    let l = s.server.limits;
    assert_eq!(l.header_read_timeout.as_secs(), 1);
    assert_eq!(l.keepalive_timeout.as_secs(), 5);
    assert_eq!(l.body_read_timeout.as_secs(), 2);
    assert_eq!(l.write_timeout.as_secs(), 3);
    assert_eq!(l.max_connections, 7);
    assert_eq!(l.max_request_body, 1024);
    assert!(s
        .server
        .trusted_proxies
        .contains("10.1.2.3".parse().expect("ip")));
}
