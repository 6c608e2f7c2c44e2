//! A scripted agent: speaks `orchestra-agent/1` (QUIC, or WebSocket at `/agent/ws`) frame by
//! frame, so tests and `orchestra-loadtest agents` control exactly what the gateway receives.
//!
//! [`AgentClient::connect_quic`] / [`AgentClient::connect_ws`] register with the credentials of
//! an [`AgentSpec`] (signed like a real agent; every field can be overridden to test refusals)
//! and return once the gateway answered `Registered` — or `Err(Refused { code, message })` when
//! it answered `Error`. A background task then owns the control stream: it sends heartbeats
//! (pausable, to play a frozen agent), answers pings, and queues everything else for
//! [`AgentClient::control_frame`]. Task streams the gateway opens arrive through
//! [`AgentClient::next_task`]; [`AgentClient::resume`] opens one for a `TaskResume`.
//!
//! [`hub`] starts a gateway with the agent hub on; [`process`] finds and starts the real
//! `orchestra-agent` binary.

pub mod hub;
pub mod process;
pub mod stream;
pub mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orchestra_proto::v1::{self, frame::Msg, Frame};
use orchestra_proto::FrameReader;
use quinn::crypto::rustls::QuicClientConfig;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use stream::{frame, output_event, result_event, StreamRx, StreamTx, TaskStream};

/// Boxed error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What an agent registers with.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Agent id.
    pub id: String,
    /// API key.
    pub api_key: String,
    /// HMAC secret.
    pub secret: String,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Slots.
    pub max_tasks: u32,
    /// Tasks to re-announce.
    pub running_tasks: Vec<String>,
    /// Timestamp to sign (default: now).
    pub timestamp: Option<i64>,
    /// Nonce (default: random).
    pub nonce: Option<String>,
    /// Signature to send instead of the right one.
    pub signature: Option<String>,
    /// Heartbeat period (default: what `Registered` says).
    pub heartbeat: Option<Duration>,
}

impl AgentSpec {
    /// An agent with these credentials, capability `custom`, 4 slots.
    pub fn new(id: &str, api_key: &str, secret: &str) -> AgentSpec {
        AgentSpec {
            id: id.into(),
            api_key: api_key.into(),
            secret: secret.into(),
            capabilities: vec!["custom".into()],
            max_tasks: 4,
            running_tasks: vec![],
            timestamp: None,
            nonce: None,
            signature: None,
            heartbeat: None,
        }
    }

    /// The `Register` frame.
    pub fn register(&self) -> Frame {
        let timestamp = self.timestamp.unwrap_or_else(unix_now);
        let nonce = self.nonce.clone().unwrap_or_else(random_nonce);
        let signature = self.signature.clone().unwrap_or_else(|| {
            orchestra_plugins::agent_auth::sign(self.secret.as_bytes(), &self.id, timestamp, &nonce)
        });
        frame(Msg::Register(v1::Register {
            protocol_version: orchestra_proto::PROTOCOL_VERSION,
            agent_id: self.id.clone(),
            api_key: self.api_key.clone(),
            timestamp,
            nonce,
            signature,
            name: format!("scripted {}", self.id),
            capabilities: self.capabilities.clone(),
            version: "testkit".into(),
            metadata: HashMap::new(),
            max_tasks: self.max_tasks,
            running_tasks: self.running_tasks.clone(),
        }))
    }
}

/// Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn random_nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("n-{:016x}", h.finish())
}

/// Why a connection did not register.
#[derive(Debug)]
pub enum ConnectError {
    /// The gateway answered `Error`.
    Refused {
        /// Platform code.
        code: String,
        /// Message.
        message: String,
    },
    /// Anything else (network, TLS, closed without an answer).
    Other(BoxError),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Refused { code, message } => write!(f, "refused: {code}: {message}"),
            ConnectError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

macro_rules! other_from {
    ($($t:ty),*) => {$(
        impl From<$t> for ConnectError {
            fn from(e: $t) -> Self {
                ConnectError::Other(e.into())
            }
        }
    )*};
}
other_from!(
    BoxError,
    std::io::Error,
    quinn::ConnectError,
    quinn::ConnectionError
);

/// A QUIC client endpoint (one UDP socket) that many agents can share.
#[derive(Clone, Debug)]
pub struct AgentEndpoint {
    endpoint: quinn::Endpoint,
    server: SocketAddr,
}

impl AgentEndpoint {
    /// An endpoint for `server`, trusting the certificates in `ca_pem`, with ALPN
    /// `orchestra-agent/1` (or `alpn` when given, for tests of the ALPN dispatch).
    pub fn new(
        server: SocketAddr,
        ca_pem: &[u8],
        alpn: Option<&[u8]>,
    ) -> Result<AgentEndpoint, BoxError> {
        let tls = crate::tls::client_config(ca_pem, &[alpn.unwrap_or(orchestra_proto::ALPN)])?;
        let quic = QuicClientConfig::try_from(tls)?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(Duration::from_secs(60).try_into()?));
        config.transport_config(Arc::new(transport));
        let bind: SocketAddr = if server.is_ipv6() {
            "[::1]:0".parse()?
        } else {
            "127.0.0.1:0".parse()?
        };
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(config);
        Ok(AgentEndpoint { endpoint, server })
    }

