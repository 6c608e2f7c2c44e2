//! Formatting of access-log lines, on the writer thread.
//!
//! JSON lines have the shape the process logger (`tracing-subscriber`'s JSON formatter, events
//! flattened, no target) gives every other line: `timestamp` (RFC 3339, UTC, microseconds) and
//! `level` first, then the record's fields in a fixed order. Text lines follow the text logger:
//! `TIMESTAMP  INFO access: key=value ...`.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::AccessLine;

/// Line format of the access log (follows the process's `--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable `key=value` text.
    Text,
}

/// Appends one line (with its newline) to `out`.
pub(super) fn line(out: &mut Vec<u8>, format: LineFormat, at: SystemTime, r: &AccessLine) {
    let request_id = r
        .request_id
        .as_ref()
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .unwrap_or_default();
    let route = r.route.as_deref().unwrap_or("-");
    let upstream = r.upstream.as_deref().unwrap_or("-");
    let duration_us = r.duration.as_micros() as u64;
    match format {
        LineFormat::Json => {
            // Written by hand, not through `fmt`: this runs once per request on the writer
            // thread, which shares the workers' CPU.
            out.extend_from_slice(b"{\"timestamp\":\"");
            timestamp(out, at);
            out.extend_from_slice(b"\",\"level\":\"INFO\",\"log\":\"access\",\"request_id\":");
            json_str(out, &request_id);
            out.extend_from_slice(b",\"protocol\":");
            json_str(out, r.protocol);
            out.extend_from_slice(b",\"method\":");
            json_str(out, r.method.as_str());
            out.extend_from_slice(b",\"path\":");
            json_str(out, &r.path);
            out.extend_from_slice(b",\"route\":");
            json_str(out, route);
            out.extend_from_slice(b",\"upstream\":");
            json_str(out, upstream);
            out.extend_from_slice(b",\"target\":\"");
            match r.target {
                // An address has nothing to escape.
                Some(a) => socket_addr(out, a),
                None => out.push(b'-'),
            }
            out.extend_from_slice(b"\",\"status\":");
            decimal(out, u64::from(r.status));
            out.extend_from_slice(b",\"bytes\":");
            decimal(out, r.bytes as u64);
            out.extend_from_slice(b",\"duration_us\":");
            decimal(out, duration_us);
            out.extend_from_slice(b",\"error\":");
            json_str(out, r.error);
            out.extend_from_slice(b"}\n");
        }
        LineFormat::Text => {
            timestamp(out, at);
            let _ = write!(
                out,
                "  INFO access: log=\"access\" request_id={request_id:?} protocol={:?} method={:?} \
                 path={:?} route={route:?} upstream={upstream:?} target=",
                r.protocol,
                r.method.as_str(),
                r.path
            );
            match r.target {
                Some(a) => {
                    let _ = write!(out, "\"{a}\"");
                }
                None => out.extend_from_slice(b"\"-\""),
            }
            let _ = writeln!(
                out,
                " status={} bytes={} duration_us={duration_us} error={:?}",
                r.status, r.bytes, r.error
            );
        }
    }
}

/// A JSON string literal (quotes and escapes included).
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Most fields are printable ASCII without quotes or backslashes: copied as they are.
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing a `str` into a `Vec` cannot fail; keep the line valid regardless.
        out.extend_from_slice(b"\"\"");
    }
}

/// `n` in decimal.
fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `n` in decimal with at least `width` digits (zero-padded).
fn padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let digits = n.checked_ilog10().map_or(1, |l| l as usize + 1);
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(digits)));
    decimal(out, n);
}

/// `ip:port` as `SocketAddr`'s `Display` writes it (IPv4 by hand, IPv6 through `fmt`).
fn socket_addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            orchestra_ingress::forwarded::write_ip(out, (*v4.ip()).into());
            out.push(b':');
            decimal(out, u64::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{a}");
        }
    }
}

