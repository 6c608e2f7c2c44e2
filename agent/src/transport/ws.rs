//! The WebSocket transport: `wss://{gateway}/agent/ws`, for networks that block UDP.
//!
//! The same frames as QUIC, multiplexed on one connection: each binary message is one
//! length-delimited `Envelope` naming its stream (`task_id`, empty for control), carrying a
//! frame, and `fin` when the sender's side of that stream ends. One writer task wraps what every
//! stream sends; one demultiplexer task routes what arrives: to the stream registered for its
//! task id (the control stream and resumed tasks register when opened), or, for an unknown task
//! id whose frame is a `TaskAssign`, to a new stream handed to [`WsLink::accept`].
//!
//! Back-pressure is per connection here (one TCP stream): a task that stops reading its frames
//! holds up the demultiplexer once its queue (64 frames) is full. Task streams read their
//! frames continuously (acks, input, stop), so this only bites when a task's stdin backlog is
//! full; QUIC, with a flow-control window per stream, is the transport that isolates tasks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use orchestra_proto::v1::{frame, Envelope, Frame};
use orchestra_proto::{decode_frame, MAX_FRAME};
use prost::encoding::{encode_key, encode_varint, WireType};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{
    resolve, Closed, ConnectError, LastHeard, Outbound, Stream, StreamRx, StreamTx, STREAM_QUEUE,
};
use crate::config::AgentConfig;
use crate::tls;

/// Room for the envelope around a frame.
const ENVELOPE_OVERHEAD: usize = 4096;

type Ws = WebSocketStream<TlsStream<TcpStream>>;

/// Dials the gateway's `/agent/ws`.
#[derive(Clone)]
pub struct WsConnector {
    tls: TlsConnector,
    gateway: String,
    server_name: rustls::pki_types::ServerName<'static>,
    timeout: Duration,
}

impl std::fmt::Debug for WsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConnector")
            .field("gateway", &self.gateway)
            .finish()
    }
}

impl WsConnector {
    /// The connector for `cfg` (TLS 1.2/1.3, the configured trust, ALPN `http/1.1`).
    pub fn new(cfg: &AgentConfig) -> Result<Self, tls::TlsError> {
        let config = tls::client_config(&cfg.trust, &[b"http/1.1"], false)?;
        Ok(WsConnector {
            tls: TlsConnector::from(Arc::new(config)),
            gateway: cfg.gateway.to_string(),
            server_name: cfg.server_name.clone(),
            timeout: cfg.connect_timeout,
        })
    }

    /// The URL dialled.
    pub fn url(&self) -> String {
        format!("wss://{}/agent/ws", self.gateway)
    }

    /// One connection attempt (resolve, TCP, TLS, upgrade), bounded by `connect_timeout`.
    pub async fn connect(&self) -> Result<WsLink, ConnectError> {
        let url = self.url();
        let failed = |reason: String| ConnectError::WebSocket {
            url: url.clone(),
            reason,
        };
        let attempt = async {
            let addr = resolve(&self.gateway).await?;
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let tls = self
                .tls
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|e| failed(format!("TLS: {e}")))?;
            let request = url
                .as_str()
                .into_client_request()
                .map_err(|e| failed(e.to_string()))?;
            let config = WebSocketConfig::default()
                .max_message_size(Some(MAX_FRAME + ENVELOPE_OVERHEAD))
                .max_frame_size(Some(MAX_FRAME + ENVELOPE_OVERHEAD));
            let (ws, _response) =
                tokio_tungstenite::client_async_with_config(request, tls, Some(config))
                    .await
                    .map_err(|e| failed(e.to_string()))?;
            Ok(WsLink::start(ws, addr.to_string()))
        };
        super::within(self.timeout, &self.gateway, attempt).await
    }
}

/// A stream registration: frames for `task_id` go to the sender.
type Registration = (Arc<str>, mpsc::Sender<Frame>);

