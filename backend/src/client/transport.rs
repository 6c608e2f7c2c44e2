//! HTTP calls of the writer and the readers: how each [`WriteOp`] maps onto the REST API, and
//! how an answer is classified (stored, rejected for good, or worth retrying).

use std::time::Duration;

use reqwest::StatusCode;
use serde::Serialize;

use crate::model::{BulkAppendResult, ErrorBody, NewEvent, WriteOp};

/// What became of one request.
#[derive(Debug)]
pub(crate) enum Outcome<T> {
    /// 2xx with its decoded body.
    Stored(T),
    /// 4xx (other than 408 and 429): the backend will never accept it; do not retry.
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    /// Connection failure, timeout, 5xx, 408, 429: retry later.
    Failed(String),
}

impl<T> Outcome<T> {
    /// The same outcome with the stored value mapped by `f` (a refusal or a failure unchanged).
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Stored(v) => Outcome::Stored(f(v)),
            Outcome::Rejected {
                status,
                code,
                message,
            } => Outcome::Rejected {
                status,
                code,
                message,
            },
            Outcome::Failed(e) => Outcome::Failed(e),
        }
    }

    /// The refusal of an append to `task`, which the backend does not know (a bulk append
    /// reports it in `unknown_tasks` instead of failing the whole request).
    pub(crate) fn unknown_task(task: &str) -> Self {
        Outcome::Rejected {
            status: 404,
            code: "NOT_FOUND".into(),
            message: format!("task {task} not found"),
        }
    }
}

/// One event of a bulk append, borrowed from the queued writes (no copy of the data).
#[derive(Serialize)]
struct BulkEventRef<'a> {
    task_id: &'a str,
    seq: u64,
    kind: &'a str,
    data: &'a serde_json::Value,
}

/// The client's HTTP side.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    http: reqwest::Client,
    base: String,
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub(crate) fn segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Transport {
    pub(crate) fn new(base: &str, timeout: Duration) -> Result<Transport, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()?;
        Ok(Transport {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Sends one non-event write.
    pub(crate) async fn send_op(&self, op: &WriteOp) -> Outcome<()> {
        let req = match op {
            WriteOp::UpsertAgent { id, agent } => self
                .http
                .put(format!("{}/v1/agents/{}", self.base, segment(id)))
                .json(agent),
            WriteOp::CreateSession(s) => {
                self.http.post(format!("{}/v1/sessions", self.base)).json(s)
            }
            WriteOp::CreateTask(t) => self.http.post(format!("{}/v1/tasks", self.base)).json(t),
            WriteOp::PatchTask { id, patch } => self
                .http
                .patch(format!("{}/v1/tasks/{}", self.base, segment(id)))
                .json(patch),
            WriteOp::AppendEvents { task_id, events } => {
                return match self
                    .send_events(&[(task_id.as_str(), events.as_slice())])
                    .await
                {
                    Outcome::Stored(r) if !r.unknown_tasks.is_empty() => {
                        Outcome::unknown_task(task_id)
                    }
                    other => other.map(|_| ()),
                }
            }
        };
        classify(req.send().await, |_| Ok(())).await
    }

    /// Sends the events of consecutive appends as one bulk append (`POST /v1/events`).
    pub(crate) async fn send_events(
        &self,
        groups: &[(&str, &[NewEvent])],
    ) -> Outcome<BulkAppendResult> {
        let n: usize = groups.iter().map(|(_, e)| e.len()).sum();
        let mut body = Vec::with_capacity(n);
        for (task_id, events) in groups {
            for e in *events {
                body.push(BulkEventRef {
                    task_id,
                    seq: e.seq,
                    kind: &e.kind,
                    data: &e.data,
                });
            }
        }
        let req = self
            .http
            .post(format!("{}/v1/events", self.base))
            .json(&body);
        classify(req.send().await, |bytes| {
            serde_json::from_slice::<BulkAppendResult>(bytes).map_err(|e| e.to_string())
        })
        .await
    }

    /// `GET path`: `Ok(None)` on 404.
    pub(crate) async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Outcome<Option<T>> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await;
        match classify(resp, |bytes| {
            serde_json::from_slice::<T>(bytes).map_err(|e| e.to_string())
        })
        .await
        {
            Outcome::Rejected { status: 404, .. } => Outcome::Stored(None),
            other => other.map(Some),
        }
    }

    /// `GET /healthz`: true on 200.
    pub(crate) async fn healthy(&self) -> bool {
        matches!(
            self.http.get(format!("{}/healthz", self.base)).send().await,
            Ok(r) if r.status() == StatusCode::OK
        )
    }
}

async fn classify<T>(
    resp: Result<reqwest::Response, reqwest::Error>,
    decode: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Outcome<T> {
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(error_chain(&e)),
    };
    let status = resp.status();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(error_chain(&e)),
    };
    if status.is_success() {
        return match decode(&bytes) {
            Ok(v) => Outcome::Stored(v),
            // The backend stored it but answered something we cannot read: not retryable
            // in a useful way; report it.
            Err(e) => Outcome::Rejected {
                status: status.as_u16(),
                code: "SYS_001".into(),
                message: format!("undecodable answer: {e}"),
            },
        };
    }
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
        ),
    };
    let retry = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    if retry {
        Outcome::Failed(format!("{status}: {message}"))
    } else {
        Outcome::Rejected {
            status: status.as_u16(),
            code,
            message,
        }
    }
}

/// An error with its causes, for logs ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(super::segment("task-1_a.b~"), "task-1_a.b~");
        assert_eq!(super::segment("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(super::segment("é"), "%C3%A9");
    }
}
