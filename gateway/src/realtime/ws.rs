//! `/ws`: the realtime channel over a WebSocket (HTTP/1.1 upgrade on the pingora front).
//!
//! The client is authenticated before the `101` (a refusal is a plain `401`); the `101` selects
//! the `bearer.<token>` subprotocol when the token came that way. Then a reader loop feeds each
//! text message to the [`Client`], and a writer task drains its [`Inbox`]: it writes what is
//! queued without a flush per message (one flush when the queue is empty), and on a cut sends
//! the `SYS_001` error and a close frame.
//!
//! Size rules: a text message above `[realtime] max_message` is answered with `PARAM_001` and
//! the connection stays usable; tungstenite's own cap is [`HARD_CAP_FACTOR`] times larger, and
//! a message above that closes the connection (code 1009) — it is never buffered whole.

use std::net::IpAddr;
use std::sync::Arc;

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use orchestra_config::RealtimeSettings;
use pingora::proxy::Session;
use tokio::io::DuplexStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::client::Client;
use super::fanout::{self, Inbox, Next, Out};
use super::{auth, protocol, RealtimeService};
use crate::error::GatewayError;
use crate::pipeline::{Pipeline, Protocol, RequestCtx};

/// tungstenite refuses messages above `max_message` × this (the connection closes).
pub const HARD_CAP_FACTOR: usize = 4;
/// tungstenite's read buffer per connection (allocated when the connection opens).
pub const READ_BUFFER: usize = 4 * 1024;
/// Bytes tungstenite gathers before writing to the pipe (it writes at every flush anyway).
pub const WRITE_BUFFER: usize = 16 * 1024;
/// Messages written before one flush, at most.
const WRITE_BATCH: usize = 64;

type Sink = SplitSink<WebSocketStream<DuplexStream>, Message>;

/// The WebSocket settings for `/ws`.
pub fn websocket_config(settings: &RealtimeSettings) -> WebSocketConfig {
    let cap = settings
        .max_message
        .saturating_mul(HARD_CAP_FACTOR)
        .max(4096);
    // Small buffers: tungstenite allocates its read buffer up front (128 KiB by default), and
    // an idle browser connection must stay cheap; messages larger than a buffer still work.
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(cap))
        .max_frame_size(Some(cap))
}

/// Authenticates and upgrades; `Err` when nothing was written (the caller answers).
pub async fn serve(
    session: &mut Session,
    pipeline: &Pipeline,
    ctx: &mut RequestCtx,
    ip: Option<IpAddr>,
    svc: Arc<RealtimeService>,
) -> Result<(), GatewayError> {
    let identity = {
        let req = session.req_header();
        auth::authenticate(&ctx.snapshot, &req.headers, req.uri.query(), ip)?
    };
    let settings = ctx.snapshot.realtime.clone();
    ctx.protocol = Protocol::Ws;
    crate::ws_server::serve(
        session,
        pipeline,
        ctx,
        identity.protocol.as_deref(),
        websocket_config(&settings),
        move |ws| run(ws, svc, identity.user, settings),
    )
    .await
    .map_err(crate::ws_server::UpgradeError::into_gateway_error)
}

/// Serves one WebSocket until either side ends it.
pub async fn run(
    ws: WebSocketStream<DuplexStream>,
    svc: Arc<RealtimeService>,
    user: Arc<str>,
    settings: RealtimeSettings,
) {
    let (sink, mut stream) = ws.split();
    let (outbox, inbox) = fanout::outbox(settings.send_queue);
    let mut writer = tokio::spawn(write(sink, inbox));
    let mut client = Client::new(svc, user, outbox, settings.max_message);
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => client.handle(text.as_bytes()).await,
                Some(Ok(Message::Binary(_))) => {
                    client.outbox().message(protocol::error(
                        "PARAM_001",
                        "binary messages are not accepted; send JSON text messages",
                        None,
                        None,
                    ));
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, user = client.user(), "realtime websocket ended");
                    break;
                }
            },
            (session, task) = client.next_notice() => client.on_new_task(session, task).await,
            _ = &mut writer => break,
        }
    }
    // Ends the subscriptions; the writer ends once every queue sender is gone.
    drop(client);
}

/// Drains the client's queue onto the socket.
async fn write(mut sink: Sink, mut inbox: Inbox) {
    let mut delivered = fanout::Delivered::default();
    loop {
        let mut next = inbox.next().await;
        let mut written = 0;
        loop {
            match next {
                Next::Send(out) => {
                    if let Some(msg) = frame(out, &mut delivered) {
                        if sink.feed(msg).await.is_err() {
                            return;
                        }
                        written += 1;
                    }
                }
                Next::Cut => {
                    let err = delivered.lagged_error().to_message();
                    if let Ok(text) = Utf8Bytes::try_from(err) {
                        let _ = sink.feed(Message::Text(text)).await;
                    }
                    let _ = sink.close().await;
                    return;
                }
                Next::End => {
                    let _ = sink.close().await;
                    return;
                }
            }
            if written >= WRITE_BATCH {
                break;
            }
            match inbox.try_next() {
                Some(n) => next = n,
                None => break,
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

/// The WebSocket message for `out` (`None`: a duplicate, or nothing to send).
fn frame(out: Out, delivered: &mut fanout::Delivered) -> Option<Message> {
    let bytes = match out {
        Out::Event(e) => {
            if !delivered.admit(&e) {
                return None;
            }
            e.message_bytes()
        }
        Out::Message(reply) => reply.to_message(),
        Out::TaskDone(_) => return None,
    };
    Utf8Bytes::try_from(bytes).ok().map(Message::Text)
}