/// One WebSocket connection to the gateway.
#[derive(Debug)]
pub struct WsLink {
    out: mpsc::Sender<Outbound>,
    register: mpsc::Sender<Registration>,
    accepted: mpsc::Receiver<Stream>,
    close: Arc<Notify>,
    peer: String,
    heard: LastHeard,
}

impl WsLink {
    fn start(ws: Ws, peer: String) -> WsLink {
        let (sink, source) = ws.split();
        let (out_tx, out_rx) = mpsc::channel(STREAM_QUEUE * 4);
        let (reg_tx, reg_rx) = mpsc::channel(STREAM_QUEUE);
        let (acc_tx, acc_rx) = mpsc::channel(STREAM_QUEUE);
        let close = Arc::new(Notify::new());
        let heard = LastHeard::new();
        tokio::spawn(write_loop(sink, out_rx, close.clone()));
        tokio::spawn(demux(
            source,
            reg_rx,
            acc_tx,
            out_tx.clone(),
            close.clone(),
            heard.clone(),
        ));
        WsLink {
            out: out_tx,
            register: reg_tx,
            accepted: acc_rx,
            close,
            peer,
            heard,
        }
    }

    pub(crate) async fn open(&self, task_id: &str) -> Result<Stream, Closed> {
        let id: Arc<str> = Arc::from(task_id);
        let (in_tx, in_rx) = mpsc::channel(STREAM_QUEUE);
        // Registered before anything is sent on the stream, so the answer finds it.
        self.register
            .send((id.clone(), in_tx))
            .await
            .map_err(|_| Closed)?;
        Ok(Stream {
            tx: StreamTx::new(self.out.clone(), id),
            rx: StreamRx::new(in_rx),
        })
    }

    pub(crate) async fn accept(&mut self) -> Option<Stream> {
        self.accepted.recv().await
    }

    pub(crate) fn close(&self, _reason: &str) {
        self.close.notify_one();
    }

    pub(crate) fn peer(&self) -> String {
        self.peer.clone()
    }

    pub(crate) fn last_heard(&self) -> &LastHeard {
        &self.heard
    }
}

impl Drop for WsLink {
    fn drop(&mut self) {
        self.close.notify_one();
    }
}

async fn write_loop(
    mut sink: futures::stream::SplitSink<Ws, Message>,
    mut rx: mpsc::Receiver<Outbound>,
    close: Arc<Notify>,
) {
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = close.notified() => None,
        };
        let Some(msg) = msg else { break };
        let bytes = encode_envelope(&msg.stream, msg.body.as_deref(), msg.fin);
        if sink.feed(Message::Binary(bytes.into())).await.is_err() {
            break;
        }
        if rx.is_empty() && sink.flush().await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
    // Wake the demultiplexer in case the connection is half dead.
    close.notify_one();
}

async fn demux(
    mut source: futures::stream::SplitStream<Ws>,
    mut register: mpsc::Receiver<Registration>,
    accepted: mpsc::Sender<Stream>,
    out: mpsc::Sender<Outbound>,
    close: Arc<Notify>,
    heard: LastHeard,
) {
    let mut streams: HashMap<Arc<str>, mpsc::Sender<Frame>> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            Some((id, tx)) = register.recv() => {
                streams.insert(id, tx);
            }
            msg = source.next() => {
                let bytes = match msg {
                    Some(Ok(Message::Binary(b))) => {
                        heard.touch();
                        b
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(Message::Text(_))) => {
                        tracing::warn!("text message on /agent/ws ignored; the protocol is binary");
                        continue;
                    }
                    Some(Ok(_)) => continue,
                };
                let envelope = match decode_frame::<Envelope>(&bytes, MAX_FRAME + ENVELOPE_OVERHEAD) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "malformed envelope from the gateway; closing the connection");
                        break;
                    }
                };
                route(envelope, &mut streams, &accepted, &out).await;
            }
            _ = close.notified() => break,
        }
    }
    // Dropping the senders ends every stream; the writer stops too.
    close.notify_one();
}

