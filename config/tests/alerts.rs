//! `[[alerts]]` and `[monitor]`: what compiles, and every error with its key path, without
//! ever quoting a secret.

use std::time::Duration;

use orchestra_config::secrets::mask_config_text;
use orchestra_config::{
    from_str, AlertMetric, AlertSubject, Comparison, ConfigError, ErrorKind, LatencyKind, Problem,
};

const BASE: &str = r#"
[[upstreams]]
name = "api"
targets = [ { addr = "127.0.0.1:3001" }, { addr = "127.0.0.1:3002" } ]

[[routes]]
name = "api"
match = { path_prefix = "/api/" }
upstream = "api"
"#;

fn compile(alerts: &str) -> Result<orchestra_config::Snapshot, Vec<ConfigError>> {
    from_str(&format!("{BASE}\n{alerts}"), "alerts.toml").map_err(|e| e.0)
}

/// The errors of `alerts`, as `(path, Display)`.
fn errors(alerts: &str) -> Vec<(String, String)> {
    match compile(alerts) {
        Ok(_) => panic!("expected errors for:\n{alerts}"),
        Err(errors) => errors
            .iter()
            .map(|e| (e.path.clone(), e.to_string()))
            .collect(),
    }
}

fn assert_error_at(alerts: &str, path: &str, fragment: &str) {
    let errs = errors(alerts);
    assert!(
        errs.iter()
            .any(|(p, msg)| p == path && msg.contains(fragment)),
        "expected an error at {path} containing {fragment:?}, got {errs:#?}"
    );
}

#[test]
fn rules_compile_with_units_and_defaults() {
    let s = compile(
        r#"
[monitor]
interval = "500ms"
history = "10m"
webhook_attempts = 3

[[alerts]]
name = "api-latency"
metric = "p99"
series = "route:api:total"
above = "200ms"
for = "1m"
webhook = "http://127.0.0.1:9000/hook"
headers = { Authorization = "Bearer abc" }

[[alerts]]
name = "target-ttfb"
metric = "p50"
series = "target:api/127.0.0.1:3002:upstream"
above = "1.5s"
window = "30s"

[[alerts]]
name = "errors"
metric = "error_rate"
series = "route:api"
above = "5%"

[[alerts]]
name = "all-errors"
metric = "error_rate"
above = 0.1

[[alerts]]
name = "api-down"
metric = "upstream_healthy_targets"
series = "api"
below = 1
for = "30s"

[[alerts]]
name = "h2-p90"
metric = "p90"
series = "protocol:h2:total"
above = "50ms"
"#,
    )
    .expect("valid rules");
    assert_eq!(s.monitor.interval, Duration::from_millis(500));
    assert_eq!(s.monitor.points(), 1200);
    assert_eq!(s.monitor.webhook_attempts, 3);
    let a = &s.alerts;
    assert_eq!(a.len(), 6);
    assert_eq!(a[0].metric, AlertMetric::P99);
    assert_eq!(
        a[0].subject,
        AlertSubject::Latency {
            kind: LatencyKind::Route,
            name: "api".into(),
            upstream: false
        }
    );
    assert_eq!(a[0].comparison, Comparison::Above);
    assert_eq!(a[0].threshold, 200_000.0);
    assert_eq!(a[0].threshold_text, "200ms");
    assert_eq!(a[0].for_, Duration::from_secs(60));
    assert_eq!(a[0].window, Duration::from_secs(60), "default window");
    let hook = a[0].webhook.as_ref().expect("webhook");
    assert_eq!(hook.origin, "http://127.0.0.1:9000");
    assert_eq!(hook.headers.len(), 1);
    assert!(hook.headers[0].1.is_sensitive());
    assert!(!format!("{hook:?}").contains("Bearer abc"));
    assert_eq!(
        a[1].subject,
        AlertSubject::Latency {
            kind: LatencyKind::Target,
            name: "api/127.0.0.1:3002".into(),
            upstream: true
        }
    );
    assert_eq!(a[1].window, Duration::from_secs(30));
    assert_eq!(a[2].subject, AlertSubject::Routes(Some("api".into())));
    assert!((a[2].threshold - 0.05).abs() < 1e-12);
    assert_eq!(a[3].subject, AlertSubject::Routes(None));
    assert_eq!(a[4].subject, AlertSubject::Upstream("api".into()));
    assert_eq!(a[4].comparison, Comparison::Below);
    assert_eq!(a[4].window, Duration::ZERO, "counts have no window");
    assert!(a[4].webhook.is_none());
}

#[test]
fn unknown_metric_is_reported_with_the_known_ones() {
    assert_error_at(
        "[[alerts]]\nname = \"x\"\nmetric = \"p95\"\nseries = \"route:api:total\"\nabove = \"1s\"\n",
        "alerts[0].metric",
        "unknown metric (known: p50, p90, p99, error_rate, agents_online, upstream_healthy_targets)",
    );
}

