//! A gateway with the agent hub on, for tests: QUIC (`h3` on the `https` port number), TLS,
//! admin API, `[agents]` with a generated keys file, and the `/agent/ws` route.
//!
//! ```no_run
//! # use testkit::agent::AgentClient;
//! # use testkit::agent::hub::{endpoint, AgentHub, AgentKey};
//! # async fn example(gateway_bin: &str) -> Result<(), testkit::agent::BoxError> {
//! let keys = AgentKey::many(&["a", "b"]);
//! let gw = AgentHub::new(gateway_bin, &keys)
//!     .agents("heartbeat_interval = \"200ms\"\noffline_after_missed = 2")
//!     .start()
//!     .await?;
//! let agent = AgentClient::connect_quic(&endpoint(&gw)?, &keys[0].spec()).await?;
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::{AgentEndpoint, AgentSpec, BoxError};
use crate::gateway::{GatewayBuilder, GatewayProcess, LaunchError};

/// Credentials of one agent in the keys file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentKey {
    /// Agent id.
    pub id: String,
    /// API key.
    pub api_key: String,
    /// HMAC secret (≥ 32 bytes).
    pub secret: String,
}

impl AgentKey {
    /// Credentials derived from `id`.
    pub fn new(id: &str) -> AgentKey {
        AgentKey {
            id: id.into(),
            api_key: format!("ak_{id}"),
            secret: format!("secret-of-{id}-that-is-at-least-32-bytes-long"),
        }
    }

    /// Credentials for each id.
    pub fn many(ids: &[&str]) -> Vec<AgentKey> {
        ids.iter().map(|id| AgentKey::new(id)).collect()
    }

    /// A scripted agent with these credentials.
    pub fn spec(&self) -> AgentSpec {
        AgentSpec::new(&self.id, &self.api_key, &self.secret)
    }
}

/// The keys file for `keys` (SPEC format).
pub fn keys_file(keys: &[AgentKey]) -> String {
    keys.iter()
        .map(|k| {
            format!(
                "[[agent]]\nid = \"{}\"\napi_key = \"{}\"\nsecret = \"{}\"\n\n",
                k.id, k.api_key, k.secret
            )
        })
        .collect()
}

/// Describes a gateway with the agent hub.
#[derive(Debug, Clone)]
pub struct AgentHub {
    builder: GatewayBuilder,
    keys: Vec<AgentKey>,
    agents: String,
    body: String,
}

impl AgentHub {
    /// A gateway from `bin` accepting the agents of `keys`.
    pub fn new(bin: impl Into<PathBuf>, keys: &[AgentKey]) -> AgentHub {
        AgentHub {
            builder: GatewayProcess::builder(bin).https(true).admin(true),
            keys: keys.to_vec(),
            agents: String::new(),
            body: String::new(),
        }
    }

    /// Extra `[agents]` keys (`heartbeat_interval = "200ms"`, ...).
    pub fn agents(mut self, lines: &str) -> AgentHub {
        self.agents = lines.to_string();
        self
    }

    /// Extra config after the agents section (upstreams, routes, ...).
    pub fn body(mut self, body: &str) -> AgentHub {
        self.body = body.to_string();
        self
    }

    /// Changes the gateway builder (environment, threads, ...).
    pub fn with(mut self, f: impl FnOnce(GatewayBuilder) -> GatewayBuilder) -> AgentHub {
        self.builder = f(self.builder);
        self
    }

    /// The config template.
    pub fn template(&self) -> String {
        format!(
            "[listeners]\nhttp = \"@HTTP@\"\nhttps = \"@HTTPS@\"\nh3 = \"@HTTPS@\"\nadmin = \"@ADMIN@\"\n\n\
             [server]\nthreads = 1\ngrace_period = \"5s\"\ndata_dir = \"@DATA_DIR@\"\n\n\
             [agents]\nkeys_file = \"@DIR@/agent-keys.toml\"\n{}\n\n\
             [[routes]]\nname = \"agent-ws\"\nmatch = {{ path = \"/agent/ws\" }}\nserve = \"agents\"\n\n{}\n",
            self.agents, self.body
        )
    }

    /// Starts the gateway.
    pub async fn start(self) -> Result<GatewayProcess, LaunchError> {
        let template = self.template();
        self.builder
            .raw_config(template)
            .file("agent-keys.toml", keys_file(&self.keys))
            .start()
            .await
    }
}

/// The UDP address agents dial (the `https` port number).
pub fn quic_addr(gw: &GatewayProcess) -> SocketAddr {
    gw.https_addr()
        .unwrap_or_else(|| panic!("the agent hub gateway has https and h3"))
}

/// A QUIC endpoint for agents of `gw` (trusting its self-signed certificate).
pub fn endpoint(gw: &GatewayProcess) -> Result<AgentEndpoint, BoxError> {
    let pem = gw.self_signed_cert_pem()?;
    AgentEndpoint::new(quic_addr(gw), &pem, None)
}

/// `wss://127.0.0.1:PORT/agent/ws`.
pub fn ws_url(gw: &GatewayProcess) -> String {
    format!("wss://127.0.0.1:{}/agent/ws", quic_addr(gw).port())
}

/// The keys file path (to rewrite it for reload tests).
pub fn keys_path(gw: &GatewayProcess) -> PathBuf {
    gw.dir().join("agent-keys.toml")
}

/// Polls `GET {path}` on the admin API until `done` accepts the JSON (or `wait` passes).
pub async fn admin_until(
    gw: &GatewayProcess,
    path: &str,
    wait: Duration,
    mut done: impl FnMut(&Value) -> bool,
) -> Result<Value, String> {
    let deadline = tokio::time::Instant::now() + wait;
    let url = gw.admin_url(path);
    let mut last = Value::Null;
    loop {
        if let Ok(v) = admin_json(&url).await {
            if done(&v) {
                return Ok(v);
            }
            last = v;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "GET {path}: condition not met within {wait:?}; last: {last}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET url` → JSON.
pub async fn admin_json(url: &str) -> Result<Value, BoxError> {
    let (status, body) = simple_request("GET", url, None).await?;
    if status >= 500 {
        return Err(format!("{url}: {status}").into());
    }
    Ok(serde_json::from_slice(&body)?)
}

/// `POST url` with a JSON (or raw) body → (status, JSON).
pub async fn admin_post(url: &str, body: &[u8]) -> Result<(u16, Value), BoxError> {
    let (status, body) = simple_request("POST", url, Some(body)).await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// One HTTP/1.1 request on a new connection: (status, body).
pub async fn simple_request(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>), BoxError> {
    use http_body_util::{BodyExt, Full};
    let uri: http::Uri = url.parse()?;
    let host = uri.host().ok_or("url without host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(http::header::HOST, format!("{host}:{port}"))
        .body(Full::new(bytes::Bytes::copy_from_slice(
            body.unwrap_or_default(),
        )))?;
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes().to_vec();
    Ok((status, body))
}
