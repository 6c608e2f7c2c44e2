//! A scripted gateway over QUIC: a quinn server with a self-signed certificate and the
//! `orchestra-agent/1` ALPN. Each step of the protocol is a method the test calls, so the test
//! decides what the "gateway" does (ack or not, drop the connection, answer a resume...).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use orchestra_plugins::agent_auth::{AgentCredentials, AgentKeys, AgentVerifier};
use orchestra_proto::v1::{frame, Frame, Register, Registered, TaskAssign, TaskResume};
use orchestra_proto::{encode_frame, FrameReader, ALPN};
use quinn::crypto::rustls::QuicServerConfig;
use testkit::tls::SelfSigned;

use super::frames::{f, seq_of, TaskRun};
use super::WAIT;

/// The agent's credentials in the peer's keys file.
pub const AGENT_ID: &str = "worker-1";
/// Its API key.
pub const API_KEY: &str = "ak_worker1";
/// Its secret.
pub const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

/// A scripted gateway.
pub struct GatewayPeer {
    endpoint: quinn::Endpoint,
    /// Its UDP address.
    pub addr: SocketAddr,
    /// Its certificate (the agent's `ca`).
    pub cert: SelfSigned,
    verifier: AgentVerifier,
    /// `Registered.heartbeat_interval_ms`.
    pub heartbeat_ms: u64,
}

impl GatewayPeer {
    /// A peer on a free loopback port.
    pub fn start() -> Self {
        let endpoint = Self::bind(
            "127.0.0.1:0".parse().unwrap(),
            &SelfSigned::localhost().unwrap(),
        );
        Self::with(endpoint.0, endpoint.1)
    }

