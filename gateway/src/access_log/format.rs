//! Formatting of access-log lines, on the writer thread.
//!
//! JSON lines have the shape the process logger (`tracing-subscriber`'s JSON formatter, events
//! flattened, no target) gives every other line: `timestamp` (RFC 3339, UTC, microseconds) and
//! `level` first, then the record's fields in a fixed order. Text lines follow the text logger:
//! `TIMESTAMP  INFO access: key=value ...`.

use std::io::Write;
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
                Some(a) => {
                    let _ = write!(out, "{a}");
                }
                None => out.push(b'-'),
            }
            let _ = write!(
                out,
                "\",\"status\":{},\"bytes\":{},\"duration_us\":{duration_us},\"error\":",
                r.status, r.bytes
            );
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
    if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing a `str` into a `Vec` cannot fail; keep the line valid regardless.
        out.extend_from_slice(b"\"\"");
    }
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ` (UTC), as the process logger writes it.
pub(super) fn timestamp(out: &mut Vec<u8>, at: SystemTime) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_micros()
    );
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
