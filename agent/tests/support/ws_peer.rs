//! A scripted gateway over WebSocket: TLS (self-signed certificate, ALPN `http/1.1`), the
//! upgrade at `/agent/ws`, and one length-delimited `Envelope` per binary message.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use orchestra_plugins::agent_auth::{AgentCredentials, AgentKeys, AgentVerifier};
use orchestra_proto::v1::{frame, Envelope, Frame, Register, Registered};
use orchestra_proto::{decode_frame, encode_frame, MAX_FRAME};
use testkit::tls::SelfSigned;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::frames::{f, seq_of, TaskRun};
use super::peer::{AGENT_ID, API_KEY, SECRET};
use super::WAIT;

/// A scripted gateway on `/agent/ws`.
pub struct WsPeer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    /// TCP address.
    pub addr: SocketAddr,
    /// Certificate.
    pub cert: SelfSigned,
    verifier: AgentVerifier,
}

impl WsPeer {
    /// A peer on a free loopback port.
    pub async fn start() -> Self {
        let cert = SelfSigned::localhost().unwrap();
        let tls = testkit::tls::server_config(&cert, &[b"http/1.1"]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let keys = AgentKeys::from_toml(&format!(
            "[[agent]]\nid = \"{AGENT_ID}\"\napi_key = \"{API_KEY}\"\nsecret = \"{SECRET}\"\n"
        ))
        .unwrap();
        WsPeer {
            addr: listener.local_addr().unwrap(),
            listener,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            cert,
            verifier: AgentVerifier::new(keys),
        }
    }

    /// Accepts the agent, checks the upgrade path and the register, answers `Registered`.
    pub async fn accept(&self) -> WsSession {
        let (tcp, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("the agent connects")
            .unwrap();
        let tls = self.acceptor.accept(tcp).await.expect("TLS handshake");
        let path = Arc::new(Mutex::new(String::new()));
        let seen = path.clone();
        let ws = tokio_tungstenite::accept_hdr_async(tls, record_path(seen))
            .await
            .expect("WebSocket upgrade");
        let mut s = WsSession {
            ws,
            parked: Vec::new(),
            path: path.lock().unwrap().clone(),
            register: Register::default(),
        };
        let env = s.next().await;
        assert_eq!(env.task_id, "", "register comes on the control stream");
        let Some(Frame {
            msg: Some(frame::Msg::Register(r)),
        }) = env.frame
        else {
            panic!("expected Register, got {env:?}");
        };
        self.verifier
            .verify(&AgentCredentials {
                agent_id: &r.agent_id,
                api_key: &r.api_key,
                timestamp: r.timestamp,
                nonce: &r.nonce,
                signature: &r.signature,
            })
            .expect("the register verifies");
        s.register = r;
        s.send(
            "",
            Some(f(frame::Msg::Registered(Registered {
                protocol_version: 1,
                heartbeat_interval_ms: 200,
                gateway_version: "ws-test-peer".into(),
                connection_id: "ws-1".into(),
            }))),
            false,
        )
        .await;
        s
    }
}

/// The upgrade callback: records the request's path (the `Err` type is tungstenite's).
#[allow(clippy::result_large_err)]
fn record_path(
    seen: Arc<Mutex<String>>,
) -> impl FnOnce(&Request, Response) -> Result<Response, ErrorResponse> {
    move |req: &Request, resp: Response| {
        *seen.lock().unwrap() = req.uri().path().to_string();
        Ok(resp)
    }
}

/// One agent connection over WebSocket.
pub struct WsSession {
    ws: WebSocketStream<TlsStream<TcpStream>>,
    /// Envelopes of other streams read while waiting for one stream's.
    parked: Vec<Envelope>,
    /// The upgrade request's path.
    pub path: String,
    /// The agent's register.
    pub register: Register,
}

impl WsSession {
    /// Sends one envelope.
    pub async fn send(&mut self, task_id: &str, frame: Option<Frame>, fin: bool) {
        let env = Envelope {
            task_id: task_id.into(),
            frame,
            fin,
        };
        self.ws
            .send(Message::Binary(encode_frame(&env).into()))
            .await
            .expect("send an envelope");
    }

    /// The next envelope.
    pub async fn next(&mut self) -> Envelope {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message within the wait")
                .expect("the connection stays open")
                .expect("a valid message");
            if let Message::Binary(b) = msg {
                return decode_frame(&b, MAX_FRAME + 4096).expect("a valid envelope");
            }
        }
    }

    /// The next envelope of `task_id`; control envelopes in between are consumed (pings
    /// answered), other streams' envelopes kept for later.
    pub async fn next_for(&mut self, task_id: &str) -> Envelope {
        if let Some(i) = self.parked.iter().position(|e| e.task_id == task_id) {
            return self.parked.remove(i);
        }
        // Heartbeats keep arriving: the wait is bounded as a whole, not per message.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no envelope for {task_id:?} within {WAIT:?}"
            );
            let env = self.next().await;
            if env.task_id == task_id {
                return env;
            }
            if !env.task_id.is_empty() {
                self.parked.push(env);
                continue;
            }
            if let Some(Frame {
                msg: Some(frame::Msg::Ping(p)),
            }) = &env.frame
            {
                let pong = f(frame::Msg::Pong(orchestra_proto::v1::Pong { id: p.id }));
                self.send("", Some(pong), false).await;
            }
        }
    }

    /// Reads `task_id`'s envelopes until its result, acking each event.
    pub async fn run_to_result(&mut self, task_id: &str) -> TaskRun {
        let mut run = TaskRun::default();
        loop {
            let env = self.next_for(task_id).await;
            let frame = env.frame.expect("a frame");
            let seq = seq_of(&frame).unwrap_or_else(|| panic!("unexpected frame {frame:?}"));
            let done = super::frames::result_of(&frame).is_some();
            run.frames.push(frame);
            self.send(task_id, Some(super::frames::ack(seq)), false)
                .await;
            if done {
                return run;
            }
        }
    }
}
