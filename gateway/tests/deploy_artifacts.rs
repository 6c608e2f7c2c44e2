//! The deployment artifacts in `deploy/` are consistent with the gateway they deploy.
//!
//! What is checked (kubeconform, promtool and a Docker engine are not available here):
//! - every Kubernetes manifest parses as YAML and the objects fit together: ports, probe paths,
//!   selectors, HPA and PDB targets, the ConfigMap's config (validated by `orchestra-gateway
//!   check`, cluster DNS names aside), `terminationGracePeriodSeconds` against `grace_period`;
//! - every metric name (and label) the Grafana dashboard and the Prometheus rules query is
//!   exported by a running gateway's `/metrics`;
//! - the Prometheus rules are the `[[alerts]]` rules of `config/gateway.toml`: same names, `for`,
//!   comparison and threshold, on the metric each gateway rule reads;
//! - the Dockerfile is multi-stage, runs as a non-root user and checks `/healthz`; the systemd
//!   unit is sandboxed and stops within the drain time.

mod common;
mod deploy_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::admin::*;
use common::*;
use deploy_support::*;
use orchestra_config::duration::parse_duration;
use orchestra_config::{AlertMetric, AlertRule, AlertSubject, Comparison};
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use testkit::{EchoServer, WebhookReceiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_manifests_parse_and_fit_together() {
    let all = manifests();
    for (file, v) in &all {
        assert!(v["apiVersion"].is_string(), "{file}: apiVersion");
        assert!(v["kind"].is_string(), "{file}: kind");
    }
    // The kustomization lists every manifest.
    let kustomization = &all
        .iter()
        .find(|(f, _)| f == "kustomization.yaml")
        .expect("kustomization.yaml")
        .1;
    let listed: BTreeSet<&str> = kustomization["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let files: BTreeSet<&str> = all
        .iter()
        .map(|(f, _)| f.as_str())
        .filter(|f| *f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files);

    let deployment = objects(&all, "Deployment")[0];
    let pod = s(deployment, "spec.template");
    let pod_labels = s(pod, "metadata.labels");
    assert!(labels_match(
        s(deployment, "spec.selector.matchLabels"),
        pod_labels
    ));
    let container = s(pod, "spec.containers.0");
    let ports: BTreeMap<String, (u64, String)> = container["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                text(p, "name").to_string(),
                (
                    p["containerPort"].as_u64().expect("port"),
                    text(p, "protocol").to_string(),
                ),
            )
        })
        .collect();
    let expect_ports = [
        ("http", 8080, "TCP"),
        ("https", 8443, "TCP"),
        ("h3", 8443, "UDP"),
        ("admin", 9901, "TCP"),
    ];
    for (name, port, proto) in expect_ports {
        assert_eq!(
            ports.get(name),
            Some(&(port, proto.to_string())),
            "container port {name}"
        );
    }
    let probe = |which: &str| {
        let p = s(container, &format!("{which}.httpGet"));
        (text(p, "path").to_string(), ports[text(p, "port")].0)
    };
    assert_eq!(probe("readinessProbe"), ("/readyz".to_string(), 8080));
    assert_eq!(probe("livenessProbe"), ("/healthz".to_string(), 8080));
    let security = s(pod, "spec.securityContext");
    assert_eq!(security["runAsNonRoot"], true);
    assert!(security["runAsUser"].as_u64().is_some_and(|u| u != 0));
    assert_eq!(
        s(container, "securityContext.readOnlyRootFilesystem"),
        &Yaml::Bool(true)
    );
    assert_eq!(
        s(container, "securityContext.allowPrivilegeEscalation"),
        &Yaml::Bool(false)
    );

    // The public Service: TCP 8080 and 8443, UDP 8443, onto named container ports.
    let services = objects(&all, "Service");
    let public = services
        .iter()
        .find(|v| v["spec"]["type"].as_str() == Some("LoadBalancer"))
        .expect("a LoadBalancer Service");
    assert!(labels_match(s(public, "spec.selector"), pod_labels));
    let mut exposed: Vec<(u64, String)> = Vec::new();
    for p in s(public, "spec.ports").as_sequence().expect("ports") {
        let target = text(p, "targetPort");
        let (cport, cproto) = &ports[target];
        assert_eq!(text(p, "protocol"), cproto, "{target}");
        assert_eq!(p["port"].as_u64(), Some(*cport));
        exposed.push((*cport, cproto.clone()));
    }
    exposed.sort();
    assert_eq!(
        exposed,
        [
            (8080, "TCP".into()),
            (8443, "TCP".into()),
            (8443, "UDP".into())
        ]
    );
    for other in services
        .iter()
        .filter(|v| v["spec"]["type"].as_str() != Some("LoadBalancer"))
    {
        assert_eq!(
            text(other, "spec.type"),
            "ClusterIP",
            "admin stays inside the cluster"
        );
    }

    let hpa = objects(&all, "HorizontalPodAutoscaler")[0];
    assert_eq!(text(hpa, "spec.scaleTargetRef.kind"), "Deployment");
    assert_eq!(
        text(hpa, "spec.scaleTargetRef.name"),
        text(deployment, "metadata.name")
    );
    assert!(s(hpa, "spec.minReplicas").as_u64().is_some_and(|n| n >= 2));
    let pdb = objects(&all, "PodDisruptionBudget")[0];
    assert!(labels_match(
        s(pdb, "spec.selector.matchLabels"),
        pod_labels
    ));

    // The ConfigMap's config: mounted where the container reads it, listening on the
    // container's ports, and valid for `orchestra-gateway check`.
    let configmap = objects(&all, "ConfigMap")[0];
    let toml_text = configmap["data"]["gateway.toml"]
        .as_str()
        .expect("data.\"gateway.toml\"");
    let config: toml::Table = toml_text.parse().expect("ConfigMap gateway.toml is TOML");
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let mount = container["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == "config")
        .expect("config mount");
    assert_eq!(
        args,
        [
            "run",
            "-c",
            &format!("{}/gateway.toml", text(mount, "mountPath"))
        ]
    );
    for (key, name) in [
        ("http", "http"),
        ("https", "https"),
        ("h3", "h3"),
        ("admin", "admin"),
    ] {
        let addr = config["listeners"][key].as_str().expect("listener");
        assert_eq!(
            addr,
            format!("0.0.0.0:{}", ports[name].0),
            "listeners.{key}"
        );
    }
    let grace = parse_duration(config["server"]["grace_period"].as_str().expect("grace"))
        .expect("duration");
    let pre_stop: u64 = s(container, "lifecycle.preStop.exec.command")
        .as_sequence()
        .and_then(|c| c.get(1))
        .and_then(Yaml::as_str)
        .and_then(|n| n.parse().ok())
        .expect("preStop sleep N");
    let termination = s(pod, "spec.terminationGracePeriodSeconds")
        .as_u64()
        .expect("tgps");
    assert!(
        termination >= grace.as_secs() + pre_stop,
        "terminationGracePeriodSeconds {termination} < preStop {pre_stop} + grace_period {grace:?}"
    );
    assert!(
        termination <= grace.as_secs() + pre_stop + 15,
        "not needlessly long"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        toml_text
            .replace(".svc.cluster.local", "")
            .replace("orchestra-api.orchestra", "127.0.0.1")
            .replace("orchestra-web.orchestra", "127.0.0.1"),
    )
    .expect("write");
    let out = cli(
        &["check", "-c", path.to_str().expect("path")],
        &[("ORCHESTRA_ADMIN_TOKEN", "t")],
    )
    .await;
    assert!(out.status.success(), "{}", describe_output(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_and_prometheus_query_only_what_metrics_exports() {
    let dashboard: Json = serde_json::from_str(&read("deploy/grafana/orchestra-gateway.json"))
        .expect("the Grafana dashboard is JSON");
    let mut exprs = grafana_exprs(&dashboard);
    let panels = dashboard["panels"].as_array().expect("panels").len();
    assert!(exprs.len() > panels, "every panel queries something");
    let rules = rules_yaml();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            exprs.push(text(rule, "expr").to_string());
        }
    }
    let selectors: Vec<(String, Vec<String>)> =
        exprs.iter().flat_map(|e| promql_selectors(e)).collect();
    assert!(selectors.len() >= 20, "{selectors:?}");

    // A running gateway with every kind of series: routes with 200s and 500s, targets,
    // protocols, an upstream with health state, an alert rule.
    let echo = EchoServer::start("e").await.expect("echo");
    let hook = WebhookReceiver::start().await.expect("receiver");
    let body = format!(
        "{}{}[[alerts]]\nname = \"errors\"\nmetric = \"error_rate\"\nabove = 0.5\nwebhook = \"{}\"\n",
        upstream("demo", &[echo.addr()], ""),
        route("api", "path_prefix = \"/api/\"", "demo", "strip_prefix = true"),
        hook.url("/h"),
    );
    let gw = gateway()
        .admin_token("t")
        .config(body)
        .start()
        .await
        .expect("gateway");
    wait_ready(&gw).await;
    let client = http_client();
    for path in ["/api/x", "/api/status/500", "/nowhere"] {
        client.get(gw.http_url(path)).send().await.expect("request");
    }
    let admin = Admin::new(&gw);
    admin.wait_series_count("route:api:total", 2).await;
    common::ops::wait_alert(&admin, "errors", WAIT, |a| {
        a["last_evaluated_unix"].is_number()
    })
    .await;
    let metrics = admin.metrics().await;
    prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string())))
        .expect("/metrics is valid Prometheus text");
    // Sample names as exposed (`..._bucket`, `..._count` included).
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            l.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    let raw_labels = |name: &str| -> BTreeSet<String> {
        let mut keys = BTreeSet::new();
        for line in metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
        {
            let inner = &line[name.len() + 1..line.find('}').unwrap_or(line.len())];
            for kv in inner.split("\",") {
                if let Some((k, _)) = kv.split_once('=') {
                    keys.insert(k.trim().to_string());
                }
            }
        }
        keys
    };
    for (name, labels) in &selectors {
        assert!(
            exported.contains(name),
            "{name} is queried but /metrics does not export it; exported: {exported:?}"
        );
        let have = raw_labels(name);
        for l in labels
            .iter()
            .filter(|l| !["job", "instance", "le"].contains(&l.as_str()))
        {
            assert!(
                have.contains(l),
                "{name} has no label {l:?} in /metrics (has {have:?})"
            );
        }
    }
    drop(hook);
}

