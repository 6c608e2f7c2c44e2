//! The scripted agent's WebSocket transport: one connection, streams by `Envelope.task_id`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use orchestra_proto::v1::{frame::Msg, Envelope, Frame};
use orchestra_proto::{decode_frame, MAX_FRAME};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::stream::{StreamRx, StreamTx, TaskStream};
use super::BoxError;

/// The byte streams a client WebSocket runs on (plain TCP or TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A client WebSocket.
pub type Ws = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// Opens `url` (`ws://` or `wss://`, trusting `ca_pem`).
pub async fn connect(url: &str, ca_pem: Option<&[u8]>) -> Result<Ws, BoxError> {
    let uri: http::Uri = url.parse()?;
    let host = uri.host().ok_or("url without host")?.to_string();
    let tls = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    let io: Box<dyn Io> = if tls {
        let pem = ca_pem.ok_or("wss needs a CA certificate")?;
        let config = crate::tls::client_config(pem, &[b"http/1.1"])?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from("localhost".to_string())?;
        Box::new(connector.connect(name, tcp).await?)
    } else {
        Box::new(tcp)
    };
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME + 4096));
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, io, Some(config)).await?;
    Ok(ws)
}

/// Routes envelopes to streams.
pub(crate) struct ClientMux {
    out: mpsc::Sender<Message>,
    streams: Mutex<HashMap<String, mpsc::Sender<Frame>>>,
    closed: watch::Sender<bool>,
}

impl ClientMux {
    /// Starts reader and writer; returns the mux, the control stream's inbound queue and the
    /// queue of gateway-opened task streams.
    pub fn start(
        ws: Ws,
    ) -> (
        Arc<ClientMux>,
        mpsc::Receiver<Frame>,
        mpsc::Receiver<TaskStream>,
    ) {
        let (out, mut out_rx) = mpsc::channel::<Message>(256);
        let (control_tx, control_rx) = mpsc::channel(1024);
        let (task_tx, task_rx) = mpsc::channel(64);
        let mux = Arc::new(ClientMux {
            out,
            streams: Mutex::new(HashMap::new()),
            closed: watch::channel(false).0,
        });
        let (mut sink, mut stream) = ws.split();
        let mut closed = mux.closed.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = out_rx.recv() => match m {
                        Some(m) => if sink.send(m).await.is_err() { break },
                        None => break,
                    },
                    _ = async { let _ = closed.wait_for(|c| *c).await.map(|_| ()); } => break,
                }
            }
            let _ = sink.close().await;
        });
        let reader = Arc::clone(&mux);
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Binary(b) = msg else {
                    if msg.is_close() {
                        break;
                    }
                    continue;
                };
                let Ok(env) = decode_frame::<Envelope>(&b, MAX_FRAME + 4096) else {
                    break;
                };
                if env.task_id.is_empty() {
                    if let Some(f) = env.frame {
                        if control_tx.send(f).await.is_err() {
                            break;
                        }
                    }
                    continue;
                }
                let existing = reader
                    .streams
                    .lock()
                    .ok()
                    .and_then(|s| s.get(&env.task_id).cloned());
                let tx = match existing {
                    Some(tx) => tx,
                    None => {
                        let Some(Frame {
                            msg: Some(Msg::Assign(a)),
                        }) = env.frame.clone()
                        else {
                            continue;
                        };
                        let rx = reader.register(&env.task_id);
                        let t = TaskStream {
                            task_id: env.task_id.clone(),
                            assign: Some(a),
                            tx: StreamTx::Ws {
                                task_id: env.task_id.clone(),
                                out: reader.out(),
                            },
                            rx: StreamRx::Ws(rx),
                            held: vec![],
                            acked: 0,
                        };
                        let _ = task_tx.send(t).await;
                        if env.fin {
                            reader.unregister(&env.task_id);
                        }
                        continue;
                    }
                };
                if let Some(f) = env.frame {
                    let _ = tx.send(f).await;
                }
                if env.fin {
                    reader.unregister(&env.task_id);
                }
            }
            reader.streams.lock().map(|mut s| s.clear()).ok();
            reader.closed.send_replace(true);
        });
        (mux, control_rx, task_rx)
    }

    /// The writer's queue.
    pub fn out(&self) -> mpsc::Sender<Message> {
        self.out.clone()
    }

    /// A stream for `task_id` (client-opened).
    pub fn register(&self, task_id: &str) -> mpsc::Receiver<Frame> {
        let (tx, rx) = mpsc::channel(4096);
        if let Ok(mut s) = self.streams.lock() {
            s.insert(task_id.to_string(), tx);
        }
        rx
    }

    fn unregister(&self, task_id: &str) {
        if let Ok(mut s) = self.streams.lock() {
            s.remove(task_id);
        }
    }

    /// Closes the WebSocket.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves when the WebSocket is closed.
    pub async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }
}