async fn route(
    env: Envelope,
    streams: &mut HashMap<Arc<str>, mpsc::Sender<Frame>>,
    accepted: &mpsc::Sender<Stream>,
    out: &mpsc::Sender<Outbound>,
) {
    let id = env.task_id.as_str();
    if !streams.contains_key(id) {
        let Some(
            frame @ Frame {
                msg: Some(frame::Msg::Assign(_)),
            },
        ) = env.frame
        else {
            tracing::debug!(task_id = id, "frame for a stream that is not open; ignored");
            return;
        };
        let id: Arc<str> = Arc::from(id);
        let (in_tx, in_rx) = mpsc::channel(STREAM_QUEUE);
        let _ = in_tx.send(frame).await;
        let stream = Stream {
            tx: StreamTx::new(out.clone(), id.clone()),
            rx: StreamRx::new(in_rx),
        };
        if !env.fin {
            streams.insert(id, in_tx);
        }
        let _ = accepted.send(stream).await;
        return;
    }
    if let Some(frame) = env.frame {
        let delivered = match streams.get(id) {
            Some(tx) => tx.send(frame).await.is_ok(),
            None => false,
        };
        if !delivered {
            streams.remove(id);
        }
    }
    if env.fin {
        streams.remove(id);
    }
}

/// Encodes `Envelope { task_id, frame: body, fin }` with its length prefix, from a frame that
/// is already encoded (the held output is kept encoded), in one allocation.
pub fn encode_envelope(task_id: &str, body: Option<&[u8]>, fin: bool) -> Vec<u8> {
    use prost::encoding::{encoded_len_varint, key_len};
    let field = |tag: u32, len: usize| key_len(tag) + encoded_len_varint(len as u64) + len;
    let inner_len = if task_id.is_empty() {
        0
    } else {
        field(1, task_id.len())
    } + body.map_or(0, |b| field(2, b.len()))
        + if fin { key_len(3) + 1 } else { 0 };
    let mut out = Vec::with_capacity(encoded_len_varint(inner_len as u64) + inner_len);
    encode_varint(inner_len as u64, &mut out);
    if !task_id.is_empty() {
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(task_id.len() as u64, &mut out);
        out.extend_from_slice(task_id.as_bytes());
    }
    if let Some(body) = body {
        encode_key(2, WireType::LengthDelimited, &mut out);
        encode_varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
    }
    if fin {
        encode_key(3, WireType::Varint, &mut out);
        encode_varint(1, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestra_proto::v1::Ping;
    use prost::Message as _;

    #[test]
    fn envelopes_decode_as_the_schema_says() {
        let frame = Frame {
            msg: Some(frame::Msg::Ping(Ping { id: 42 })),
        };
        let body = frame.encode_to_vec();
        for (task_id, fin) in [("", false), ("task-1", true), ("t", false)] {
            let bytes = encode_envelope(task_id, Some(&body), fin);
            let env: Envelope = decode_frame(&bytes, MAX_FRAME).unwrap();
            assert_eq!(
                env,
                Envelope {
                    task_id: task_id.into(),
                    frame: Some(frame.clone()),
                    fin
                }
            );
        }
        let env: Envelope = decode_frame(&encode_envelope("x", None, true), MAX_FRAME).unwrap();
        assert_eq!(env.frame, None);
        assert!(env.fin);
        // Byte for byte what prost encodes for the same message, with a large frame.
        let big = Frame {
            msg: Some(frame::Msg::Event(orchestra_proto::v1::TaskEvent {
                seq: 9,
                body: Some(orchestra_proto::v1::task_event::Body::Output(
                    orchestra_proto::v1::OutputItem {
                        kind: 1,
                        text: "x".repeat(300_000),
                        json: String::new(),
                    },
                )),
            })),
        };
        let ours = encode_envelope("task-9", Some(&big.encode_to_vec()), true);
        let theirs = orchestra_proto::encode_frame(&Envelope {
            task_id: "task-9".into(),
            frame: Some(big),
            fin: true,
        });
        assert_eq!(ours, theirs);
        assert_eq!(ours.capacity(), ours.len(), "one exact allocation");
    }
}
