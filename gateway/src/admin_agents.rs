//! The admin API's agent endpoints (on the admin listener, behind its bearer token).
//!
//! | call | does |
//! |---|---|
//! | `GET /admin/agents` | connected agents (SPEC) |
//! | `GET /admin/tasks` | live tasks: queued, starting, running, orphaned (SPEC) |
//! | `POST /admin/tasks` | starts a task: `{"tool", "prompt", "requires"?, "agent_id"?, "cwd"?, "priority"?, "session_id"?, "owner"?}` → 201 `{"task_id", "agent_id", "status"}`; 503 `AGENT_001`, 400 `PARAM_001` — *extension* |
//! | `GET /admin/tasks/{id}` | one live task — *extension* |
//! | `POST /admin/tasks/{id}/input` | the body goes to the task's stdin (`?close=true` closes stdin after it) — *extension* |
//! | `POST /admin/tasks/{id}/stop` | stops the task (409 once it is over, 404 for an unknown id) — *extension* |
//! | `GET /admin/tasks/{id}/events?since=S&limit=N&wait_ms=W` | the task's events after `S` (history from the backend, then the live tail), as `{"events": [{"type", "data"}], "last_seq", "ended"}`; waits up to `W` ms (default 100) for more when it reaches the live end — *extension* |
//!
//! The extensions let an operator (and the end-to-end tests) drive tasks without a browser; they
//! call the same hub API as the realtime channel.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use orchestra_backend::model::{NewSession, WriteOp};
use orchestra_hub::{HubError, StartTask, SubscriptionItem};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::admin::{error, json_response, query_param, Resp};
use crate::agent_hub::{report, AgentService};
use crate::state::GatewayState;

/// Largest body of `POST /admin/tasks` and of task input.
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// Most events one `events` call returns.
pub const MAX_EVENTS: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    tool: String,
    prompt: String,
    #[serde(default)]
    requires: Vec<String>,
    agent_id: Option<String>,
    cwd: Option<String>,
    #[serde(default)]
    priority: i32,
    session_id: Option<String>,
    owner: Option<String>,
}

/// True for the paths served here.
pub fn owns(path: &str) -> bool {
    path == "/admin/agents" || path == "/admin/tasks" || path.starts_with("/admin/tasks/")
}

fn hub_error(e: &HubError) -> Resp {
    let status = match e {
        HubError::NoCapableAgent { .. }
        | HubError::AgentUnavailable(_)
        | HubError::QueueFull(_)
        | HubError::Reconnecting(_) => StatusCode::SERVICE_UNAVAILABLE,
        HubError::UnknownTask(_) => StatusCode::NOT_FOUND,
        HubError::TaskEnded(_) => StatusCode::CONFLICT,
        HubError::InputBusy(_) => StatusCode::TOO_MANY_REQUESTS,
        HubError::BadRequest { .. } => StatusCode::BAD_REQUEST,
        HubError::Backend(_) => StatusCode::BAD_GATEWAY,
    };
    error(status, e.code(), e.to_string())
}

/// The answer to a refused `input` or `stop`. A task no longer in the hub's memory is either
/// unknown (404) or over and stored in the backend (409, as while its end was being stored):
/// the answer must not depend on how fast the backend made the end durable.
async fn command_error(svc: &AgentService, id: &str, e: HubError) -> Resp {
    if let HubError::UnknownTask(_) = e {
        if let Ok(Some(_)) = svc.hub().persist().task(id).await {
            return hub_error(&HubError::TaskEnded(id.to_string()));
        }
    }
    hub_error(&e)
}

async fn body(req: Request<Incoming>) -> Result<Bytes, Resp> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PARAM_001",
            format!("body: {e} (limit {MAX_BODY} bytes)"),
        )),
    }
}

