//! A raw HTTP/1.1 client for requests `reqwest` will not send as written, or whose answer may
//! arrive while the request is still being sent: oversized heads, chunked bodies streamed in
//! pieces, early `413`s followed by a reset.
//!
//! [`exchange`] writes the request head and then each body piece (with a pause between
//! pieces) while a separate task reads the connection, so a response sent before the request
//! is complete is kept even when the server then closes or resets the connection. Write
//! errors after the head are recorded, not fatal: the caller asserts on what a client can
//! rely on, i.e. the status when one was received.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back over one raw HTTP/1.1 connection.
#[derive(Debug, Clone, Default)]
pub struct RawResponse {
    /// The status code, when a complete response head arrived.
    pub status: Option<u16>,
    /// Header fields as received (names lowercased).
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked when `transfer-encoding: chunked`; to the end of the connection
    /// when neither a length nor chunking was given). Truncated when the connection ended
    /// early.
    pub body: Vec<u8>,
    /// Every byte read from the connection.
    pub raw: Vec<u8>,
    /// The first error writing the request, if any (e.g. a reset after an early answer).
    pub write_error: Option<String>,
    /// The error that ended reading, if the connection did not end cleanly.
    pub read_error: Option<String>,
    /// Body bytes that were written before the write side stopped.
    pub body_bytes_written: usize,
    /// True when a whole response arrived: its head and its body to the end its framing
    /// announced (`content-length` bytes, or the last chunk). False for a response cut short
    /// (and for one delimited only by the end of the connection).
    pub complete: bool,
}

impl RawResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::header_value(&self.headers, name)
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Sends `head` (the request line and headers, ending with the blank line) and then each of
/// `body_pieces`, sleeping `pause` between pieces, while reading the answer concurrently.
/// Stops writing at the first write error or once a complete response has been read; waits
/// at most `timeout` overall. Fails only when the connection cannot be opened or the head
/// cannot be written.
pub async fn exchange(
    addr: SocketAddr,
    head: &[u8],
    body_pieces: &[Vec<u8>],
    pause: Duration,
    timeout: Duration,
) -> std::io::Result<RawResponse> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(head).await?;

    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(async move {
        let mut raw = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let mut read_error = None;
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    raw.extend_from_slice(&buf[..n]);
                    if parse(&raw, true).is_some() {
                        let _ = done_tx.send(true);
                        break;
                    }
                }
                Err(e) => {
                    read_error = Some(e.to_string());
                    break;
                }
            }
        }
        let _ = done_tx.send(true);
        (raw, read_error)
    });

    let pieces: Vec<Vec<u8>> = body_pieces.to_vec();
    let writer = async move {
        let mut written = 0usize;
        let mut write_error = None;
        for (i, piece) in pieces.iter().enumerate() {
            if *done_rx.borrow() {
                break;
            }
            if i > 0 && !pause.is_zero() {
                tokio::time::sleep(pause).await;
                if *done_rx.borrow() {
                    break;
                }
            }
            match wr.write_all(piece).await {
                Ok(()) => written += piece.len(),
                Err(e) => {
                    write_error = Some(e.to_string());
                    break;
                }
            }
        }
        let _ = wr.flush().await;
        // Keep the write half open (no FIN) so the server's answer is not cut short; it is
        // dropped with the function.
        (written, write_error, wr)
    };

    let run = async {
        let (written, write_error, wr) = writer.await;
        let (raw, read_error) = reader
            .await
            .unwrap_or_else(|e| (Vec::new(), Some(format!("reader task: {e}"))));
        drop(wr);
        (written, write_error, raw, read_error)
    };
    let (written, write_error, raw, read_error) = match tokio::time::timeout(timeout, run).await {
        Ok(v) => v,
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no complete exchange within {timeout:?}"),
            ))
        }
    };
    let mut resp = parse(&raw, false).unwrap_or_default();
    resp.complete = parse(&raw, true).is_some();
    resp.raw = raw;
    resp.write_error = write_error;
    resp.read_error = read_error;
    resp.body_bytes_written = written;
    Ok(resp)
}

/// Sends a complete request (`head` and `body` in one write) and reads the answer.
pub async fn send(
    addr: SocketAddr,
    head: &[u8],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<RawResponse> {
    let mut all = head.to_vec();
    all.extend_from_slice(body);
    exchange(addr, &all, &[], Duration::ZERO, timeout).await
}

/// The body of `data` framed as HTTP/1.1 chunks of at most `chunk` bytes, each its own piece,
/// with the terminating zero-size chunk as the last piece.
pub fn chunked_pieces(data: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = data
        .chunks(chunk.max(1))
        .map(|c| {
            let mut piece = format!("{:x}\r\n", c.len()).into_bytes();
            piece.extend_from_slice(c);
            piece.extend_from_slice(b"\r\n");
            piece
        })
        .collect();
    out.push(b"0\r\n\r\n".to_vec());
    out
}

/// Parses a response from `buf`. With `need_complete`, returns `None` until the head and the
/// whole body (by length or chunking) are there; otherwise returns whatever head and body
/// bytes there are (`None` only when no complete head arrived).
fn parse(buf: &[u8], need_complete: bool) -> Option<RawResponse> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &buf[head_end..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    let body = if no_body {
        Some(Vec::new())
    } else if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        match dechunk(rest) {
            (body, true) => Some(body),
            (body, false) => (!need_complete).then_some(body),
        }
    } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.get(..len).map(<[u8]>::to_vec)
    } else {
        // Delimited by the end of the connection: complete only once it closed.
        (!need_complete).then(|| rest.to_vec())
    };
    let body = match body {
        Some(b) => b,
        None if need_complete => return None,
        None => rest.to_vec(),
    };
    Some(RawResponse {
        status: Some(status),
        headers,
        body,
        ..RawResponse::default()
    })
}

/// Decodes a chunked body: the data of the whole chunks present, and whether the last
/// (zero-size) chunk arrived.
fn dechunk(mut data: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return (out, false);
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return (out, false);
        };
        data = &data[line_end + 2..];
        if size == 0 {
            return (out, true);
        }
        if data.len() < size + 2 {
            return (out, false);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_bodies() {
        let r = parse(b"HTTP/1.1 413 X\r\nContent-Length: 2\r\n\r\nok", true).expect("complete");
        assert_eq!(r.status, Some(413));
        assert_eq!(r.body, b"ok");
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok", true).is_none());
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n";
        assert_eq!(parse(chunked, true).expect("complete").body, b"abc");
        let cut = &chunked[..chunked.len() - 5];
        assert!(parse(cut, true).is_none());
        assert_eq!(parse(cut, false).expect("head").body, b"abc");
        let pieces = chunked_pieces(b"abc", 2);
        assert_eq!(pieces.concat(), b"2\r\nab\r\n1\r\nc\r\n0\r\n\r\n");
    }
}
