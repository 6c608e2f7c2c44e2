//! The agent protocol over one WebSocket (`/agent/ws`): [`WsMux`] demultiplexes `Envelope`s into
//! streams with the same shape as QUIC's.
//!
//! A reader task decodes each binary message as one length-delimited `Envelope` and routes its
//! frame by `task_id`: `""` to the control stream, a known id to that task stream's inbound queue,
//! an unknown id carrying `TaskResume` to a new stream that [`WsMux::accept`] hands out. `fin`
//! ends the agent's side of a stream. A writer task sends the envelopes of every stream in order.
//!
//! Bad input closes the connection after an `Error` envelope on the control stream: a text
//! message, a message that is not one well-formed envelope, a message above the size cap.
//! Frames for an id that has no stream (a late frame of a finished task) are dropped.
//!
//! One TCP connection carries every stream, so there is no per-stream flow control: each inbound
//! queue holds [`STREAM_QUEUE`] frames, and when a task's handler is that far behind (its backend
//! writes are slow) the reader waits, which pauses the whole connection. QUIC agents do not have
//! this coupling; WebSocket is the fallback for networks that block UDP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use orchestra_proto::v1::{frame, Envelope, Error as ErrorMsg, Frame};
use orchestra_proto::{decode_frame, encode_frame, MAX_FRAME};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::transport::SendError;

/// Frames queued per stream before the reader waits for its handler.
pub const STREAM_QUEUE: usize = 1024;
/// Envelopes queued for the writer.
const OUT_QUEUE: usize = 256;
/// Largest WebSocket message: one frame of [`MAX_FRAME`] plus its envelope.
pub const MAX_MESSAGE: usize = MAX_FRAME + 4096;

/// The WebSocket settings for agent connections.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// One agent WebSocket, split into streams.
pub(crate) struct WsMux {
    peer: SocketAddr,
    out: mpsc::Sender<Message>,
    streams: Mutex<HashMap<String, mpsc::Sender<Frame>>>,
    accepted: tokio::sync::Mutex<mpsc::Receiver<(String, mpsc::Receiver<Frame>)>>,
    closed: watch::Sender<bool>,
}

/// Sending half of a stream: envelopes with its task id.
pub(crate) struct WsStreamTx {
    task_id: String,
    out: mpsc::Sender<Message>,
}

/// Receiving half of a stream.
pub(crate) struct WsStreamRx(mpsc::Receiver<Frame>);

impl WsStreamTx {
    /// Sends `frame` (or only `fin`) on this stream.
    pub async fn send(&self, frame: Option<&Frame>, fin: bool) -> Result<(), SendError> {
        let env = Envelope {
            task_id: self.task_id.clone(),
            frame: frame.cloned(),
            fin,
        };
        self.out
            .send(Message::Binary(Bytes::from(encode_frame(&env))))
            .await
            .map_err(|_| SendError::Closed("websocket closed".into()))
    }
}

impl WsStreamRx {
    /// The next frame; `None` at the agent's `fin` or when the connection ends.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.0.recv().await
    }
}

impl WsMux {
    /// Starts the reader and writer tasks over `ws`; returns the mux and the control stream.
    pub fn start<S>(
        ws: WebSocketStream<S>,
        peer: SocketAddr,
    ) -> (Arc<WsMux>, WsStreamTx, WsStreamRx)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (out, out_rx) = mpsc::channel(OUT_QUEUE);
        let (accept_tx, accept_rx) = mpsc::channel(64);
        let (control_tx, control_rx) = mpsc::channel(STREAM_QUEUE);
        let mux = Arc::new(WsMux {
            peer,
            out: out.clone(),
            streams: Mutex::new(HashMap::new()),
            accepted: tokio::sync::Mutex::new(accept_rx),
            closed: watch::channel(false).0,
        });
        let (sink, stream) = ws.split();
        tokio::spawn(write_loop(sink, out_rx, mux.closed.subscribe()));
        tokio::spawn(read_loop(Arc::clone(&mux), stream, control_tx, accept_tx));
        let control = WsStreamTx {
            task_id: String::new(),
            out,
        };
        (mux, control, WsStreamRx(control_rx))
    }

    /// The remote address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// A gateway-opened stream for `task_id`.
    pub fn open(&self, task_id: &str) -> Result<(WsStreamTx, WsStreamRx), SendError> {
        if *self.closed.borrow() {
            return Err(SendError::Closed("websocket closed".into()));
        }
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        self.streams.lock().insert(task_id.to_string(), tx);
        Ok((
            WsStreamTx {
                task_id: task_id.to_string(),
                out: self.out.clone(),
            },
            WsStreamRx(rx),
        ))
    }

    /// The next agent-opened stream (its first frame is already queued on it).
    pub async fn accept(&self) -> Option<(WsStreamTx, WsStreamRx)> {
        let (task_id, rx) = self.accepted.lock().await.recv().await?;
        Some((
            WsStreamTx {
                task_id,
                out: self.out.clone(),
            },
            WsStreamRx(rx),
        ))
    }

    /// Closes the WebSocket (a close frame, then the connection ends).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }
}

