//! The identity headers (`x-request-id`, `traceparent`) cross HTTP/2 as "never indexed" HPACK
//! literals, on the client side and toward an h2c upstream.
//!
//! Their values are new on every request: indexed, each would take an entry of the connection's
//! dynamic table, evict the entries that do repeat, and make the encoder compare it against every
//! earlier entry of the same name. The tests speak HTTP/2 with raw frames and decode the header
//! blocks with an independent HPACK decoder (`httlib-hpack`), which reports how each field was
//! represented.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::*;
use httlib_hpack::Decoder;
use testkit::EchoServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const ACK: u8 = 0x1;

/// One frame: type, flags, stream id, payload.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

async fn read_frame(conn: &mut TcpStream) -> Option<Frame> {
    let mut head = [0u8; 9];
    tokio::time::timeout(WAIT, conn.read_exact(&mut head))
        .await
        .expect("a frame in time")
        .ok()?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    tokio::time::timeout(WAIT, conn.read_exact(&mut payload))
        .await
        .expect("a frame payload in time")
        .ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream,
        payload,
    })
}

async fn write_frame(conn: &mut TcpStream, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    conn.write_all(&frame).await.expect("write frame");
}

/// The header block fragment of a HEADERS frame (padding and priority removed).
fn header_block(frame: &Frame) -> Vec<u8> {
    let mut block = &frame.payload[..];
    let mut pad = 0;
    if frame.flags & PADDED != 0 {
        pad = usize::from(block[0]);
        block = &block[1..];
    }
    if frame.flags & PRIORITY != 0 {
        block = &block[5..];
    }
    assert!(
        frame.flags & END_HEADERS != 0,
        "a header block in one frame"
    );
    block[..block.len() - pad].to_vec()
}

/// Answers SETTINGS and PING frames the way every peer must; true when `frame` was one.
async fn control(conn: &mut TcpStream, frame: &Frame) -> bool {
    match frame.kind {
        SETTINGS if frame.flags & ACK == 0 => {
            write_frame(conn, SETTINGS, ACK, 0, &[]).await;
            true
        }
        PING if frame.flags & ACK == 0 => {
            write_frame(conn, PING, ACK, 0, &frame.payload).await;
            true
        }
        _ => frame.kind == SETTINGS || frame.kind == PING,
    }
}

/// A field as HPACK "literal without indexing" with a literal name (no Huffman).
fn literal(block: &mut Vec<u8>, name: &str, value: &str) {
    assert!(name.len() < 127 && value.len() < 127);
    block.push(0x00);
    block.push(name.len() as u8);
    block.extend_from_slice(name.as_bytes());
    block.push(value.len() as u8);
    block.extend_from_slice(value.as_bytes());
}

/// Decodes `block` with the connection's decoder: (name, value, flags) per field.
fn decode(decoder: &mut Decoder<'_>, block: Vec<u8>) -> Vec<(String, String, u8)> {
    let mut buf = block;
    let mut fields = Vec::new();
    decoder
        .decode(&mut buf, &mut fields)
        .expect("a valid header block");
    fields
        .into_iter()
        .map(|(n, v, f)| {
            (
                String::from_utf8_lossy(&n).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
                f,
            )
        })
        .collect()
}

/// The value and HPACK flags of `name` in `fields`.
fn field<'a>(fields: &'a [(String, String, u8)], name: &str) -> (&'a str, u8) {
    let (_, v, f) = fields
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in {fields:?}"));
    (v, *f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_x_request_id_never_indexed() {
    let echo = EchoServer::start("a").await.expect("echo");
    let gw = start_catch_all(echo.addr()).await;
    let mut conn = TcpStream::connect(gw.http_addr()).await.expect("connect");
    conn.write_all(PREFACE).await.expect("preface");
    write_frame(&mut conn, SETTINGS, 0, 0, &[]).await;
    let mut decoder = Decoder::default();
    let mut ids = Vec::new();
    for stream in [1u32, 3, 5] {
        // :method GET, :scheme http (static table), :path and :authority as literals.
        let mut block = vec![0x82, 0x86];
        literal(&mut block, ":path", &format!("/hpack/{stream}"));
        literal(&mut block, ":authority", "gw");
        write_frame(&mut conn, HEADERS, END_STREAM | END_HEADERS, stream, &block).await;
        let fields = loop {
            let frame = read_frame(&mut conn).await.expect("the response head");
            assert_ne!(frame.kind, GOAWAY, "the gateway closed the connection");
            if control(&mut conn, &frame).await {
                continue;
            }
            if frame.kind == HEADERS && frame.stream == stream {
                break decode(&mut decoder, header_block(&frame));
            }
        };
        assert_eq!(field(&fields, ":status").0, "200", "{fields:?}");
        let (id, flags) = field(&fields, "x-request-id");
        assert_eq!(
            flags & Decoder::NEVER_INDEXED,
            Decoder::NEVER_INDEXED,
            "x-request-id of stream {stream} must be a never-indexed literal: {fields:?}"
        );
        assert_eq!(flags & Decoder::WITH_INDEXING, 0, "{fields:?}");
        ids.push(id.to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "every response has its own id: {ids:?}");
}

/// A raw h2c upstream: answers every request `200` without a body and records the decoded
/// request fields.
async fn h2c_upstream() -> (SocketAddr, Arc<Mutex<Vec<Vec<(String, String, u8)>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                if conn.read_exact(&mut preface).await.is_err() || preface != PREFACE {
                    return;
                }
                write_frame(&mut conn, SETTINGS, 0, 0, &[]).await;
                let mut decoder = Decoder::default();
                while let Some(frame) = read_frame(&mut conn).await {
                    if control(&mut conn, &frame).await || frame.kind != HEADERS {
                        continue;
                    }
                    let fields = decode(&mut decoder, header_block(&frame));
                    record.lock().expect("record").push(fields);
                    // :status 200 (static table index 8).
                    write_frame(
                        &mut conn,
                        HEADERS,
                        END_STREAM | END_HEADERS,
                        frame.stream,
                        &[0x88],
                    )
                    .await;
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_reach_an_h2c_upstream_never_indexed() {
    let (addr, seen) = h2c_upstream().await;
    let config = format!(
        "{}\n{}",
        upstream("h2", &[addr], "protocol = \"h2c\""),
        route("all", "path_prefix = \"/\"", "h2", "")
    );
    let gw = start_gateway(config).await;
    let client = reqwest::Client::new();
    for i in 0..3 {
        let resp = client
            .get(format!("http://{}/hpack/{i}", gw.http_addr()))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 200);
    }
    let requests = seen.lock().expect("seen").clone();
    assert_eq!(requests.len(), 3, "{requests:?}");
    for fields in &requests {
        for name in ["x-request-id", "traceparent"] {
            let (_, flags) = field(fields, name);
            assert_eq!(
                flags & Decoder::NEVER_INDEXED,
                Decoder::NEVER_INDEXED,
                "{name} must be a never-indexed literal: {fields:?}"
            );
        }
        // A field that repeats is still indexed (the table is used, just not for the ids).
        assert_eq!(field(fields, "x-forwarded-proto").0, "http");
    }
}