    /// A raw QUIC connection (no register): for bad-input tests.
    pub async fn raw(&self) -> Result<quinn::Connection, BoxError> {
        Ok(self.endpoint.connect(self.server, "localhost")?.await?)
    }
}

/// How the agent is connected.
#[derive(Clone)]
enum Link {
    Quic(quinn::Connection),
    Ws(Arc<ws::ClientMux>),
}

/// A registered scripted agent. Dropping it closes the connection.
pub struct AgentClient {
    /// The gateway's `Registered`.
    pub registered: v1::Registered,
    link: Link,
    control_out: mpsc::Sender<Frame>,
    control_in: mpsc::Receiver<Frame>,
    tasks: mpsc::Receiver<TaskStream>,
    paused: Arc<AtomicBool>,
    background: Vec<JoinHandle<()>>,
    _endpoint: Option<AgentEndpoint>,
}

impl Drop for AgentClient {
    fn drop(&mut self) {
        for t in &self.background {
            t.abort();
        }
        if let Link::Quic(c) = &self.link {
            c.close(quinn::VarInt::from_u32(0), b"agent dropped");
        } else if let Link::Ws(m) = &self.link {
            m.close();
        }
    }
}

impl AgentClient {
    /// Connects over QUIC and registers.
    pub async fn connect_quic(
        endpoint: &AgentEndpoint,
        spec: &AgentSpec,
    ) -> Result<AgentClient, ConnectError> {
        let conn = endpoint
            .endpoint
            .connect(endpoint.server, "localhost")?
            .await?;
        let (tx, rx) = conn.open_bi().await?;
        let tx = StreamTx::Quic(tx);
        let rx = StreamRx::Quic(FrameReader::new(rx));
        let mut client = Self::register(Link::Quic(conn.clone()), tx, rx, spec).await?;
        let (task_tx, task_rx) = mpsc::channel(64);
        client.tasks = task_rx;
        client
            .background
            .push(tokio::spawn(accept_quic(conn, task_tx)));
        client._endpoint = Some(endpoint.clone());
        Ok(client)
    }

    /// Connects to `url` (`wss://127.0.0.1:PORT/agent/ws` or `ws://...`) and registers.
    pub async fn connect_ws(
        url: &str,
        ca_pem: Option<&[u8]>,
        spec: &AgentSpec,
    ) -> Result<AgentClient, ConnectError> {
        let stream = ws::connect(url, ca_pem).await?;
        let (mux, control_rx, task_rx) = ws::ClientMux::start(stream);
        let tx = StreamTx::Ws {
            task_id: String::new(),
            out: mux.out(),
        };
        let rx = StreamRx::Ws(control_rx);
        let mut client = Self::register(Link::Ws(mux), tx, rx, spec).await?;
        client.tasks = task_rx;
        Ok(client)
    }

