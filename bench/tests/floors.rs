//! The comparison floors (`bench-pingora`, `bench-hyper`) proxy for real: bench/compare's tables
//! are only as good as the proxies in them.
//!
//! Each floor runs as its own process in front of an upstream started here (hyper, counting the
//! connections it accepts). Checked for every mode: HTTP/1.1 keep-alive requests come back whole
//! (a small body and a 100 KB one), upstream connections are pooled (sequential requests reuse
//! them), h2c works where the mode serves it, an unreachable upstream is a `502`, and the access
//! log gets its lines.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const HYPER: &str = env!("CARGO_BIN_EXE_bench-hyper");
const PINGORA: &str = env!("CARGO_BIN_EXE_bench-pingora");
const BIG: usize = 100_000;

/// An upstream answering `/` with "hello, world\n" and `/big` with `BIG` bytes; counts the TCP
/// connections it accepted.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let body = if req.uri().path() == "/big" {
                        Bytes::from(vec![b'x'; BIG])
                    } else {
                        Bytes::from_static(b"hello, world\n")
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, accepted)
}

/// A floor process on a free port (retried if another process took the port first).
struct Floor {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

async fn start(bin: &str, args: &[&str], upstream: SocketAddr) -> Floor {
    for attempt in 0..5 {
        let addr = testkit::net::free_addr().expect("free port");
        let log = std::env::temp_dir().join(format!(
            "orchestra-floor-{}-{}-{attempt}.log",
            std::process::id(),
            addr.port()
        ));
        let mut child = Command::new(bin)
            .args(["--listen", &addr.to_string()])
            .args(["--upstream", &upstream.to_string()])
            .args(["--threads", "1", "--access-log"])
            .arg(&log)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the floor");
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_ok() {
                return Floor { child, addr, log };
            }
            if child.try_wait().ok().flatten().is_some() {
                break; // the port was taken: try another
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.start_kill();
    }
    panic!("{bin} {args:?} did not start");
}

/// One HTTP/1.1 connection: sends GETs one after another, returns (status, body) of each.
async fn h1_gets(addr: SocketAddr, paths: &[&str]) -> Result<Vec<(u16, Bytes)>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let mut out = Vec::new();
    for path in paths {
        sender.ready().await?;
        let req = Request::get(*path)
            .header("host", addr.to_string())
            .body(Full::new(Bytes::new()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        out.push((status, resp.into_body().collect().await?.to_bytes()));
    }
    conn.abort();
    Ok(out)
}

/// One h2c connection: sends GETs one after another.
async fn h2c_gets(addr: SocketAddr, paths: &[&str]) -> Result<Vec<(u16, Bytes)>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let mut out = Vec::new();
    for path in paths {
        sender.ready().await?;
        let req = Request::get(format!("http://{addr}{path}")).body(Full::new(Bytes::new()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        out.push((status, resp.into_body().collect().await?.to_bytes()));
    }
    conn.abort();
    Ok(out)
}

fn assert_answers(mode: &str, got: &[(u16, Bytes)], paths: &[&str]) {
    assert_eq!(got.len(), paths.len(), "{mode}");
    for ((status, body), path) in got.iter().zip(paths) {
        assert_eq!(*status, 200, "{mode} {path}");
        if *path == "/big" {
            assert_eq!(body.len(), BIG, "{mode} {path}");
            assert!(body.iter().all(|b| *b == b'x'), "{mode} {path}");
        } else {
            assert_eq!(&body[..], b"hello, world\n", "{mode} {path}");
        }
    }
}

/// Lines in the floor's access log once it holds at least `want` (or after five tries). The log
/// is flushed when a line is written a second or more after the last flush, and a floor may
/// write a request's line after the client has its response: each try waits that second and
/// sends one more request.
async fn access_log_lines(floor: &Floor, want: usize) -> usize {
    let mut lines = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        h1_gets(floor.addr, &["/"])
            .await
            .expect("request after 1 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let text = std::fs::read_to_string(Path::new(&floor.log)).unwrap_or_default();
        lines = text.lines().count();
        if lines >= want {
            break;
        }
    }
    lines
}

async fn check_mode(bin: &str, args: &[&str], h2c: bool) {
    let mode = format!(
        "{} {}",
        bin.rsplit('/').next().unwrap_or(bin),
        args.join(" ")
    );
    let (up, accepted) = upstream().await;
    let floor = start(bin, args, up).await;

    let paths = ["/", "/big", "/", "/", "/big"];
    let got = h1_gets(floor.addr, &paths).await.expect(&mode);
    assert_answers(&mode, &got, &paths);
    // One connection is the expected count; two are tolerated because hyper-util's client hands
    // a connection back to its pool from a task of its own, which can run after the next request
    // arrived. Without pooling it would be one per request.
    let upstream_conns = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&upstream_conns),
        "{mode}: {upstream_conns} upstream connections for five sequential requests (not pooled)"
    );
    let mut sent = paths.len();
    if h2c {
        let got = h2c_gets(floor.addr, &paths).await.expect(&mode);
        assert_answers(&format!("{mode} h2c"), &got, &paths);
        sent += paths.len();
    }
    let lines = access_log_lines(&floor, sent).await;
    assert!(
        lines >= sent,
        "{mode}: {lines} access-log lines for {sent} requests"
    );

    // An upstream nobody listens on: a 502, and the floor keeps serving.
    let down = testkit::net::closed_addr().expect("closed addr");
    let floor = start(bin, args, down).await;
    let got = h1_gets(floor.addr, &["/"]).await.expect(&mode);
    assert_eq!(got[0].0, 502, "{mode}: upstream down");
}

#[tokio::test]
async fn hyper_floor_proxies_h1_and_h2c() {
    check_mode(HYPER, &[], true).await;
}

#[tokio::test]
async fn hyper_floor_with_pingora_upstream_proxies_h1_and_h2c() {
    check_mode(HYPER, &["--pingora-upstream"], true).await;
}

#[tokio::test]
async fn pingora_floor_proxies_h1_and_h2c() {
    check_mode(PINGORA, &["--lazy-idle-pool"], true).await;
}

#[tokio::test]
async fn pingora_core_floor_proxies_h1() {
    check_mode(
        PINGORA,
        &["--core", "--lazy-idle-pool", "--discard-header-case"],
        false,
    )
    .await;
}

/// The pingora upstream half proxies bodiless requests only: a request with a body is refused
/// with `501`, not forwarded without it.
#[tokio::test]
async fn hyper_floor_with_pingora_upstream_refuses_request_bodies() {
    let (up, _) = upstream().await;
    let floor = start(HYPER, &["--pingora-upstream"], up).await;
    let stream = TcpStream::connect(floor.addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    let req = Request::post("/")
        .header("host", "floor")
        .body(Full::new(Bytes::from_static(b"payload")))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(resp.status().as_u16(), 501);
    conn.abort();
}
