//! Shared by the realtime end-to-end tests (`realtime*.rs`): a gateway with the agent hub, the
//! embedded backend and `serve = "realtime"` routes behind a `jwt` plugin, real
//! `orchestra-agent` processes, a WebSocket client (tokio-tungstenite) and an SSE client.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
pub use testkit::agent::hub::{self, AgentHub, AgentKey};
use testkit::agent::process::{agent_binary, AgentProcess};
use testkit::GatewayProcess;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const BIN: &str = env!("CARGO_BIN_EXE_orchestra-gateway");
pub const WAIT: Duration = Duration::from_secs(20);
pub const JWT_SECRET_ENV: &str = "ORCHESTRA_RT_JWT_SECRET";
pub const JWT_SECRET: &str = "realtime-e2e-secret-0123456789abcdef0123";
pub const AGENT_SECRET_ENV: &str = "ORCHESTRA_AGENT_SECRET";

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// An HS256 token for `sub` expiring at `exp`.
pub fn token_exp(sub: &str, exp: i64) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": exp}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("encode")
}

/// A valid token for `sub`.
pub fn token(sub: &str) -> String {
    token_exp(sub, now() + 600)
}

/// A token signed with another secret.
pub fn forged(sub: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": now() + 600}),
        &EncodingKey::from_secret(b"not-the-gateway-secret-0123456789abcdef"),
    )
    .expect("encode")
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Real agents: (id, max_tasks).
    pub agents: Vec<(String, u32)>,
    /// Extra `[agents]` lines.
    pub agents_section: String,
    /// Extra `[realtime]` lines.
    pub realtime: String,
    /// With `[realtime] auth`.
    pub auth: bool,
    /// Plugins of both realtime routes, and their `[plugins.*]` tables.
    pub route_plugins: Vec<String>,
    /// Extra config (plugin tables).
    pub extra: String,
    /// Extra `key = value` lines of `[server]`.
    pub server: Vec<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            agents: vec![("worker-1".into(), 4)],
            agents_section: String::new(),
            realtime: String::new(),
            auth: true,
            route_plugins: Vec::new(),
            extra: String::new(),
            server: Vec::new(),
        }
    }
}

/// Gateway + agents.
pub struct Stack {
    pub gw: GatewayProcess,
    pub agents: BTreeMap<String, AgentProcess>,
    keys: Vec<AgentKey>,
    dir: tempfile::TempDir,
}

fn body(opts: &Opts) -> String {
    let (plugin, auth) = if opts.auth {
        (
            format!(
                "[plugins.rt-auth]\nkind = \"jwt\"\nalgorithms = [\"HS256\"]\nsecret_env = \"{JWT_SECRET_ENV}\"\n\n"
            ),
            "auth = \"rt-auth\"\n",
        )
    } else {
        (String::new(), "")
    };
    let list: Vec<String> = opts
        .route_plugins
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect();
    let plugins = format!("plugins = [{}]", list.join(", "));
    format!(
        "[realtime]\n{auth}{}\n\n{plugin}{}\n\
         [[routes]]\nname = \"realtime-ws\"\nmatch = {{ path = \"/ws\" }}\nserve = \"realtime\"\n{plugins}\n\n\
         [[routes]]\nname = \"events\"\nmatch = {{ path = \"/api/events/stream\" }}\nserve = \"realtime\"\n{plugins}\n",
        opts.realtime, opts.extra
    )
}

impl Stack {
    /// Starts the gateway and the agents, waits until every agent is connected.
    pub async fn start(opts: Opts) -> Stack {
        let ids: Vec<&str> = opts.agents.iter().map(|(id, _)| id.as_str()).collect();
        let mut keys = AgentKey::many(&ids);
        if keys.is_empty() {
            keys = AgentKey::many(&["unused"]);
        }
        let agents_section = format!("heartbeat_interval = \"300ms\"\n{}", opts.agents_section);
        let gw = AgentHub::new(BIN, &keys)
            .agents(&agents_section)
            .body(&body(&opts))
            .with(|b| {
                opts.server
                    .iter()
                    .fold(b.env(JWT_SECRET_ENV, JWT_SECRET).threads(2), |b, line| {
                        b.server(line.as_str())
                    })
            })
            .start()
            .await
            .unwrap_or_else(|e| panic!("gateway starts: {e}"));
        let dir = tempfile::tempdir().expect("tempdir");
        let mut stack = Stack {
            gw,
            agents: BTreeMap::new(),
            keys,
            dir,
        };
        for (id, max) in &opts.agents {
            stack.start_agent(id, *max);
        }
        stack.wait_agents(opts.agents.len()).await;
        stack
    }