#[test]
fn series_that_cannot_exist_are_refused() {
    let rule = |metric: &str, series: &str, threshold: &str| {
        format!(
            "[[alerts]]\nname = \"x\"\nmetric = \"{metric}\"\nseries = \"{series}\"\nabove = {threshold}\n"
        )
    };
    for (series, fragment) in [
        ("route:nope:total", "no route \"nope\" (routes: api)"),
        ("route:api:p99", "expected KIND:NAME:METRIC"),
        ("route:api", "expected KIND:NAME:METRIC"),
        ("host:api:total", "expected KIND:NAME:METRIC"),
        ("target:api/127.0.0.1:9:total", "no such target"),
        ("target:other/127.0.0.1:3001:total", "no such target"),
        ("protocol:h4:total", "protocols are h1, h2, h3 and ws"),
    ] {
        assert_error_at(&rule("p99", series, "\"1s\""), "alerts[0].series", fragment);
    }
    assert_error_at(
        &rule("error_rate", "route:nope", "0.1"),
        "alerts[0].series",
        "no such route (routes: api)",
    );
    assert_error_at(
        &rule("error_rate", "target:api/127.0.0.1:3001:total", "0.1"),
        "alerts[0].series",
        "error_rate reads a route",
    );
    assert_error_at(
        &rule("upstream_healthy_targets", "nope", "1"),
        "alerts[0].series",
        "no such upstream (upstreams: api)",
    );
    assert_error_at(
        "[[alerts]]\nname = \"x\"\nmetric = \"p50\"\nabove = \"1s\"\n",
        "alerts[0].series",
        "missing key `series`",
    );
    assert_error_at(
        "[[alerts]]\nname = \"x\"\nmetric = \"agents_online\"\nbelow = 1\n",
        "alerts[0].metric",
        "needs an [agents] section",
    );
    assert_error_at(
        "[[alerts]]\nname = \"x\"\nmetric = \"agents_online\"\nseries = \"a\"\nbelow = 1\n",
        "alerts[0].series",
        "agents_online has no series",
    );
}

#[test]
fn exactly_one_of_above_and_below_in_the_metric_unit() {
    let head = "[[alerts]]\nname = \"x\"\nmetric = \"p99\"\nseries = \"route:api:total\"\n";
    assert_error_at(
        &format!("{head}above = \"1s\"\nbelow = \"1ms\"\n"),
        "alerts[0].below",
        "set either above or below, not both",
    );
    assert_error_at(head, "alerts[0]", "missing key `above` or `below`");
    assert_error_at(
        &format!("{head}above = 200\n"),
        "alerts[0].above",
        "latency thresholds are durations with a unit",
    );
    assert_error_at(
        &format!("{head}above = \"200\"\n"),
        "alerts[0].above",
        "invalid duration: missing unit",
    );
    let rate = "[[alerts]]\nname = \"x\"\nmetric = \"error_rate\"\n";
    assert_error_at(
        &format!("{rate}above = 5\n"),
        "alerts[0].above",
        "a ratio is between 0 and 1",
    );
    assert_error_at(
        &format!("{rate}above = \"lots\"\n"),
        "alerts[0].above",
        "expected a ratio such as 0.05",
    );
    let count =
        "[[alerts]]\nname = \"x\"\nmetric = \"upstream_healthy_targets\"\nseries = \"api\"\n";
    assert_error_at(
        &format!("{count}below = 1.5\n"),
        "alerts[0].below",
        "expected a whole number",
    );
    assert_error_at(
        &format!("{count}below = 1\nwindow = \"1m\"\n"),
        "alerts[0].window",
        "only latency and error_rate rules have a window",
    );
}

#[test]
fn webhooks_must_be_http_urls_with_a_host() {
    let head = "[[alerts]]\nname = \"x\"\nmetric = \"error_rate\"\nabove = 0.5\n";
    for url in [
        "ftp://h/x",
        "127.0.0.1:9000/hook",
        "http:///nohost",
        "not a url",
    ] {
        assert_error_at(
            &format!("{head}webhook = \"{url}\"\n"),
            "alerts[0].webhook",
            "expected an http:// or https:// URL with a host",
        );
    }
    assert_error_at(
        &format!("{head}headers = {{ A = \"b\" }}\n"),
        "alerts[0].headers",
        "headers need a webhook",
    );
    assert_error_at(
        &format!("{head}webhook = \"http://h/\"\nheaders = {{ \"content-length\" = \"1\" }}\n"),
        "alerts[0].headers.content-length",
        "set by the gateway",
    );
}