thread_local! {
    /// The last second formatted (`YYYY-MM-DDTHH:MM:SS`): lines of the same second reuse it.
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ` (UTC), as the process logger writes it.
pub(super) fn timestamp(out: &mut Vec<u8>, at: SystemTime) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != secs {
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        let mut w = Vec::with_capacity(19);
        padded(&mut w, y.max(0) as u64, 4);
        w.push(b'-');
        padded(&mut w, u64::from(m), 2);
        w.push(b'-');
        padded(&mut w, u64::from(d), 2);
        w.push(b'T');
        padded(&mut w, rem / 3600, 2);
        w.push(b':');
        padded(&mut w, rem / 60 % 60, 2);
        w.push(b':');
        padded(&mut w, rem % 60, 2);
        // Years past 9999 do not fit the cache; write them without it.
        if w.len() != text.len() {
            out.extend_from_slice(&w);
            out.push(b'.');
            padded(out, u64::from(since.subsec_micros()), 6);
            out.push(b'Z');
            return;
        }
        text.copy_from_slice(&w);
        SECOND.set((secs, text));
    }
    out.extend_from_slice(&text);
    out.push(b'.');
    padded(out, u64::from(since.subsec_micros()), 6);
    out.push(b'Z');
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn record() -> AccessLine {
        AccessLine {
            request_id: Some(http::HeaderValue::from_static("id-\"1\"")),
            protocol: "h1",
            method: http::Method::GET,
            path: "/a b/\u{e9}".into(),
            route: Some("api".into()),
            upstream: None,
            target: Some("127.0.0.1:9000".parse().unwrap()),
            status: 200,
            bytes: 13,
            duration: Duration::from_micros(1234),
            ended: Instant::now(),
            error: "",
        }
    }

    #[test]
    fn timestamps_match_the_process_logger() {
        let mut out = Vec::new();
        timestamp(
            &mut out,
            UNIX_EPOCH + Duration::new(1_764_761_234, 5_678_000),
        );
        assert_eq!(out, b"2025-12-03T11:27:14.005678Z");
        out.clear();
        // 2024-02-29 (leap day) 00:00:00
        timestamp(&mut out, UNIX_EPOCH + Duration::from_secs(1_709_164_800));
        assert_eq!(out, b"2024-02-29T00:00:00.000000Z");
        // The same second again (from the per-second cache), then the next one.
        out.clear();
        timestamp(
            &mut out,
            UNIX_EPOCH + Duration::new(1_709_164_800, 999_999_000),
        );
        assert_eq!(out, b"2024-02-29T00:00:00.999999Z");
        out.clear();
        timestamp(&mut out, UNIX_EPOCH + Duration::from_secs(1_709_164_801));
        assert_eq!(out, b"2024-02-29T00:00:01.000000Z");
    }

    #[test]
    fn numbers_and_addresses_match_display() {
        for n in [0u64, 7, 10, 99, 100, 65_535, u64::MAX] {
            let mut out = Vec::new();
            decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        for a in [
            "127.0.0.1:9000",
            "0.0.0.0:0",
            "255.10.0.1:65535",
            "[::1]:443",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            let mut out = Vec::new();
            socket_addr(&mut out, a);
            assert_eq!(out, a.to_string().into_bytes());
        }
    }

    #[test]
    fn json_strings_escape_only_what_they_must() {
        for s in ["plain/path", "a\"b", "back\\slash", "tab\t", "\u{e9}", ""] {
            let mut out = Vec::new();
            json_str(&mut out, s);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn json_lines_parse_and_escape() {
        let mut out = Vec::new();
        line(&mut out, LineFormat::Json, UNIX_EPOCH, &record());
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["log"], "access");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(v["request_id"], "id-\"1\"");
        assert_eq!(v["path"], "/a b/\u{e9}");
        assert_eq!(v["route"], "api");
        assert_eq!(v["upstream"], "-");
        assert_eq!(v["target"], "127.0.0.1:9000");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 13);
        assert_eq!(v["duration_us"], 1234);
        assert_eq!(v["error"], "");
    }

    #[test]
    fn text_lines_are_one_line() {
        let mut out = Vec::new();
        line(&mut out, LineFormat::Text, UNIX_EPOCH, &record());
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.lines().count(), 1, "{s}");
        assert!(s.contains("status=200"), "{s}");
        assert!(s.contains("target=\"127.0.0.1:9000\""), "{s}");
    }
}