/// The gateway rule a Prometheus rule must be equivalent to: `(metric selector fragment,
/// comparison, threshold in Prometheus units)`.
fn prometheus_form(rule: &AlertRule) -> (String, &'static str, f64) {
    let op = match rule.comparison {
        Comparison::Above => ">",
        Comparison::Below => "<",
    };
    match (&rule.subject, rule.metric) {
        (AlertSubject::Latency { name, upstream, .. }, m) => (
            format!(
                "histogram_quantile({}, sum by (le) (rate(orchestra_{}_duration_seconds_bucket{{kind=\"route\",name=\"{name}\"}}",
                m.quantile().expect("latency"),
                if *upstream { "upstream" } else { "request" },
            ),
            op,
            rule.threshold / 1e6,
        ),
        (AlertSubject::Routes(Some(route)), AlertMetric::ErrorRate) => (
            format!("orchestra_requests_total{{route=\"{route}\",code=~\"5..|0\"}}"),
            op,
            rule.threshold,
        ),
        (AlertSubject::Upstream(u), _) => (
            format!("orchestra_upstream_healthy_targets{{upstream=\"{u}\"}}"),
            op,
            rule.threshold,
        ),
        (AlertSubject::Agents, _) => ("orchestra_agents_online".into(), op, rule.threshold),
        other => panic!("no Prometheus form for {other:?}"),
    }
}