#[test]
fn names_are_unique_and_windows_cover_an_interval() {
    let rule = "[[alerts]]\nname = \"x\"\nmetric = \"error_rate\"\nabove = 0.5\n";
    assert_error_at(
        &format!("{rule}{rule}"),
        "alerts[1].name",
        "duplicate alert name \"x\"",
    );
    assert_error_at(
        &format!("[monitor]\ninterval = \"10s\"\n{rule}window = \"5s\"\n"),
        "alerts[0].window",
        "must be at least monitor.interval (10000ms)",
    );
    assert_error_at(
        "[monitor]\ninterval = \"10ms\"\n",
        "monitor.interval",
        "must be between 100ms and 1h",
    );
    assert_error_at(
        "[monitor]\ninterval = \"100ms\"\nhistory = \"1h\"\n",
        "monitor.history",
        "at most 3600 points",
    );
    let short = compile("[monitor]\ninterval = \"100ms\"\n").expect("default history shrinks");
    assert_eq!(short.monitor.history, Duration::from_secs(360));
    assert_eq!(short.monitor.points(), 3600);
    assert_error_at(
        "[monitor]\nwebhook_attempts = 0\n",
        "monitor.webhook_attempts",
        "between 1 and 20",
    );
    assert_error_at("[monitor]\nbogus = 1\n", "monitor.bogus", "unknown key");
    assert_error_at(
        "[[alerts]]\nname = \"x\"\nmetric = \"error_rate\"\nabove = 0.5\nextra = 1\n",
        "alerts[0].extra",
        "unknown key",
    );
}

const SECRET: &str = "planted-secret-7f3a";

#[test]
fn errors_never_quote_secrets() {
    let cases = [
        format!("[admin]\ntoken = [\"{SECRET}\"]\n"),
        "[admin]\ntoken = 7734551\n".to_string(),
        format!(
            "[[alerts]]\nname = \"x\"\nmetric = \"error_rate\"\nabove = 0.5\nwebhook = \"ftp://u:{SECRET}@h/x\"\n"
        ),
        format!(
            "[[alerts]]\nname = \"x\"\nmetric = \"error_rate\"\nabove = 0.5\nwebhook = \"http://h/x\"\nheaders = {{ Authorization = \"Bearer {SECRET}\\n\" }}\n"
        ),
        format!(
            "[[alerts]]\nname = \"x\"\nmetric = \"error_rate\"\nabove = 0.5\nwebhook = \"http://h/x\"\nheaders = {{ Authorization = [\"{SECRET}\"] }}\n"
        ),
        format!(
            "[[alerts]]\nname = \"x\"\nmetric = \"error_rate\"\nabove = 0.5\nwebhook = \"http://h/x\"\nheaders = \"{SECRET}\"\n"
        ),
    ];
    for case in cases {
        let errs = errors(&case);
        let all = format!("{errs:?}");
        assert!(!all.contains(SECRET), "secret in errors of\n{case}\n{all}");
        assert!(
            !all.contains("7734551"),
            "secret in errors of\n{case}\n{all}"
        );
    }
}

#[test]
fn the_mask_itself_is_refused_as_a_secret() {
    assert_error_at(
        "[admin]\ntoken = \"***\"\n",
        "admin.token",
        "what GET /admin/config shows",
    );
    let head = "[[alerts]]\nname = \"x\"\nmetric = \"error_rate\"\nabove = 0.5\n";
    assert_error_at(
        &format!("{head}webhook = \"http://h/\"\nheaders = {{ Authorization = \"***\" }}\n"),
        "alerts[0].headers.Authorization",
        "what GET /admin/config shows",
    );
    assert_error_at(
        &format!("{head}webhook = \"http://***@h/\"\n"),
        "alerts[0].webhook",
        "what GET /admin/config shows",
    );
}

#[test]
fn a_masked_config_keeps_everything_but_the_secrets() {
    let text = format!(
        "[admin]\ntoken = \"{SECRET}\"\n{BASE}\n[[alerts]]\nname = \"x\"\nmetric = \"error_rate\"\nabove = 0.5\nwebhook = \"https://bot:{SECRET}@hooks.example/x?key={SECRET}\"\nheaders = {{ Authorization = \"Bearer {SECRET}\" }}\n"
    );
    from_str(&text, "t.toml").expect("valid");
    let masked = mask_config_text(&text);
    assert!(!masked.contains(SECRET), "{masked}");
    assert!(
        masked.contains("https://***@hooks.example/x?key=***"),
        "{masked}"
    );
    // Everything else is as written: the masked text compiles except for the refused masks.
    let errs = from_str(&masked, "masked.toml").expect_err("masks are refused");
    let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "admin.token",
            "alerts[0].webhook",
            "alerts[0].headers.Authorization"
        ],
        "{errs}"
    );
    assert!(errs
        .0
        .iter()
        .all(|e| matches!(e.kind, ErrorKind::Problem(Problem::Invalid { .. }))));
}