    /// A peer on `addr` with `cert`, to come back on the same port after going away: quinn's
    /// driver task releases the old socket a moment after the old endpoint is dropped, so the
    /// bind is retried for a while.
    pub async fn start_on(addr: SocketAddr, cert: SelfSigned) -> Self {
        for _ in 0..250 {
            if let Ok(e) = Self::try_bind(addr, &cert) {
                return Self::with(e, cert);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cannot bind the peer again on {addr}");
    }

    fn bind(addr: SocketAddr, cert: &SelfSigned) -> (quinn::Endpoint, SelfSigned) {
        (Self::try_bind(addr, cert).unwrap(), cert.clone())
    }

    fn try_bind(addr: SocketAddr, cert: &SelfSigned) -> std::io::Result<quinn::Endpoint> {
        let tls = testkit::tls::server_config(cert, &[ALPN]).unwrap();
        let quic = QuicServerConfig::try_from(tls).unwrap();
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(Duration::from_secs(30).try_into().unwrap()));
        server.transport_config(Arc::new(transport));
        quinn::Endpoint::server(server, addr)
    }

    fn with(endpoint: quinn::Endpoint, cert: SelfSigned) -> Self {
        let addr = endpoint.local_addr().unwrap();
        let keys = AgentKeys::from_toml(&format!(
            "[[agent]]\nid = \"{AGENT_ID}\"\napi_key = \"{API_KEY}\"\nsecret = \"{SECRET}\"\n"
        ))
        .unwrap();
        GatewayPeer {
            endpoint,
            addr,
            cert,
            verifier: AgentVerifier::new(keys),
            heartbeat_ms: 200,
        }
    }

    /// Accepts the next connection and reads its `Register`, without answering.
    pub async fn accept_register(&self) -> Pending {
        let conn = tokio::time::timeout(WAIT, async {
            loop {
                let incoming = self.endpoint.accept().await.expect("endpoint open");
                if let Ok(conn) = incoming.await {
                    return conn;
                }
            }
        })
        .await
        .expect("the agent connects");
        let (send, recv) = tokio::time::timeout(WAIT, conn.accept_bi())
            .await
            .expect("the agent opens its control stream")
            .expect("control stream");
        let mut control = PeerStream::new(send, recv);
        let register = match control.next().await {
            Some(Frame {
                msg: Some(frame::Msg::Register(r)),
            }) => r,
            other => panic!("expected Register, got {other:?}"),
        };
        Pending {
            conn,
            control,
            register,
        }
    }

    /// Checks the register's credentials with the gateway's verifier.
    pub fn verify(&self, r: &Register) -> Result<(), orchestra_plugins::agent_auth::AuthError> {
        self.verifier.verify(&AgentCredentials {
            agent_id: &r.agent_id,
            api_key: &r.api_key,
            timestamp: r.timestamp,
            nonce: &r.nonce,
            signature: &r.signature,
        })
    }

    /// Accepts a connection, verifies the register (panics when it does not verify) and
    /// answers `Registered`.
    pub async fn accept(&self) -> Session {
        let pending = self.accept_register().await;
        self.verify(&pending.register)
            .expect("the register verifies with the gateway's verifier");
        pending.registered(self.heartbeat_ms).await
    }

    /// Closes the endpoint (every connection, and no more accepts).
    pub fn shut(&self) {
        self.endpoint.close(0u32.into(), b"gateway gone");
    }

    /// Waits until the endpoint's connections are gone.
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

/// A connection whose register has not been answered.
pub struct Pending {
    /// The connection.
    pub conn: quinn::Connection,
    /// The control stream.
    pub control: PeerStream,
    /// What the agent sent.
    pub register: Register,
}

impl Pending {
    /// Answers `Registered`.
    pub async fn registered(mut self, heartbeat_ms: u64) -> Session {
        self.control
            .send(&f(frame::Msg::Registered(Registered {
                protocol_version: 1,
                heartbeat_interval_ms: heartbeat_ms,
                gateway_version: "test-peer".into(),
                connection_id: "c-1".into(),
            })))
            .await;
        Session {
            conn: self.conn,
            control: self.control,
            register: self.register,
        }
    }
}

/// A registered agent connection.
pub struct Session {
    /// The connection.
    pub conn: quinn::Connection,
    /// The control stream.
    pub control: PeerStream,
    /// The agent's register.
    pub register: Register,
}

impl Session {
    /// Opens a task stream with `assign`.
    pub async fn assign(&self, assign: TaskAssign) -> PeerStream {
        let (send, recv) = self.conn.open_bi().await.expect("open a task stream");
        let mut s = PeerStream::new(send, recv);
        s.send(&f(frame::Msg::Assign(assign))).await;
        s
    }

    /// Accepts the stream of a resumed task.
    pub async fn accept_resume(&self) -> (PeerStream, TaskResume) {
        let (send, recv) = tokio::time::timeout(WAIT, self.conn.accept_bi())
            .await
            .expect("the agent opens a resume stream")
            .expect("resume stream");
        let mut s = PeerStream::new(send, recv);
        match s.next().await {
            Some(Frame {
                msg: Some(frame::Msg::Resume(r)),
            }) => (s, r),
            other => panic!("expected TaskResume, got {other:?}"),
        }
    }

    /// Drops the connection.
    pub fn drop_connection(&self) {
        self.conn.close(0u32.into(), b"test drops the connection");
    }
}

/// One bidirectional stream, framed.
pub struct PeerStream {
    /// Sending side.
    pub send: quinn::SendStream,
    /// Receiving side.
    pub recv: FrameReader<quinn::RecvStream>,
}

impl PeerStream {
    /// Wraps a stream.
    pub fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        PeerStream {
            send,
            recv: FrameReader::new(recv),
        }
    }

    /// Sends a frame.
    pub async fn send(&mut self, frame: &Frame) {
        self.send
            .write_all(&encode_frame(frame))
            .await
            .expect("write a frame");
    }

    /// Writes raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.expect("write bytes");
    }

    /// The next frame (None at the end of the agent's side); panics after [`WAIT`].
    pub async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(WAIT, self.recv.next())
            .await
            .expect("a frame within the wait")
            .ok()
            .flatten()
    }

    /// The next frame, or `None` when nothing comes within `d` (or the stream ended).
    pub async fn next_within(&mut self, d: Duration) -> Option<Frame> {
        tokio::time::timeout(d, self.recv.next())
            .await
            .ok()?
            .ok()
            .flatten()
    }

    /// Reads the task's frames until its result, acking each one when `ack` is set, checking
    /// that seqs are consecutive.
    pub async fn run_to_result(&mut self, ack: bool) -> TaskRun {
        let mut run = TaskRun::default();
        let mut last: Option<u64> = None;
        loop {
            let frame = self
                .next()
                .await
                .expect("the task stream stays open until its result");
            let Some(seq) = seq_of(&frame) else {
                panic!("unexpected frame on a task stream: {frame:?}");
            };
            if let Some(last) = last {
                assert_eq!(seq, last + 1, "seqs are consecutive");
            }
            last = Some(seq);
            let done = super::frames::result_of(&frame).is_some();
            run.frames.push(frame);
            if ack {
                self.send(&super::frames::ack(seq)).await;
            }
            if done {
                return run;
            }
        }
    }

    /// Ends the peer's side.
    pub fn finish(&mut self) {
        let _ = self.send.finish();
    }
}