/// The trailing `OP NUMBER` of a rule expression.
fn comparison_of(expr: &str) -> (&str, f64) {
    let e = expr.trim();
    let at = e.rfind(['>', '<']).expect("a comparison");
    let n = e[at + 1..].trim().parse().expect("a number");
    (&e[at..at + 1], n)
}

fn assert_equivalent(rule: &AlertRule, prom: &Yaml) {
    let name = &*rule.name;
    assert_eq!(
        parse_duration(text(prom, "for")).expect("for"),
        rule.for_,
        "{name}: for"
    );
    let expr: String = text(prom, "expr")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let (fragment, op, threshold) = prometheus_form(rule);
    let fragment: String = fragment.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        expr.contains(&fragment),
        "{name}: {expr:?} does not read {fragment:?}"
    );
    let (got_op, got) = comparison_of(&expr);
    assert_eq!(got_op, op, "{name}: comparison");
    assert!(
        (got - threshold).abs() < 1e-9,
        "{name}: threshold {got} vs {threshold}"
    );
    if rule.window > Duration::ZERO {
        let w = format!("[{}s]", rule.window.as_secs());
        let minutes = format!("[{}m]", rule.window.as_secs() / 60);
        assert!(
            expr.contains(&w) || expr.contains(&minutes),
            "{name}: window {w}"
        );
    }
}