    /// Starts the real agent `id` (its key must be in the keys file).
    pub fn start_agent(&mut self, id: &str, max_tasks: u32) {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .expect("agent key")
            .clone();
        let bin = agent_binary().expect("orchestra-agent binary");
        let dir: PathBuf = self.dir.path().join(id);
        let port = hub::quic_addr(&self.gw).port();
        let config = format!(
            "gateway = \"127.0.0.1:{port}\"\nserver_name = \"localhost\"\nca = {:?}\ntransport = \"quic\"\n\
             id = \"{id}\"\napi_key = \"{}\"\nsecret_env = \"{AGENT_SECRET_ENV}\"\ncapabilities = [\"custom\"]\n\
             max_tasks = {max_tasks}\nworkdir = \"work\"\n\n[reconnect]\nbase = \"100ms\"\nmax = \"500ms\"\n\n\
             [tools]\ncustom = [\"bash\", \"-c\", \"{{prompt}}\"]\n",
            self.gw.self_signed_cert_path().display().to_string(),
            key.api_key
        );
        let agent = AgentProcess::start(
            &bin,
            &dir,
            &config,
            &[
                (AGENT_SECRET_ENV, key.secret.as_str()),
                ("RUST_LOG", "info"),
            ],
        )
        .expect("agent starts");
        self.agents.insert(id.to_string(), agent);
    }

    /// Waits until `n` agents are connected.
    pub async fn wait_agents(&self, n: usize) {
        let r = hub::admin_until(&self.gw, "/admin/agents", WAIT, |v| {
            v["agents"].as_array().map_or(0, |a| a.len()) >= n
        })
        .await;
        if let Err(e) = r {
            let logs: Vec<String> = self.agents.values().map(|a| a.stderr()).collect();
            panic!("{e}\nagent logs: {logs:#?}\ngateway: {}", self.gw.stderr());
        }
    }

    pub fn agent(&self, id: &str) -> &AgentProcess {
        &self.agents[id]
    }

    /// `ws://127.0.0.1:PORT/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.gw.http_addr())
    }

    /// Connects to `/ws` with `token` in `carrier`.
    pub async fn ws(&self, carrier: Carrier<'_>) -> Ws {
        Ws::connect(&self.ws_url(), carrier)
            .await
            .unwrap_or_else(|e| panic!("ws connects: {e}"))
    }

    /// A client of `user` (token in the Authorization header).
    pub async fn ws_user(&self, user: &str) -> Ws {
        self.ws(Carrier::Header(&token(user))).await
    }
}

