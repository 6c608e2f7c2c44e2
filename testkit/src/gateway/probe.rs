//! Start-up probing: is the child our healthy gateway yet?

use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{read_lossy, LaunchError, POLL};

/// Waits until `GET /healthz` on `http` answers 200 with `"status":"ok"` in its body (so a
/// foreign server that happens to hold the port is not mistaken for the gateway) and every
/// `extra` listener (https, admin) accepts TCP connections.
///
/// Fails with [`LaunchError::Exited`] when the child exits, [`LaunchError::PortInUse`] as
/// soon as its stderr reports a port in use, and [`LaunchError::Timeout`] after `timeout`.
pub(crate) async fn wait_healthy(
    child: &mut Child,
    dir: &Path,
    http: SocketAddr,
    extra: &[SocketAddr],
    timeout: Duration,
) -> Result<(), LaunchError> {
    let stderr = || read_lossy(&dir.join("stderr.log"));
    let deadline = Instant::now() + timeout;
    let mut healthy = false;
    let mut last_healthz = None;
    loop {
        if let Some(status) = child.try_wait()? {
            let stderr = stderr();
            if reports_port_in_use(&stderr) {
                return Err(LaunchError::PortInUse { stderr });
            }
            return Err(LaunchError::Exited { status, stderr });
        }
        let log = stderr();
        if reports_port_in_use(&log) {
            return Err(LaunchError::PortInUse { stderr: log });
        }
        if !healthy {
            if let Some((status, body)) = http_get(http, "/healthz").await {
                healthy = status == 200 && is_ok_body(&body);
                last_healthz = Some(format!("{status} {body}"));
            }
        }
        if healthy {
            let mut all_up = true;
            for addr in extra {
                if TcpStream::connect(addr).await.is_err() {
                    all_up = false;
                    break;
                }
            }
            if all_up {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(LaunchError::Timeout {
                last_healthz,
                stderr: stderr(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

fn reports_port_in_use(stderr: &str) -> bool {
    let lower = stderr.to_lowercase();
    lower.contains("is in use") || lower.contains("address already in use")
}

fn is_ok_body(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .map(|v| v["status"] == "ok")
        .unwrap_or(false)
}

/// Sends `GET path` over HTTP/1.1 and returns the status code and body (read up to its
/// `content-length`, or to the end of the connection), or `None` if anything failed or
/// took longer than 2 s.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(answer) = parse_complete(&buf) {
                return Some(answer);
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                // Connection closed: whatever we have is the whole answer.
                let (status, head_end, _) = parse_head(&buf)?;
                let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
                return Some((status, body));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}

/// `(status, offset of the body, content-length)` once the head is complete.
fn parse_head(buf: &[u8]) -> Option<(u16, usize, Option<usize>)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.lines();
    let mut status_parts = lines.next()?.split_whitespace();
    if !status_parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = status_parts.next()?.parse::<u16>().ok()?;
    let content_length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    Some((status, head_end, content_length))
}

/// The answer, if `buf` holds a complete head and a complete `content-length` body.
fn parse_complete(buf: &[u8]) -> Option<(u16, String)> {
    let (status, head_end, content_length) = parse_head(buf)?;
    let len = content_length?;
    let body = buf.get(head_end..head_end.checked_add(len)?)?;
    Some((status, String::from_utf8_lossy(body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_complete_answer() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}";
        let (status, body) = parse_complete(raw).expect("complete");
        assert_eq!(status, 200);
        assert!(is_ok_body(&body));
        assert!(parse_complete(&raw[..raw.len() - 1]).is_none());
    }

    #[test]
    fn foreign_answers_are_not_healthy() {
        assert!(!is_ok_body("{\"server\":\"echo\"}"));
        assert!(!is_ok_body("ok"));
        assert!(reports_port_in_use(
            "WARN 127.0.0.1:1 is in use, will try again"
        ));
    }
}