#[test]
fn prometheus_rules_are_the_shipped_gateway_rules() {
    let shipped = shipped_config();
    assert!(!shipped.alerts.is_empty());
    let rules = rules_yaml();
    let group = |name: &str| -> Vec<Yaml> {
        rules["groups"]
            .as_sequence()
            .expect("groups")
            .iter()
            .find(|g| g["name"] == name)
            .and_then(|g| g["rules"].as_sequence().cloned())
            .unwrap_or_else(|| panic!("group {name}"))
    };
    let main = group("orchestra-gateway");
    let names: Vec<&str> = main.iter().map(|r| text(r, "alert")).collect();
    let expected: Vec<&str> = shipped.alerts.iter().map(|r| &*r.name).collect();
    assert_eq!(names, expected);
    for (rule, prom) in shipped.alerts.iter().zip(&main) {
        assert_equivalent(rule, prom);
    }
    // The commented agents rule of config/gateway.toml, with an [agents] section.
    let file = read("config/gateway.toml");
    let start = file.find("# [[alerts]]").expect("commented agents rule");
    let commented: String = file[start..]
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim_start())
        .collect::<Vec<_>>()
        .join("\n");
    let with_hub = format!(
        "[agents]\nkeys_file = \"k.toml\"\n[[upstreams]]\nname = \"u\"\ntargets = [{{ addr = \"127.0.0.1:1\" }}]\n\
         [[routes]]\nupstream = \"u\"\n{commented}\n"
    );
    let agents = orchestra_config::from_str(&with_hub, "commented").expect("commented rule");
    let prom = group("orchestra-gateway-agents");
    assert_eq!(text(&prom[0], "alert"), &*agents.alerts[0].name);
    assert_equivalent(&agents.alerts[0], &prom[0]);
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_a_healthcheck() {
    let docker = read("deploy/Dockerfile");
    let lines: Vec<&str> = docker
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let froms = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage");
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("FROM");
    let runtime = &lines[last_from..];
    let user = runtime
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid != "0" && uid != "root" && !uid.is_empty(),
        "non-root: {user}"
    );
    assert!(runtime.iter().any(|l| l.starts_with("COPY --from=build")));
    let joined = docker.replace("\\\n", " ");
    let health = joined
        .lines()
        .find(|l| l.trim_start().starts_with("HEALTHCHECK"))
        .expect("HEALTHCHECK");
    assert!(health.contains("http://127.0.0.1:8080/healthz"), "{health}");
    let expose = runtime
        .iter()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE");
    for p in ["8080/tcp", "8443/tcp", "8443/udp", "9901/tcp"] {
        assert!(expose.split_whitespace().any(|x| x == p), "EXPOSE {p}");
    }
    assert!(joined.contains("cargo build --release --locked -p orchestra-gateway"));
    assert!(runtime.contains(&"STOPSIGNAL SIGTERM"));
    assert!(repo("deploy/Dockerfile.dockerignore").exists());
}

#[test]
fn systemd_unit_is_sandboxed_and_stops_within_the_drain_time() {
    let unit = read("deploy/systemd/orchestra-gateway.service");
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').expect("KEY=VALUE");
        keys.entry(format!("{section}{k}"))
            .or_default()
            .push(v.to_string());
    }
    let one = |k: &str| -> &str {
        keys.get(&format!("[Service]{k}"))
            .and_then(|v| v.last())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("[Service] {k} missing"))
    };
    for (k, v) in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("DynamicUser", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("MemoryDenyWriteExecute", "yes"),
        ("KillSignal", "SIGTERM"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(one(k), v, "[Service] {k}");
    }
    assert!(
        one("ExecStart").contains("orchestra-gateway run -c /etc/orchestra-gateway/gateway.toml")
    );
    assert!(one("ExecReload").contains("-HUP $MAINPID"));
    let shipped = shipped_config();
    // systemd reads a bare number as seconds.
    let raw = one("TimeoutStopSec");
    let stop = parse_duration(raw)
        .or_else(|_| parse_duration(&format!("{raw}s")))
        .expect("TimeoutStopSec");
    assert!(
        stop > shipped.server.grace_period,
        "TimeoutStopSec {stop:?} must exceed grace_period {:?}",
        shipped.server.grace_period
    );
    assert_eq!(
        keys.get("[Install]WantedBy").map(|v| v[0].as_str()),
        Some("multi-user.target")
    );
}