async fn write_loop<S>(
    mut sink: futures::stream::SplitSink<WebSocketStream<S>, Message>,
    mut out: mpsc::Receiver<Message>,
    mut closed: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    loop {
        tokio::select! {
            biased;
            msg = out.recv() => match msg {
                Some(m) => {
                    if sink.send(m).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            () = super::until_true(&mut closed) => {
                // Flush what handlers queued before the close (e.g. an `Error` frame).
                while let Ok(m) = out.try_recv() {
                    if sink.send(m).await.is_err() {
                        break;
                    }
                }
                break;
            }
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    let _ = sink.close().await;
}

async fn read_loop<S>(
    mux: Arc<WsMux>,
    mut stream: futures::stream::SplitStream<WebSocketStream<S>>,
    control: mpsc::Sender<Frame>,
    accept: mpsc::Sender<(String, mpsc::Receiver<Frame>)>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut closed = mux.closed.subscribe();
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            () = super::until_true(&mut closed) => break,
        };
        let bytes = match msg {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Text(_))) => {
                refuse(
                    &mux,
                    "PARAM_001",
                    "text message: the agent protocol uses binary messages",
                )
                .await;
                break;
            }
            Some(Ok(Message::Close(_))) | None => break,
            Some(Err(e)) => {
                refuse(&mux, "PARAM_001", &format!("websocket error: {e}")).await;
                break;
            }
        };
        let env = match decode_frame::<Envelope>(&bytes, MAX_MESSAGE) {
            Ok(env) => env,
            Err(e) => {
                refuse(&mux, "PARAM_001", &format!("malformed envelope: {e}")).await;
                break;
            }
        };
        if env.task_id.is_empty() {
            let delivered = match env.frame {
                Some(f) => control.send(f).await.is_ok(),
                None => !env.fin,
            };
            if !delivered {
                break;
            }
            continue;
        }
        route(&mux, env, &accept).await;
    }
    mux.streams.lock().clear();
    mux.closed.send_replace(true);
}

/// Delivers a task stream's envelope.
async fn route(mux: &WsMux, env: Envelope, accept: &mpsc::Sender<(String, mpsc::Receiver<Frame>)>) {
    let is_resume = matches!(
        env.frame.as_ref().and_then(|f| f.msg.as_ref()),
        Some(frame::Msg::Resume(_))
    );
    let tx = if is_resume {
        // A new agent-opened stream (replacing any stream with the same id).
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        mux.streams.lock().insert(env.task_id.clone(), tx.clone());
        if accept.send((env.task_id.clone(), rx)).await.is_err() {
            return;
        }
        tx
    } else {
        match mux.streams.lock().get(&env.task_id) {
            Some(tx) => tx.clone(),
            None => {
                tracing::debug!(task = %env.task_id, "agent ws: frame for a stream that is not open; dropped");
                return;
            }
        }
    };
    let delivered = match env.frame {
        Some(f) => tx.send(f).await.is_ok(),
        None => true,
    };
    if env.fin || !delivered {
        let mut streams = mux.streams.lock();
        if streams
            .get(&env.task_id)
            .is_some_and(|t| t.same_channel(&tx))
        {
            streams.remove(&env.task_id);
        }
    }
}

/// Sends an `Error` on the control stream, then closes.
async fn refuse(mux: &WsMux, code: &str, message: &str) {
    tracing::info!(peer = %mux.peer, code, message, "agent ws: closing connection");
    let env = Envelope {
        task_id: String::new(),
        frame: Some(Frame {
            msg: Some(frame::Msg::Error(ErrorMsg {
                code: code.to_string(),
                message: message.to_string(),
            })),
        }),
        fin: false,
    };
    let _ = mux
        .out
        .send(Message::Binary(Bytes::from(encode_frame(&env))))
        .await;
    mux.close();
}

/// Serves one agent WebSocket (after the `101`) until it ends.
pub async fn serve<S>(ws: WebSocketStream<S>, peer: SocketAddr, svc: Arc<super::AgentService>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mux, tx, rx) = WsMux::start(ws, peer);
    super::control::serve(
        super::transport::Conn::Ws(Arc::clone(&mux)),
        super::transport::FrameTx::Ws(tx),
        super::transport::FrameRx::Ws(rx),
        svc,
    )
    .await;
    mux.close();
}
