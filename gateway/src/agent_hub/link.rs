//! [`ConnLink`]: what the hub may ask of one agent connection (`orchestra_hub::AgentLink`).
//!
//! Both calls come with hub locks held, so neither blocks: a new task's stream is opened and
//! run on a task of the connection's runtime, and a close request is handed to the control
//! loop, which sends the agent an `Error` frame saying why before it closes.

use std::sync::Arc;

use orchestra_hub::{AgentLink, TaskStart};
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::task_stream::{self, Opening};
use super::transport::Conn;
use super::AgentService;

/// The hub's handle on one agent connection.
pub(crate) struct ConnLink {
    conn: Conn,
    svc: Arc<AgentService>,
    runtime: Handle,
    close: watch::Sender<Option<(&'static str, String)>>,
}

impl ConnLink {
    /// A link for `conn`, created on the runtime that serves it.
    pub fn new(
        conn: Conn,
        svc: Arc<AgentService>,
        close: watch::Sender<Option<(&'static str, String)>>,
    ) -> ConnLink {
        ConnLink {
            conn,
            svc,
            runtime: Handle::current(),
            close,
        }
    }
}

impl AgentLink for ConnLink {
    fn assign(&self, start: TaskStart) {
        let conn = self.conn.clone();
        let svc = Arc::clone(&self.svc);
        self.runtime.spawn(async move {
            let TaskStart { assign, attachment } = start;
            match conn.open(&assign.task_id).await {
                Ok((tx, rx)) => {
                    task_stream::run(tx, rx, attachment, Opening::Assign(assign), svc).await;
                }
                Err(e) => {
                    // Dropping the attachment orphans the task until the agent reconnects.
                    tracing::warn!(task = %assign.task_id, error = %e, "cannot open a task stream");
                }
            }
        });
    }

    fn close(&self, code: &'static str, reason: &str) {
        self.close.send_replace(Some((code, reason.to_string())));
    }
}
