//! A cleartext echo upstream the test can slow down, stop and start again on the same port —
//! for load-balancing tests (latency-aware picking, ejection, health checks, readmission).
//!
//! It answers exactly like [`super::http::EchoServer`] (same JSON, same special paths such as
//! `/slow?ms=N` and `/status/NNN`), with two additions:
//!
//! - **Fixed delay**: every response is held back by a delay set at start or later with
//!   [`ControlledEcho::set_delay`]. The request is counted when its head arrives, before the
//!   delay, like every testkit server.
//! - **Stop / restart**: [`ControlledEcho::stop`] closes the listener and every open
//!   connection (in-flight requests see their connection close), so new connections are
//!   refused; [`ControlledEcho::restart`] binds the same port again. The request log and the
//!   delay survive a restart.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use testkit::upstream::controlled::ControlledEcho;
//!
//! let mut slow = ControlledEcho::start_with_delay("slow", Duration::from_millis(20)).await?;
//! let addr = slow.addr();
//! slow.stop().await;
//! slow.restart().await?; // same `addr`
//! assert_eq!(slow.addr(), addr);
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::http::{handle, EchoCtx};
use super::{bind_loopback, serve_http_connection, spawn_accept_loop, RequestLog, ServerTask};

/// How long [`ControlledEcho::restart`] keeps trying to bind the old port.
const REBIND_FOR: Duration = Duration::from_secs(5);

/// A cleartext echo server (HTTP/1.1 and h2c) with a per-response delay that can be stopped
/// and restarted on the same address. Dropping it stops the server.
#[derive(Debug)]
pub struct ControlledEcho {
    addr: SocketAddr,
    name: String,
    log: RequestLog,
    delay_us: Arc<AtomicU64>,
    task: Option<ServerTask>,
}

impl ControlledEcho {
    /// Starts an echo server named `name` on `127.0.0.1:0` without delay.
    pub async fn start(name: &str) -> std::io::Result<Self> {
        Self::start_with_delay(name, Duration::ZERO).await
    }

    /// Starts an echo server named `name` on `127.0.0.1:0` that holds every response back by
    /// `delay`.
    pub async fn start_with_delay(name: &str, delay: Duration) -> std::io::Result<Self> {
        let (listener, addr) = bind_loopback().await?;
        let mut server = Self {
            addr,
            name: name.to_string(),
            log: RequestLog::default(),
            delay_us: Arc::new(AtomicU64::new(micros(delay))),
            task: None,
        };
        server.serve(listener);
        Ok(server)
    }

    fn serve(&mut self, listener: TcpListener) {
        let ctx = Arc::new(EchoCtx {
            name: self.name.clone(),
            tls: false,
            log: self.log.clone(),
        });
        let delay_us = Arc::clone(&self.delay_us);
        self.task = Some(spawn_accept_loop(listener, move |stream| {
            let ctx = Arc::clone(&ctx);
            let delay_us = Arc::clone(&delay_us);
            async move {
                serve_http_connection(stream, move |req| {
                    let ctx = Arc::clone(&ctx);
                    let delay = Duration::from_micros(delay_us.load(Ordering::Relaxed));
                    async move {
                        let response = handle(req, ctx).await;
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        response
                    }
                })
                .await;
            }
        }));
    }

    /// Changes the delay added to every response from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_us.store(micros(delay), Ordering::Relaxed);
    }

    /// The delay added to every response.
    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }

    /// Stops the server: the listener is closed (connections to the port are refused) and every
    /// open connection is closed, in-flight requests included. Does nothing when stopped.
    pub async fn stop(&mut self) {
        if let Some(mut task) = self.task.take() {
            task.0.abort();
            // Resolves once the accept loop (listener and connection set) has been dropped.
            let _ = (&mut task.0).await;
        }
    }

    /// Starts serving again on the same address after [`ControlledEcho::stop`], retrying the
    /// bind for up to 5 s while the old socket is released. Does nothing when running.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        if self.task.is_some() {
            return Ok(());
        }
        let deadline = Instant::now() + REBIND_FOR;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.serve(listener);
        Ok(())
    }

    /// True unless stopped.
    pub fn is_running(&self) -> bool {
        self.task.is_some()
    }

    /// The bound address (the same across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name given at start (reported as `"server"` in every answer).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Number of requests received so far, over every run.
    pub fn count(&self) -> u64 {
        self.log.count()
    }

    /// The request log (awaitable counter and recorded requests), over every run.
    pub fn requests(&self) -> &RequestLog {
        &self.log
    }

    /// Number of requests received so far whose path (query excluded) is not `path` — e.g.
    /// traffic other than health-check probes.
    pub fn count_excluding_path(&self, path: &str) -> u64 {
        self.log
            .requests()
            .iter()
            .filter(|r| r.path.split('?').next() != Some(path))
            .count() as u64
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(addr).await?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn delays_stops_and_restarts_on_the_same_port() {
        let mut server = ControlledEcho::start_with_delay("c", Duration::from_millis(60))
            .await
            .expect("start");
        let addr = server.addr();
        let t = Instant::now();
        let answer = get(addr, "/x").await.expect("get");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            t.elapsed() >= Duration::from_millis(60),
            "delay not applied"
        );
        assert_eq!(server.count(), 1);

        server.stop().await;
        assert!(!server.is_running());
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");

        server.restart().await.expect("restart");
        server.set_delay(Duration::ZERO);
        assert_eq!(server.addr(), addr);
        let answer = get(addr, "/status/503").await.expect("get");
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert_eq!(server.count(), 2, "log survives a restart");
        assert_eq!(server.count_excluding_path("/status/503"), 1);
    }

    #[tokio::test]
    async fn stop_closes_in_flight_connections() {
        let mut server = ControlledEcho::start("c").await.expect("start");
        let addr = server.addr();
        let pending = tokio::spawn(async move { get(addr, "/slow?ms=5000").await });
        server.requests().wait_for(1).await;
        server.stop().await;
        let result = tokio::time::timeout(Duration::from_secs(2), pending)
            .await
            .expect("in-flight request ended by stop")
            .expect("join");
        // A reset is fine too; an answer must not be a success.
        if let Ok(text) = result {
            assert!(!text.contains(" 200 "), "answered anyway: {text}");
        }
    }
}
