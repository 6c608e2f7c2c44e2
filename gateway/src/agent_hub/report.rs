//! What the admin API shows of the agent hub: `GET /admin/agents`, `GET /admin/tasks`, and the
//! agent lines of `GET /metrics` (Prometheus text).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use super::{AgentService, AUTH_REASONS};

/// `GET /admin/agents`: connected agents with capabilities, system info, RTT, running tasks,
/// connected since and transport.
pub fn agents_json(svc: &AgentService) -> Value {
    json!({ "agents": svc.hub().agents() })
}

/// `GET /admin/tasks`: live tasks (queued, starting, running, orphaned) with agent, state, seq
/// reached and subscribers.
pub fn tasks_json(svc: &AgentService) -> Value {
    let (queued, starting, running, orphaned) = svc.hub().task_counts();
    json!({
        "tasks": svc.hub().tasks(),
        "counts": {"queued": queued, "starting": starting, "running": running, "orphaned": orphaned},
    })
}

/// Appends the agent metrics to a Prometheus text exposition.
pub fn prometheus(svc: &AgentService, out: &mut String) {
    let hub = svc.hub();
    let m = hub.metrics();
    let (quic, ws) = hub.agents_by_transport();
    let _ = writeln!(
        out,
        "# HELP orchestra_agents_connected Agents connected now."
    );
    let _ = writeln!(out, "# TYPE orchestra_agents_connected gauge");
    let _ = writeln!(
        out,
        "orchestra_agents_connected{{transport=\"quic\"}} {quic}"
    );
    let _ = writeln!(out, "orchestra_agents_connected{{transport=\"ws\"}} {ws}");
    let (queued, starting, running, orphaned) = hub.task_counts();
    let _ = writeln!(out, "# HELP orchestra_agent_tasks Live tasks by state.");
    let _ = writeln!(out, "# TYPE orchestra_agent_tasks gauge");
    for (state, n) in [
        ("queued", queued),
        ("starting", starting),
        ("running", running),
        ("orphaned", orphaned),
    ] {
        let _ = writeln!(out, "orchestra_agent_tasks{{state=\"{state}\"}} {n}");
    }
    let counter = |out: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {v}");
    };
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    for (name, help, value) in [
        (
            "orchestra_agent_connects_total",
            "Agent registrations.",
            &m.connects,
        ),
        (
            "orchestra_agent_disconnects_total",
            "Agent connections ended.",
            &m.disconnects,
        ),
        (
            "orchestra_agent_replaced_total",
            "Connections replaced by a newer one with the same agent id.",
            &m.replaced,
        ),
        (
            "orchestra_agent_offline_total",
            "Connections closed for missed heartbeats.",
            &svc.metrics().offline,
        ),
        (
            "orchestra_agent_bad_frames_total",
            "Connections or task streams ended for malformed or out-of-place frames.",
            &svc.metrics().bad_frames,
        ),
        (
            "orchestra_agent_tasks_started_total",
            "Tasks started.",
            &m.tasks_started,
        ),
        (
            "orchestra_agent_events_received_total",
            "Task events received from agents, duplicates included.",
            &m.events_received,
        ),
        (
            "orchestra_agent_events_duplicate_total",
            "Duplicate task events dropped.",
            &m.events_duplicate,
        ),
        (
            "orchestra_agent_events_acked_total",
            "Task events acked to agents once durable.",
            &m.events_acked,
        ),
        (
            "orchestra_agent_subscribers_lagged_total",
            "Task subscribers cut off for falling behind.",
            &m.subscribers_lagged,
        ),
        (
            "orchestra_agent_protocol_errors_total",
            "Task streams ended for breaking the protocol.",
            &m.protocol_errors,
        ),
        (
            "orchestra_agent_grace_expired_total",
            "Tasks failed because their agent did not come back in time.",
            &m.grace_expired,
        ),
    ] {
        counter(out, name, help, get(value));
    }
    let _ = writeln!(
        out,
        "# HELP orchestra_agent_tasks_finished_total Tasks ended, by final state."
    );
    let _ = writeln!(out, "# TYPE orchestra_agent_tasks_finished_total counter");
    for (i, state) in ["completed", "failed", "cancelled"].iter().enumerate() {
        let _ = writeln!(
            out,
            "orchestra_agent_tasks_finished_total{{state=\"{state}\"}} {}",
            get(&m.tasks_finished[i])
        );
    }
    let _ = writeln!(
        out,
        "# HELP orchestra_agent_auth_failures_total Agent registrations refused, by reason."
    );
    let _ = writeln!(out, "# TYPE orchestra_agent_auth_failures_total counter");
    for (i, reason) in AUTH_REASONS.iter().enumerate() {
        let _ = writeln!(
            out,
            "orchestra_agent_auth_failures_total{{reason=\"{reason}\"}} {}",
            get(&svc.metrics().auth_failures[i])
        );
    }
}
