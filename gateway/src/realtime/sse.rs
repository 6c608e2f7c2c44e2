//! SSE `GET /api/events/stream`: the realtime events of one task (`?task_id=ID`) or of one
//! session (`?session_id=ID`) as Server-Sent Events, on HTTP/1.1, HTTP/2 and HTTP/3.
//!
//! Each task event is `id: <task_id>:<seq>`, `event: <type>`, `data: <json>`; other messages
//! (`error`) have `event:` and `data:` only. A comment `: ping` goes out every
//! [`KEEPALIVE`] so that proxies keep an idle stream. Every block is written as soon as it is
//! queued (no response buffering on any front); there is no upstream, so no upstream timeout.
//!
//! **Resume.** `Last-Event-ID: <task_id>:<seq>` resumes that task after `seq`. Extension for
//! session streams: `?since=<task_id>:<seq>,<task_id>:<seq>` gives the last seq of several tasks
//! (`Last-Event-ID` then only covers its own task). A task stream ends once the task's events
//! are all delivered; a session stream stays open. A client that falls behind gets
//! `event: error` (`SYS_001`, with its last seq per task) and the stream ends.
//!
//! The fronts call [`open`] (authentication, ownership, subscription — refusals are plain HTTP
//! errors), write [`HEADERS`] with status 200, then [`stream`] into their [`SseSink`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use orchestra_config::Snapshot;
use orchestra_plugins::Reject;

use super::client::{Client, Refusal};
use super::fanout::{self, Inbox, Next, Out};
use super::protocol::SessionJoin;
use super::{auth, RealtimeService};
use crate::error::GatewayError;

/// Interval of `: ping` comments.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// The response headers of an event stream.
pub const HEADERS: [(HeaderName, HeaderValue); 3] = [
    (
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    ),
    (
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    ),
    (
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    ),
];

/// Where a front writes the stream's bytes.
pub trait SseSink: Send {
    /// Writes one chunk now (no buffering); `Err` when the client is gone.
    fn send(&mut self, chunk: Bytes) -> impl Future<Output = Result<(), String>> + Send;
}

/// What the stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One task, after `since`.
    Task {
        /// The task.
        task_id: String,
        /// Last seq the client has.
        since: u64,
    },
    /// Every task of a session.
    Session {
        /// The session.
        session_id: String,
        /// Last seq the client has, per task.
        since: HashMap<String, u64>,
    },
}

/// An opened stream: the client (its subscriptions run) and its queue.
#[derive(Debug)]
pub struct Opened {
    client: Client,
    inbox: Inbox,
    ends_with_task: bool,
}

fn bad(message: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(message.into())
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// `task_id:seq` → (task, seq).
fn event_id(s: &str) -> Option<(String, u64)> {
    let (task, seq) = s.trim().rsplit_once(':')?;
    if task.is_empty() {
        return None;
    }
    Some((task.to_string(), seq.parse().ok()?))
}

/// Reads the target from the query and `Last-Event-ID`.
pub fn target(query: Option<&str>, headers: &HeaderMap) -> Result<Target, GatewayError> {
    let last_event = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(event_id)
                .ok_or_else(|| bad("Last-Event-ID must be <task_id>:<seq>"))?,
        ),
    };
    let decode = |name: &str| -> Result<Option<String>, GatewayError> {
        match query_param(query, name) {
            None => Ok(None),
            Some(v) => orchestra_plugins::query::percent_decode(v)
                .map(Cow::into_owned)
                .filter(|v| !v.is_empty() && v.len() <= 256)
                .map(Some)
                .ok_or_else(|| bad(format!("query parameter {name} is malformed"))),
        }
    };
    let mut since = HashMap::new();
    if let Some(list) = decode("since")? {
        for part in list.split(',') {
            let (task, seq) =
                event_id(part).ok_or_else(|| bad("since must be <task_id>:<seq>[,...]"))?;
            since.insert(task, seq);
        }
    }
    if let Some((task, seq)) = last_event {
        since.insert(task, seq);
    }
    match (decode("task_id")?, decode("session_id")?) {
        (Some(task_id), None) => Ok(Target::Task {
            since: since.get(&task_id).copied().unwrap_or(0),
            task_id,
        }),
        (None, Some(session_id)) => Ok(Target::Session { session_id, since }),
        _ => Err(bad(
            "give exactly one of task_id or session_id: /api/events/stream?task_id=ID",
        )),
    }
}