/// Where the token goes.
#[derive(Debug, Clone, Copy)]
pub enum Carrier<'a> {
    None,
    Header(&'a str),
    Protocol(&'a str),
    Query(&'a str),
}

/// A `/ws` client.
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The selected subprotocol.
    pub protocol: Option<String>,
    next_id: u64,
}

impl Ws {
    /// Connects (Err: the refusal's status and body, or a connection error).
    pub async fn connect(url: &str, carrier: Carrier<'_>) -> Result<Ws, String> {
        let url = match carrier {
            Carrier::Query(t) => format!("{url}?token={t}"),
            _ => url.to_string(),
        };
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        match carrier {
            Carrier::Header(t) => {
                req.headers_mut().insert(
                    http::header::AUTHORIZATION,
                    format!("Bearer {t}").parse().expect("header"),
                );
            }
            Carrier::Protocol(t) => {
                req.headers_mut().insert(
                    http::header::SEC_WEBSOCKET_PROTOCOL,
                    format!("orchestra.v1, bearer.{t}").parse().expect("header"),
                );
            }
            _ => {}
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((stream, resp)) => Ok(Ws {
                stream,
                protocol: resp
                    .headers()
                    .get(http::header::SEC_WEBSOCKET_PROTOCOL)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                next_id: 0,
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err(format!("HTTP {status} {body}"))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends `{"type", "id", "data"}`; returns the id.
    pub async fn send(&mut self, kind: &str, data: Value) -> String {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        self.send_raw(&json!({"type": kind, "id": id, "data": data}).to_string())
            .await;
        id
    }

    /// Sends a raw text message.
    pub async fn send_raw(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.into()))
            .await
            .expect("ws send");
    }

    /// The next JSON message (`None`: closed or `wait` passed).
    pub async fn recv(&mut self, wait: Duration) -> Option<Value> {
        loop {
            match tokio::time::timeout(wait, self.stream.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("server sends JSON"))
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                    return None
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Messages until one satisfies `done` (returned); panics after `wait`.
    pub async fn until(&mut self, wait: Duration, mut done: impl FnMut(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Some(v) if done(&v) => return v,
                Some(_) => {}
                None => panic!("no matching message within {wait:?}"),
            }
        }
    }

    /// The reply carrying `id`.
    pub async fn reply(&mut self, id: &str) -> Value {
        self.until(WAIT, |v| v["id"] == id).await
    }

    /// A new session; returns its id.
    pub async fn new_session(&mut self) -> String {
        let id = self.send("session:join", json!({})).await;
        let r = self.reply(&id).await;
        assert_eq!(r["type"], "session:joined", "{r}");
        r["data"]["session_id"]
            .as_str()
            .expect("session_id")
            .to_string()
    }

    /// `worker:start` of a `custom` task; returns the reply.
    pub async fn start(&mut self, session: &str, prompt: &str) -> Value {
        let id = self
            .send(
                "worker:start",
                json!({"session_id": session, "tool": "custom", "prompt": prompt}),
            )
            .await;
        self.reply(&id).await
    }
}

/// What a client saw of one task.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Every event's seq, in arrival order.
    pub seqs: Vec<u64>,
    /// stdout texts, in arrival order.
    pub lines: Vec<String>,
    /// Statuses.
    pub statuses: Vec<String>,
    /// The result, once seen.
    pub result: Option<Value>,
}

impl Seen {
    /// Takes in one message (a task event of `task`, or anything else: ignored).
    pub fn take(&mut self, task: &str, kind: &str, data: &Value) {
        if data["task_id"] != task {
            return;
        }
        if let Some(seq) = data["seq"].as_u64() {
            self.seqs.push(seq);
        } else {
            return;
        }
        match kind {
            "worker:output" if data["kind"] == "stdout" => {
                self.lines
                    .push(data["text"].as_str().unwrap_or_default().to_string());
            }
            "worker:status" => self
                .statuses
                .push(data["status"].as_str().unwrap_or_default().to_string()),
            "task:result" => self.result = Some(data.clone()),
            _ => {}
        }
    }

    /// The last seq seen.
    pub fn last_seq(&self) -> u64 {
        self.seqs.last().copied().unwrap_or(0)
    }

    /// Asserts: seqs strictly increasing by one from 1, and the lines are `1..=n`.
    pub fn assert_complete(&self, n: usize) {
        for (i, s) in self.seqs.iter().enumerate() {
            assert_eq!(
                *s,
                i as u64 + 1,
                "seq {} at position {i}: gap or duplicate",
                s
            );
        }
        assert_eq!(self.lines.len(), n, "line count");
        for (i, l) in self.lines.iter().enumerate() {
            assert_eq!(l.trim_end(), (i + 1).to_string(), "line {i}");
        }
        assert!(self.result.is_some(), "task:result seen");
    }
}

/// Reads `ws` until `task`'s result (or `stop_after` events of it), feeding `seen`.
pub async fn watch_ws(ws: &mut Ws, task: &str, seen: &mut Seen, stop_after: Option<usize>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(v) = ws.recv(left).await else {
            panic!(
                "ws ended before the result of {task}; seen {} events",
                seen.seqs.len()
            );
        };
        let kind = v["type"].as_str().unwrap_or_default().to_string();
        if kind == "error" {
            panic!("unexpected error: {v}");
        }
        let before = seen.seqs.len();
        seen.take(task, &kind, &v["data"]);
        if seen.seqs.len() > before {
            n += 1;
        }
        if seen.result.is_some() || stop_after.is_some_and(|s| n >= s) {
            return;
        }
    }
}

/// `for i in $(seq 1 N); do echo $i; done` as one bash prompt.
pub fn count_prompt(n: usize) -> String {
    format!("for i in $(seq 1 {n}); do echo $i; done")
}

/// One parsed SSE block.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// Parses complete SSE blocks out of `buf` (keeps the incomplete tail).
pub fn parse_sse(buf: &mut String) -> Vec<SseEvent> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let block: String = buf.drain(..end + 2).collect();
        let (mut id, mut event, mut data) = (None, String::new(), None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = v.to_string();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).expect("SSE data is JSON"));
            }
        }
        if let Some(data) = data {
            out.push(SseEvent { id, event, data });
        }
    }
    out
}

