//! Database rows and their conversion to the API's shapes. JSON columns are text; a row that
//! does not decode is reported as [`StoreError::Corrupt`], never a panic.

use crate::model::{Agent, Event, Session, Task, TaskState};

use super::StoreError;

#[derive(Debug, sqlx::FromRow)]
pub(super) struct AgentRow {
    pub id: String,
    pub name: String,
    pub capabilities: String,
    pub metadata: String,
    pub status: String,
    pub last_seen: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct SessionRow {
    pub id: String,
    pub owner: String,
    pub created_at: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct TaskRow {
    pub id: String,
    pub session_id: String,
    pub tool: String,
    pub prompt: String,
    pub cwd: Option<String>,
    pub requires: String,
    pub priority: i32,
    pub agent_id: Option<String>,
    pub state: String,
    pub result: Option<String>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct EventRow {
    pub seq: i64,
    pub kind: String,
    pub data: String,
    pub at: i64,
}

fn corrupt(what: &'static str, id: &str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        id: id.to_string(),
        reason: reason.to_string(),
    }
}

impl AgentRow {
    pub fn into_agent(self) -> Result<Agent, StoreError> {
        let capabilities = serde_json::from_str(&self.capabilities)
            .map_err(|e| corrupt("agent", &self.id, format!("capabilities: {e}")))?;
        let metadata = serde_json::from_str(&self.metadata)
            .map_err(|e| corrupt("agent", &self.id, format!("metadata: {e}")))?;
        Ok(Agent {
            id: self.id,
            name: self.name,
            capabilities,
            metadata,
            status: self.status,
            last_seen: self.last_seen,
        })
    }
}

impl SessionRow {
    pub fn into_session(self) -> Session {
        Session {
            id: self.id,
            owner: self.owner,
            created_at: self.created_at,
        }
    }
}

impl TaskRow {
    pub fn into_task(self) -> Result<Task, StoreError> {
        let state = TaskState::parse(&self.state)
            .ok_or_else(|| corrupt("task", &self.id, format!("state {:?}", self.state)))?;
        let requires = serde_json::from_str(&self.requires)
            .map_err(|e| corrupt("task", &self.id, format!("requires: {e}")))?;
        let result = match &self.result {
            Some(r) => Some(
                serde_json::from_str(r)
                    .map_err(|e| corrupt("task", &self.id, format!("result: {e}")))?,
            ),
            None => None,
        };
        Ok(Task {
            id: self.id,
            session_id: self.session_id,
            tool: self.tool,
            prompt: self.prompt,
            cwd: self.cwd,
            requires,
            priority: self.priority,
            agent_id: self.agent_id,
            state,
            result,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

impl EventRow {
    pub fn into_event(self, task_id: &str) -> Result<Event, StoreError> {
        let data = serde_json::from_str(&self.data)
            .map_err(|e| corrupt("event", task_id, format!("seq {}: {e}", self.seq)))?;
        let seq = u64::try_from(self.seq)
            .map_err(|_| corrupt("event", task_id, format!("negative seq {}", self.seq)))?;
        Ok(Event {
            seq,
            kind: self.kind,
            data,
            at: self.at,
        })
    }
}
