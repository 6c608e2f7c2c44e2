//! The handlers of SPEC "Backend service", one per method and path.
//!
//! Creates are idempotent on the id (201 with the new row, 200 with the stored one when the id
//! exists); `PUT /v1/agents/{id}` likewise answers 201 or 200. Event appends are idempotent on
//! `(task, seq)`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{check_id, Id, JsonBody, Params};
use super::AppState;
use crate::model::{
    AgentList, AgentUpsert, BulkEvent, EventPage, NewEvent, NewSession, NewTask, SessionList,
    TaskList, TaskPatch, TaskState,
};
use crate::store::{Page, TaskFilter};

/// Default page size of the list endpoints.
pub const LIST_DEFAULT: u32 = 100;
/// Largest page size of the list endpoints.
pub const LIST_MAX: u32 = 1000;
/// Default `limit` of an event range read.
pub const EVENTS_DEFAULT: u32 = 1000;
/// Largest `limit` of an event range read.
pub const EVENTS_MAX: u32 = 10_000;

type S = State<Arc<AppState>>;

fn created<T: serde::Serialize>(created: bool, row: T) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(row)).into_response()
}

fn limit(given: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match given {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit {n} out of range: 1 to {max}"
        ))),
    }
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::NotFound(format!("{what} {id} not found"))
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `GET /healthz`: 200 when the database answers.
pub async fn healthz(State(st): S) -> Response {
    match st.store.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ok", "database": st.store.describe()}))
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database does not answer");
            ApiError::Unavailable(format!("database does not answer: {e}")).into_response()
        }
    }
}

/// Any path the service does not serve.
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no endpoint {method} {}", uri.path()))
}

/// A served path with another method.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

/// `?limit=&cursor=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

impl PageQuery {
    fn page(self) -> Result<Page, ApiError> {
        Ok(Page {
            limit: limit(self.limit, LIST_DEFAULT, LIST_MAX)?,
            after: self.cursor.filter(|c| !c.is_empty()),
        })
    }
}

/// `PUT /v1/agents/{id}`.
pub async fn upsert_agent(
    State(st): S,
    Id(id): Id,
    JsonBody(body): JsonBody<AgentUpsert>,
) -> Result<Response, ApiError> {
    let c = st.store.upsert_agent(&id, &body).await?;
    Ok(created(c.created, c.row))
}

/// `GET /v1/agents/{id}`.
pub async fn get_agent(State(st): S, Id(id): Id) -> Result<Response, ApiError> {
    match st.store.agent(&id).await? {
        Some(a) => Ok(Json(a).into_response()),
        None => Err(not_found("agent", &id)),
    }
}

/// `GET /v1/agents?limit=&cursor=`.
pub async fn list_agents(
    State(st): S,
    Params(q): Params<PageQuery>,
) -> Result<Json<AgentList>, ApiError> {
    let p = st.store.agents(&q.page()?).await?;
    Ok(Json(AgentList {
        agents: p.items,
        next_cursor: p.next,
    }))
}

/// `POST /v1/sessions`.
pub async fn create_session(
    State(st): S,
    JsonBody(body): JsonBody<NewSession>,
) -> Result<Response, ApiError> {
    let id = match body.id {
        Some(id) => {
            check_id("id", &id)?;
            id
        }
        None => new_id(),
    };
    let c = st
        .store
        .create_session(&id, &body.owner, (st.now)())
        .await?;
    Ok(created(c.created, c.row))
}

/// `GET /v1/sessions/{id}`.
pub async fn get_session(State(st): S, Id(id): Id) -> Result<Response, ApiError> {
    match st.store.session(&id).await? {
        Some(s) => Ok(Json(s).into_response()),
        None => Err(not_found("session", &id)),
    }
}

/// `?owner=&limit=&cursor=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionQuery {
    owner: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/sessions?owner=SUB&limit=&cursor=`.
pub async fn list_sessions(
    State(st): S,
    Params(q): Params<SessionQuery>,
) -> Result<Json<SessionList>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let p = st.store.sessions(q.owner.as_deref(), &page).await?;
    Ok(Json(SessionList {
        sessions: p.items,
        next_cursor: p.next,
    }))
}

/// `POST /v1/tasks`.
pub async fn create_task(
    State(st): S,
    JsonBody(body): JsonBody<NewTask>,
) -> Result<Response, ApiError> {
    let id = match &body.id {
        Some(id) => {
            check_id("id", id)?;
            id.clone()
        }
        None => new_id(),
    };
    check_id("session_id", &body.session_id)?;
    let c = st.store.create_task(&id, &body, (st.now)()).await?;
    Ok(created(c.created, c.row))
}

/// `GET /v1/tasks/{id}`.
pub async fn get_task(State(st): S, Id(id): Id) -> Result<Response, ApiError> {
    match st.store.task(&id).await? {
        Some(t) => Ok(Json(t).into_response()),
        None => Err(not_found("task", &id)),
    }
}

/// `?session_id=&agent_id=&state=&limit=&cursor=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    session_id: Option<String>,
    agent_id: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/tasks?session_id=&agent_id=&state=&limit=&cursor=`.
pub async fn list_tasks(
    State(st): S,
    Params(q): Params<TaskQuery>,
) -> Result<Json<TaskList>, ApiError> {
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(TaskState::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown state {s:?}: expected pending, assigned, running, completed, failed or cancelled"
            ))
        })?),
    };
    let filter = TaskFilter {
        session_id: q.session_id,
        agent_id: q.agent_id,
        state,
    };
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let p = st.store.tasks(&filter, &page).await?;
    Ok(Json(TaskList {
        tasks: p.items,
        next_cursor: p.next,
    }))
}

/// `PATCH /v1/tasks/{id}`.
pub async fn patch_task(
    State(st): S,
    Id(id): Id,
    JsonBody(body): JsonBody<TaskPatch>,
) -> Result<Response, ApiError> {
    let t = st.store.patch_task(&id, &body, (st.now)()).await?;
    Ok(Json(t).into_response())
}

/// `POST /v1/tasks/{id}/events`.
pub async fn append_events(
    State(st): S,
    Id(id): Id,
    JsonBody(body): JsonBody<Vec<NewEvent>>,
) -> Result<Response, ApiError> {
    let r = st.store.append_events(&id, &body, (st.now)()).await?;
    Ok(Json(r).into_response())
}

/// `POST /v1/events` (extension): events of several tasks in one transaction.
pub async fn append_bulk(
    State(st): S,
    JsonBody(body): JsonBody<Vec<BulkEvent>>,
) -> Result<Response, ApiError> {
    for e in &body {
        check_id("task_id", &e.task_id)?;
    }
    let r = st.store.append_bulk(&body, (st.now)()).await?;
    Ok(Json(r).into_response())
}

/// `?since=&limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    since: Option<u64>,
    limit: Option<u32>,
}

/// `GET /v1/tasks/{id}/events?since=SEQ&limit=N`.
pub async fn read_events(
    State(st): S,
    Id(id): Id,
    Params(q): Params<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let limit = limit(q.limit, EVENTS_DEFAULT, EVENTS_MAX)?;
    match st.store.events(&id, q.since.unwrap_or(0), limit).await? {
        Some(events) => Ok(Json(EventPage { events })),
        None => Err(not_found("task", &id)),
    }
}