fn refused(r: Refusal) -> GatewayError {
    let status = match r.code {
        "AUTH_001" => StatusCode::FORBIDDEN,
        "PARAM_001" => StatusCode::NOT_FOUND,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    GatewayError::Rejected(Reject::new(status, r.code, r.message))
}

/// Authenticates, checks ownership and subscribes; `Err` is the HTTP answer.
pub async fn open(
    svc: Arc<RealtimeService>,
    snapshot: &Snapshot,
    headers: &HeaderMap,
    query: Option<&str>,
    ip: Option<IpAddr>,
) -> Result<Opened, GatewayError> {
    let identity = auth::authenticate(snapshot, headers, query, ip)?;
    let target = target(query, headers)?;
    let settings = &snapshot.realtime;
    let (outbox, inbox) = fanout::outbox(settings.send_queue);
    let mut client = Client::new(svc, identity.user, outbox, settings.max_message);
    let ends_with_task = matches!(target, Target::Task { .. });
    match target {
        Target::Task { task_id, since } => {
            client
                .task_subscribe(&task_id, since)
                .await
                .map_err(refused)?;
        }
        Target::Session { session_id, since } => {
            client.check_session(&session_id).await.map_err(refused)?;
            client
                .join(
                    SessionJoin {
                        session_id: Some(session_id),
                        since,
                    },
                    None,
                )
                .await
                .map_err(refused)?;
        }
    }
    Ok(Opened {
        client,
        inbox,
        ends_with_task,
    })
}

/// One SSE block for `out` (`None`: a duplicate or nothing to send).
fn block(out: &Out, delivered: &mut fanout::Delivered, buf: &mut BytesMut) -> bool {
    match out {
        Out::Event(e) => {
            if !delivered.admit(e) {
                return false;
            }
            buf.put_slice(b"id: ");
            buf.put_slice(e.task_id.as_bytes());
            buf.put_u8(b':');
            buf.put_slice(e.seq.to_string().as_bytes());
            buf.put_slice(b"\nevent: ");
            buf.put_slice(e.kind.as_str().as_bytes());
            buf.put_slice(b"\ndata: ");
            buf.put_slice(&e.data);
            buf.put_slice(b"\n\n");
        }
        Out::Message(reply) => {
            buf.put_slice(b"event: ");
            buf.put_slice(reply.kind.as_bytes());
            buf.put_slice(b"\ndata: ");
            buf.put_slice(&reply.data_bytes());
            buf.put_slice(b"\n\n");
        }
        Out::TaskDone(_) => return false,
    }
    true
}

/// Streams until the task's events are all sent (task streams), the client is cut or gone.
/// Returns the bytes written.
pub async fn stream(opened: Opened, sink: &mut impl SseSink, keepalive: Duration) -> usize {
    let Opened {
        mut client,
        mut inbox,
        ends_with_task,
    } = opened;
    let mut delivered = fanout::Delivered::default();
    let mut buf = BytesMut::with_capacity(4096);
    let mut sent = 0usize;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    // An initial comment opens the stream at once (proxies and clients see the head).
    if sink.send(Bytes::from_static(b": ok\n\n")).await.is_err() {
        return 0;
    }
    loop {
        let next = tokio::select! {
            n = inbox.next() => n,
            (session, task) = client.next_notice() => {
                client.on_new_task(session, task).await;
                continue;
            }
            _ = tick.tick() => {
                if sink.send(Bytes::from_static(b": ping\n\n")).await.is_err() {
                    return sent;
                }
                continue;
            }
        };
        let mut next = Some(next);
        let mut done = false;
        while let Some(n) = next.take() {
            match n {
                Next::Send(out) => {
                    if ends_with_task && matches!(out, Out::TaskDone(_)) {
                        done = true;
                        break;
                    }
                    block(&out, &mut delivered, &mut buf);
                }
                Next::Cut => {
                    block(
                        &Out::Message(delivered.lagged_error()),
                        &mut delivered,
                        &mut buf,
                    );
                    done = true;
                    break;
                }
                Next::End => {
                    done = true;
                    break;
                }
            }
            if buf.len() >= 64 * 1024 {
                break;
            }
            next = inbox.try_next();
        }
        if !buf.is_empty() {
            let chunk = buf.split().freeze();
            sent += chunk.len();
            if sink.send(chunk).await.is_err() {
                return sent;
            }
        }
        if done {
            return sent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_task_session_and_resume() {
        let mut h = HeaderMap::new();
        assert_eq!(
            target(Some("task_id=t1"), &h).expect("task"),
            Target::Task {
                task_id: "t1".into(),
                since: 0
            }
        );
        h.insert("last-event-id", HeaderValue::from_static("t1:42"));
        assert_eq!(
            target(Some("task_id=t1&token=x"), &h).expect("task"),
            Target::Task {
                task_id: "t1".into(),
                since: 42
            }
        );
        let Target::Session { since, .. } =
            target(Some("session_id=s&since=t2:3,t3:4"), &h).expect("session")
        else {
            panic!("session");
        };
        assert_eq!((since["t1"], since["t2"], since["t3"]), (42, 3, 4));
        assert!(target(None, &h).is_err());
        assert!(target(Some("task_id=a&session_id=b"), &h).is_err());
        h.insert("last-event-id", HeaderValue::from_static("nope"));
        assert!(target(Some("task_id=t1"), &h).is_err());
    }
}