/// An SSE response being read.
pub struct Sse {
    pub status: u16,
    pub headers: http::HeaderMap,
    resp: Option<reqwest::Response>,
    buf: String,
}

impl Sse {
    /// `GET url` with `headers` (`h2`: HTTP/2 prior knowledge).
    pub async fn get(url: &str, headers: &[(&str, String)], h2: bool) -> Sse {
        let mut b = reqwest::Client::builder();
        if h2 {
            b = b.http2_prior_knowledge();
        }
        let client = b.build().expect("client");
        let mut req = client.get(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("SSE request");
        Sse {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            resp: Some(resp),
            buf: String::new(),
        }
    }

    /// `GET url` over TLS trusting `ca_pem` (ALPN picks HTTP/2); also returns the version.
    pub async fn get_tls(
        url: &str,
        headers: &[(&str, String)],
        ca_pem: &[u8],
    ) -> (Sse, http::Version) {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).expect("CA"))
            .build()
            .expect("client");
        let mut req = client.get(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("SSE request");
        let version = resp.version();
        (
            Sse {
                status: resp.status().as_u16(),
                headers: resp.headers().clone(),
                resp: Some(resp),
                buf: String::new(),
            },
            version,
        )
    }

    /// The body of a refusal.
    pub async fn body(mut self) -> Value {
        let resp = self.resp.take().expect("response");
        serde_json::from_slice(&resp.bytes().await.expect("body")).unwrap_or(Value::Null)
    }

    /// The next events (empty: the stream ended); panics after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Vec<SseEvent>> {
        let resp = self.resp.as_mut()?;
        loop {
            let chunk = tokio::time::timeout(wait, resp.chunk())
                .await
                .expect("SSE chunk in time")
                .expect("SSE read");
            let chunk = chunk?;
            self.buf
                .push_str(std::str::from_utf8(&chunk).expect("utf8"));
            let events = parse_sse(&mut self.buf);
            if !events.is_empty() {
                return Some(events);
            }
        }
    }
}

/// Reads `sse` until `task`'s result (or `stop_after` task events), feeding `seen`; returns
/// the last `id:`.
pub async fn watch_sse(
    sse: &mut Sse,
    task: &str,
    seen: &mut Seen,
    stop_after: Option<usize>,
) -> Option<String> {
    let mut last_id = None;
    let mut n = 0;
    loop {
        let Some(events) = sse.next(Duration::from_secs(30)).await else {
            return last_id;
        };
        for e in events {
            assert_ne!(e.event, "error", "unexpected error: {:?}", e.data);
            if e.id.is_some() {
                last_id = e.id.clone();
            }
            let before = seen.seqs.len();
            seen.take(task, &e.event, &e.data);
            if seen.seqs.len() > before {
                n += 1;
            }
            if seen.result.is_some() || stop_after.is_some_and(|s| n >= s) {
                return last_id;
            }
        }
    }
}
