//! Active health checks against real sockets on 127.0.0.1.
//!
//! The only tests in the crate that wait on real time: each wait polls with a 5 s bound.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestra_lb::health::{self, CheckKind, HealthCheckConfig};
use orchestra_lb::Target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A tiny HTTP server answering every request with `status` (0 = accept and never answer).
fn serve(listener: TcpListener, status: Arc<AtomicU16>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let status = status.load(Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                if status == 0 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let resp = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    })
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn config(kind: CheckKind) -> HealthCheckConfig {
    HealthCheckConfig {
        kind,
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(200),
        unhealthy_after: 2,
        healthy_after: 2,
    }
}

async fn bind(addr: SocketAddr) -> TcpListener {
    TcpListener::bind(addr).await.expect("bind 127.0.0.1")
}

#[tokio::test]
async fn http_check_follows_the_listener() {
    let listener = bind(([127, 0, 0, 1], 0).into()).await;
    let addr = listener.local_addr().expect("addr");
    let status = Arc::new(AtomicU16::new(200));
    let server = serve(listener, status.clone());
    let target = Target::new(addr, 1);
    let stats = target.stats.clone();
    // Targets start healthy: mark this one down by hand so that "healthy" below can only come
    // from probes the checker sent and the listener passed.
    stats.set_healthy(false);
    let checker = health::spawn(
        vec![target],
        config(CheckKind::Http {
            path: "/healthz".into(),
        }),
    )
    .expect("spawn");

    wait_until("healthy after passed probes", || stats.is_healthy()).await;

    // Listener stopped: connections are refused.
    server.abort();
    let _ = server.await;
    wait_until("unhealthy after stop", || !stats.is_healthy()).await;

    // Listener back on the same port.
    let server = serve(bind(addr).await, status.clone());
    wait_until("healthy after restart", || stats.is_healthy()).await;

    // 503 fails, 204 passes, a hang times out.
    status.store(503, Ordering::Relaxed);
    wait_until("unhealthy on 503", || !stats.is_healthy()).await;
    status.store(204, Ordering::Relaxed);
    wait_until("healthy on 204", || stats.is_healthy()).await;
    status.store(0, Ordering::Relaxed);
    wait_until("unhealthy on timeout", || !stats.is_healthy()).await;
    status.store(200, Ordering::Relaxed);
    wait_until("healthy again", || stats.is_healthy()).await;

    // Dropping the checker stops it: a verdict set by hand is no longer overwritten.
    drop(checker);
    stats.set_healthy(false);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!stats.is_healthy());
    server.abort();
}

#[tokio::test]
async fn tcp_check_uses_connect_only() {
    let listener = bind(([127, 0, 0, 1], 0).into()).await;
    let addr = listener.local_addr().expect("addr");
    // Answers 500 to HTTP, but a TCP check only connects.
    let server = serve(listener, Arc::new(AtomicU16::new(500)));
    let up = Target::new(addr, 1);
    // A port nobody listens on: bind one, read its number, close it.
    let closed_addr = bind(([127, 0, 0, 1], 0).into())
        .await
        .local_addr()
        .expect("addr");
    let down = Target::new(closed_addr, 1);
    let (up_stats, down_stats) = (up.stats.clone(), down.stats.clone());
    // Both start healthy; mark the listening one down by hand so that its return to healthy
    // proves the connect-only probe passed (an HTTP probe would fail on the 500).
    up_stats.set_healthy(false);
    let checker = health::spawn(vec![up, down], config(CheckKind::Tcp)).expect("spawn");
    wait_until("closed port unhealthy", || !down_stats.is_healthy()).await;
    wait_until("listening port healthy", || up_stats.is_healthy()).await;
    checker.stop();
    server.abort();
}