/// Serves the agent endpoints.
pub async fn handle(req: Request<Incoming>, state: &Arc<GatewayState>) -> Resp {
    let Some(svc) = state.agents().cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            "AGENT_001",
            "the agent hub is off: add an [agents] section (and restart)",
        );
    };
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/admin/agents") => json_response(StatusCode::OK, report::agents_json(&svc)),
        (Method::GET, "/admin/tasks") => json_response(StatusCode::OK, report::tasks_json(&svc)),
        (Method::POST, "/admin/tasks") => start(req, &svc).await,
        (method, p) => {
            let rest = &p["/admin/tasks/".len().min(p.len())..];
            let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
            match (method, action) {
                (Method::GET, "") => match svc.hub().task(id) {
                    Some(t) => json_response(StatusCode::OK, json!(t)),
                    None => hub_error(&HubError::UnknownTask(id.to_string())),
                },
                (Method::POST, "input") => {
                    let close = query_param(&req, "close") == Some("true");
                    let id = id.to_string();
                    let data = match body(req).await {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    match svc.hub().input(&id, data, close) {
                        Ok(()) => json_response(StatusCode::OK, json!({"task_id": id})),
                        Err(e) => command_error(&svc, &id, e).await,
                    }
                }
                (Method::POST, "stop") => match svc.hub().stop(id) {
                    Ok(()) => json_response(StatusCode::OK, json!({"task_id": id})),
                    Err(e) => command_error(&svc, id, e).await,
                },
                (Method::GET, "events") => events(&req, &svc, id).await,
                _ => error(
                    StatusCode::NOT_FOUND,
                    "NO_ROUTE",
                    format!("no admin endpoint {p}"),
                ),
            }
        }
    }
}

async fn start(req: Request<Incoming>, svc: &AgentService) -> Resp {
    let raw = match body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let b: StartBody = match serde_json::from_slice(&raw) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "PARAM_001", format!("body: {e}")),
    };
    let owner = b.owner.unwrap_or_else(|| "admin".to_string());
    let session_id = b.session_id.unwrap_or_else(orchestra_hub::new_id);
    if session_id.is_empty() || session_id.len() > 256 || owner.len() > 256 {
        return error(
            StatusCode::BAD_REQUEST,
            "PARAM_001",
            "session_id and owner: 1-256 bytes",
        );
    }
    // Idempotent on its id: a task's session exists before the task (ordered writes).
    drop(
        svc.hub()
            .persist()
            .write(WriteOp::CreateSession(NewSession {
                id: Some(session_id.clone()),
                owner: owner.clone(),
            })),
    );
    let started = svc.hub().start_task(StartTask {
        owner,
        session_id,
        tool: b.tool,
        prompt: b.prompt,
        agent_id: b.agent_id,
        requires: b.requires,
        cwd: b.cwd,
        priority: b.priority,
    });
    match started {
        Ok(s) => json_response(
            StatusCode::CREATED,
            json!({"task_id": s.task_id, "agent_id": s.agent_id, "status": s.status.as_str()}),
        ),
        Err(e) => hub_error(&e),
    }
}

async fn events(req: &Request<Incoming>, svc: &AgentService, id: &str) -> Resp {
    let num = |name: &str, default: u64| {
        query_param(req, name).map_or(Ok(default), |v| {
            v.parse::<u64>().map_err(|_| name.to_string())
        })
    };
    let (since, limit, wait_ms) = match (num("since", 0), num("limit", 1000), num("wait_ms", 100)) {
        (Ok(s), Ok(l), Ok(w)) => (s, (l as usize).clamp(1, MAX_EVENTS), w.min(30_000)),
        (Err(n), _, _) | (_, Err(n), _) | (_, _, Err(n)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "PARAM_001",
                format!("{n} must be a non-negative integer"),
            )
        }
    };
    let mut sub = match svc.hub().subscribe(id, since).await {
        Ok(s) => s,
        Err(e) => return hub_error(&e),
    };
    let mut out: Vec<Value> = Vec::new();
    let mut ended = false;
    let wait = Duration::from_millis(wait_ms);
    while out.len() < limit {
        match tokio::time::timeout(wait, sub.next()).await {
            Ok(Some(SubscriptionItem::Event(e))) => {
                let data: Value = serde_json::from_slice(&e.data).unwrap_or(Value::Null);
                out.push(json!({"type": e.kind.as_str(), "data": data}));
            }
            Ok(Some(SubscriptionItem::Lagged { .. })) => break,
            Ok(Some(SubscriptionItem::Failed { error: e, .. })) => {
                if out.is_empty() {
                    return hub_error(&e);
                }
                break;
            }
            Ok(None) => {
                ended = true;
                break;
            }
            Err(_) => break,
        }
    }
    json_response(
        StatusCode::OK,
        json!({"events": out, "last_seq": sub.last_seq(), "ended": ended}),
    )
}