    async fn register(
        link: Link,
        mut tx: StreamTx,
        mut rx: StreamRx,
        spec: &AgentSpec,
    ) -> Result<AgentClient, ConnectError> {
        tx.send(&spec.register()).await?;
        let answer = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .map_err(|_| ConnectError::Other("no answer to Register within 10 s".into()))?;
        let registered = match answer {
            Ok(Some(Frame {
                msg: Some(Msg::Registered(r)),
            })) => r,
            Ok(Some(Frame {
                msg: Some(Msg::Error(e)),
            })) => {
                return Err(ConnectError::Refused {
                    code: e.code,
                    message: e.message,
                })
            }
            Ok(other) => {
                return Err(ConnectError::Other(
                    format!("unexpected answer to Register: {other:?}").into(),
                ))
            }
            Err(e) => return Err(ConnectError::Other(e.into())),
        };
        let every = spec.heartbeat.unwrap_or(Duration::from_millis(
            registered.heartbeat_interval_ms.max(10),
        ));
        let (out_tx, out_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = mpsc::channel(256);
        let paused = Arc::new(AtomicBool::new(false));
        let control = tokio::spawn(control_loop(
            tx,
            rx,
            out_rx,
            in_tx,
            every,
            Arc::clone(&paused),
        ));
        Ok(AgentClient {
            registered,
            link,
            control_out: out_tx,
            control_in: in_rx,
            tasks: mpsc::channel(1).1,
            paused,
            background: vec![control],
            _endpoint: None,
        })
    }

    /// Stops (`true`) or resumes sending heartbeats, as a frozen agent would.
    pub fn pause_heartbeats(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Sends a frame on the control stream.
    pub async fn send_control(&self, f: Frame) -> Result<(), BoxError> {
        self.control_out
            .send(f)
            .await
            .map_err(|_| "control stream closed".into())
    }

    /// The next control frame other than `Ping` (answered automatically); `None` when the
    /// control stream ended.
    pub async fn control_frame(&mut self, wait: Duration) -> Result<Option<Frame>, String> {
        tokio::time::timeout(wait, self.control_in.recv())
            .await
            .map_err(|_| format!("no control frame within {wait:?}"))
    }

    /// The next task stream the gateway opens.
    pub async fn next_task(&mut self, wait: Duration) -> Result<TaskStream, String> {
        tokio::time::timeout(wait, self.tasks.recv())
            .await
            .map_err(|_| format!("no task within {wait:?}"))?
            .ok_or_else(|| "connection closed".to_string())
    }

    /// The next task stream the gateway opens, without a time limit; `None` when the
    /// connection is closed.
    pub async fn task(&mut self) -> Option<TaskStream> {
        self.tasks.recv().await
    }

    /// Opens a stream and sends `TaskResume { task_id, last_seq }`.
    pub async fn resume(&self, task_id: &str, last_seq: u64) -> Result<TaskStream, BoxError> {
        let (mut tx, rx) = self.open_stream(task_id).await?;
        tx.send(&frame(Msg::Resume(v1::TaskResume {
            task_id: task_id.into(),
            last_seq,
        })))
        .await?;
        Ok(TaskStream {
            task_id: task_id.into(),
            assign: None,
            tx,
            rx,
            held: vec![],
            acked: 0,
        })
    }

    /// Opens a stream without sending anything (bad-input tests).
    pub async fn open_stream(&self, task_id: &str) -> Result<(StreamTx, StreamRx), BoxError> {
        match &self.link {
            Link::Quic(c) => {
                let (tx, rx) = c.open_bi().await?;
                Ok((StreamTx::Quic(tx), StreamRx::Quic(FrameReader::new(rx))))
            }
            Link::Ws(m) => {
                let rx = m.register(task_id);
                Ok((
                    StreamTx::Ws {
                        task_id: task_id.into(),
                        out: m.out(),
                    },
                    StreamRx::Ws(rx),
                ))
            }
        }
    }

    /// Resolves when the connection is closed by the gateway (or the network); returns the
    /// reason the gateway gave, when it gave one.
    pub async fn closed(&self, wait: Duration) -> Result<String, String> {
        let f = async {
            match &self.link {
                Link::Quic(c) => c.closed().await.to_string(),
                Link::Ws(m) => {
                    m.closed().await;
                    "websocket closed".to_string()
                }
            }
        };
        tokio::time::timeout(wait, f)
            .await
            .map_err(|_| format!("still open after {wait:?}"))
    }
}

async fn control_loop(
    mut tx: StreamTx,
    mut rx: StreamRx,
    mut out: mpsc::Receiver<Frame>,
    inbound: mpsc::Sender<Frame>,
    every: Duration,
    paused: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            f = rx.recv() => match f {
                Ok(Some(Frame { msg: Some(Msg::Ping(p)) })) => {
                    if paused.load(Ordering::Relaxed) {
                        continue;
                    }
                    if tx.send(&frame(Msg::Pong(v1::Pong { id: p.id }))).await.is_err() {
                        break;
                    }
                }
                Ok(Some(other)) => {
                    if inbound.send(other).await.is_err() {
                        break;
                    }
                }
                _ => break,
            },
            f = out.recv() => match f {
                Some(f) => {
                    if tx.send(&f).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if paused.load(Ordering::Relaxed) {
                    continue;
                }
                let hb = frame(Msg::Heartbeat(v1::Heartbeat {
                    cpu_percent: 5.0,
                    memory_used_bytes: 1 << 30,
                    memory_total_bytes: 8 << 30,
                    running_tasks: 0,
                    ..Default::default()
                }));
                if tx.send(&hb).await.is_err() {
                    break;
                }
            }
        }
    }
}

async fn accept_quic(conn: quinn::Connection, tasks: mpsc::Sender<TaskStream>) {
    while let Ok((tx, rx)) = conn.accept_bi().await {
        let tasks = tasks.clone();
        tokio::spawn(async move {
            let mut rx = StreamRx::Quic(FrameReader::new(rx));
            if let Ok(Some(Frame {
                msg: Some(Msg::Assign(a)),
            })) = rx.recv().await
            {
                let t = TaskStream {
                    task_id: a.task_id.clone(),
                    assign: Some(a),
                    tx: StreamTx::Quic(tx),
                    rx,
                    held: vec![],
                    acked: 0,
                };
                let _ = tasks.send(t).await;
            }
        });
    }
}
