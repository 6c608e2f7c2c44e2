//! Gauges and counters `GET /metrics` exports besides the latency registry: upstream target
//! health and traffic, agents online, alert states, config version, requests in flight, access-log
//! lines dropped.

use std::fmt::Write;

use crate::state::GatewayState;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Appends the gauges to a Prometheus text exposition.
pub(super) fn append(out: &mut String, state: &GatewayState) {
    let live = state.live();
    let upstreams: Vec<_> = live
        .snapshot
        .upstreams
        .iter()
        .map(|u| (escape(&u.name), u.balancer.snapshot()))
        .collect();
    header(
        out,
        "orchestra_upstream_targets",
        "gauge",
        "Targets configured per upstream.",
    );
    for (name, targets) in &upstreams {
        let _ = writeln!(
            out,
            "orchestra_upstream_targets{{upstream=\"{name}\"}} {}",
            targets.len()
        );
    }
    header(
        out,
        "orchestra_upstream_healthy_targets",
        "gauge",
        "Targets per upstream that are healthy and not ejected.",
    );
    for (name, targets) in &upstreams {
        let healthy = targets.iter().filter(|t| t.healthy && !t.ejected).count();
        let _ = writeln!(
            out,
            "orchestra_upstream_healthy_targets{{upstream=\"{name}\"}} {healthy}"
        );
    }
    header(
        out,
        "orchestra_upstream_target_requests_total",
        "counter",
        "Requests sent to a target (reset when its upstream's definition changes).",
    );
    for (name, targets) in &upstreams {
        for t in targets {
            let _ = writeln!(
                out,
                "orchestra_upstream_target_requests_total{{upstream=\"{name}\",target=\"{}\"}} {}",
                t.addr, t.requests
            );
        }
    }
    header(
        out,
        "orchestra_upstream_target_errors_total",
        "counter",
        "Failed requests to a target (reset when its upstream's definition changes).",
    );
    for (name, targets) in &upstreams {
        for t in targets {
            let _ = writeln!(
                out,
                "orchestra_upstream_target_errors_total{{upstream=\"{name}\",target=\"{}\"}} {}",
                t.addr, t.errors
            );
        }
    }
    header(
        out,
        "orchestra_upstream_target_in_flight",
        "gauge",
        "Requests in flight to a target.",
    );
    for (name, targets) in &upstreams {
        for t in targets {
            let _ = writeln!(
                out,
                "orchestra_upstream_target_in_flight{{upstream=\"{name}\",target=\"{}\"}} {}",
                t.addr, t.in_flight
            );
        }
    }
    header(
        out,
        "orchestra_agents_online",
        "gauge",
        "Agents connected to the agent hub.",
    );
    let _ = writeln!(out, "orchestra_agents_online {}", state.agents_online());
    header(
        out,
        "orchestra_alert_firing",
        "gauge",
        "1 while an alert rule fires, else 0.",
    );
    for e in state.monitor.alerts().entries() {
        let _ = writeln!(
            out,
            "orchestra_alert_firing{{alert=\"{}\"}} {}",
            escape(&e.state.rule.name),
            u8::from(e.state.is_firing())
        );
    }
    header(
        out,
        "orchestra_config_version",
        "gauge",
        "The running config version.",
    );
    let _ = writeln!(out, "orchestra_config_version {}", live.version);
    header(
        out,
        "orchestra_in_flight_requests",
        "gauge",
        "Requests being handled, across all fronts.",
    );
    let _ = writeln!(out, "orchestra_in_flight_requests {}", state.in_flight());
    header(
        out,
        "orchestra_access_log_dropped_total",
        "counter",
        "Access-log lines dropped because the log writer was behind (a stalled or slow stderr); requests never wait for the log.",
    );
    let _ = writeln!(
        out,
        "orchestra_access_log_dropped_total {}",
        crate::access_log::dropped()
    );
    header(
        out,
        "orchestra_tls_handshake_failures_total",
        "counter",
        "TLS handshakes on the TCP listeners that failed, were abandoned or timed out (TCP health checks and scanners included); logged at debug level only.",
    );
    let _ = writeln!(
        out,
        "orchestra_tls_handshake_failures_total {}",
        pingora::services::listening::handshake_failures()
    );
}
