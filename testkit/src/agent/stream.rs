//! One stream of a scripted agent (control or task), on QUIC or WebSocket, with helpers for the
//! frames a task stream carries.

use std::time::Duration;

use bytes::Bytes;
use orchestra_proto::v1::{self, frame::Msg, task_event::Body, Frame};
use orchestra_proto::{encode_frame, FrameError, FrameReader};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The sending half of a stream.
pub enum StreamTx {
    /// QUIC.
    Quic(quinn::SendStream),
    /// WebSocket: envelopes with this task id.
    Ws {
        /// Stream id (`""` = control).
        task_id: String,
        /// The connection's writer.
        out: mpsc::Sender<Message>,
    },
}

/// The receiving half of a stream.
pub enum StreamRx {
    /// QUIC.
    Quic(FrameReader<quinn::RecvStream>),
    /// WebSocket: frames routed by the connection's reader.
    Ws(mpsc::Receiver<Frame>),
}

impl StreamTx {
    /// Sends one frame.
    pub async fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        match self {
            StreamTx::Quic(s) => s
                .write_all(&encode_frame(frame))
                .await
                .map_err(std::io::Error::other),
            StreamTx::Ws { task_id, out } => {
                let env = v1::Envelope {
                    task_id: task_id.clone(),
                    frame: Some(frame.clone()),
                    fin: false,
                };
                out.send(Message::Binary(Bytes::from(encode_frame(&env))))
                    .await
                    .map_err(|_| std::io::Error::other("websocket closed"))
            }
        }
    }

    /// Writes raw bytes (QUIC) or one raw binary message (WebSocket): for bad-input tests.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            StreamTx::Quic(s) => s.write_all(bytes).await.map_err(std::io::Error::other),
            StreamTx::Ws { out, .. } => out
                .send(Message::Binary(Bytes::copy_from_slice(bytes)))
                .await
                .map_err(|_| std::io::Error::other("websocket closed")),
        }
    }

    /// Ends this side.
    pub async fn finish(&mut self) {
        match self {
            StreamTx::Quic(s) => {
                let _ = s.finish();
            }
            StreamTx::Ws { task_id, out } => {
                let env = v1::Envelope {
                    task_id: task_id.clone(),
                    frame: None,
                    fin: true,
                };
                let _ = out
                    .send(Message::Binary(Bytes::from(encode_frame(&env))))
                    .await;
            }
        }
    }
}

impl StreamRx {
    /// The next frame; `None` when the gateway ended its side.
    pub async fn recv(&mut self) -> Result<Option<Frame>, FrameError> {
        match self {
            StreamRx::Quic(r) => r.next().await,
            StreamRx::Ws(r) => Ok(r.recv().await),
        }
    }
}

/// Wraps a message in a frame.
pub fn frame(msg: Msg) -> Frame {
    Frame { msg: Some(msg) }
}

/// An output event.
pub fn output_event(seq: u64, text: &str) -> Frame {
    frame(Msg::Event(v1::TaskEvent {
        seq,
        body: Some(Body::Output(v1::OutputItem {
            kind: v1::OutputKind::Stdout as i32,
            text: text.to_string(),
            json: String::new(),
        })),
    }))
}

/// A result event.
pub fn result_event(seq: u64, status: v1::ResultStatus, exit_code: i32) -> Frame {
    frame(Msg::Event(v1::TaskEvent {
        seq,
        body: Some(Body::Result(v1::TaskResult {
            status: status as i32,
            exit_code,
            duration_ms: 1,
            ..Default::default()
        })),
    }))
}

/// One task stream of a scripted agent.
pub struct TaskStream {
    /// The task.
    pub task_id: String,
    /// The assignment (gateway-opened streams).
    pub assign: Option<v1::TaskAssign>,
    /// Sending half.
    pub tx: StreamTx,
    /// Receiving half.
    pub rx: StreamRx,
    /// Frames received while waiting for something else (acks skipped by `wait_ack`).
    pub held: Vec<Frame>,
    /// Highest ack received.
    pub acked: u64,
}

impl TaskStream {
    /// `TaskAssign.first_seq` (0 for resumed streams).
    pub fn first_seq(&self) -> u64 {
        self.assign.as_ref().map_or(0, |a| a.first_seq)
    }

    /// Sends `TaskAccepted { seq: first_seq, pid }`.
    pub async fn accept(&mut self, pid: u32) -> std::io::Result<()> {
        let seq = self.first_seq();
        self.tx
            .send(&frame(Msg::Accepted(v1::TaskAccepted { seq, pid })))
            .await
    }

    /// Sends an output line with `seq`.
    pub async fn output(&mut self, seq: u64, text: &str) -> std::io::Result<()> {
        self.tx.send(&output_event(seq, text)).await
    }

    /// Sends the result with `seq`.
    pub async fn result(
        &mut self,
        seq: u64,
        status: v1::ResultStatus,
        exit_code: i32,
    ) -> std::io::Result<()> {
        self.tx.send(&result_event(seq, status, exit_code)).await
    }

    /// The next frame within `wait`; `Ok(None)` at the gateway's end of stream, `Err` on a
    /// decode error or timeout.
    pub async fn recv(&mut self, wait: Duration) -> Result<Option<Frame>, String> {
        if !self.held.is_empty() {
            return Ok(Some(self.held.remove(0)));
        }
        match tokio::time::timeout(wait, self.rx.recv()).await {
            Ok(Ok(f)) => {
                if let Some(Frame {
                    msg: Some(Msg::Ack(a)),
                }) = &f
                {
                    self.acked = self.acked.max(a.seq);
                }
                Ok(f)
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no frame within {wait:?}")),
        }
    }

    /// Reads until an ack ≥ `seq` arrives (other frames are kept in `held`).
    pub async fn wait_ack(&mut self, seq: u64, wait: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + wait;
        while self.acked < seq {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no ack of seq {seq} within {wait:?} (acked {})",
                    self.acked
                ));
            }
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Ok(Some(Frame {
                    msg: Some(Msg::Ack(a)),
                }))) => self.acked = self.acked.max(a.seq),
                Ok(Ok(Some(other))) => self.held.push(other),
                Ok(Ok(None)) => return Err(format!("stream ended before the ack of {seq}")),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => {}
            }
        }
        Ok(())
    }
}
