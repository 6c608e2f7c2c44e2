//! `orchestra-gateway stats` and `orchestra-gateway reload`: small clients of a running gateway's
//! admin API.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The admin URL is not `http://HOST:PORT`.
    #[error("invalid admin URL {0:?}: expected http://HOST:PORT")]
    Url(String),
    /// Connecting or talking to the admin API failed.
    #[error("admin API at {url}: {reason}")]
    Io {
        /// The admin URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The admin API answered with an error status.
    #[error("admin API answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: StatusCode,
        /// Response body.
        body: String,
    },
}

/// Sends one request to the admin API and returns the body of a 2xx answer.
pub async fn call(
    admin: &str,
    token: Option<&str>,
    method: Method,
    path: &str,
) -> Result<String, ClientError> {
    let uri: http::Uri = admin.parse().map_err(|_| ClientError::Url(admin.into()))?;
    if uri.scheme_str() != Some("http") {
        return Err(ClientError::Url(admin.into()));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| ClientError::Url(admin.into()))?
        .clone();
    let io = |reason: String| ClientError::Io {
        url: admin.to_string(),
        reason,
    };
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(authority.as_str()),
    )
    .await
    .map_err(|_| io("connect timed out".into()))?
    .map_err(|e| io(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| io(e.to_string()))?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority.as_str());
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| io(e.to_string()))?;
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .map_err(|_| io("timed out".into()))?
        .map_err(|e| io(e.to_string()))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| io(e.to_string()))?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        return Err(ClientError::Status { status, body });
    }
    Ok(body)
}

/// Formats `/admin/histograms` JSON as an aligned table.
pub fn stats_table(json: &str) -> Result<String, String> {
    let v: Value =
        serde_json::from_str(json).map_err(|e| format!("bad JSON from admin API: {e}"))?;
    let series = v["series"]
        .as_array()
        .ok_or("no `series` in the admin API answer")?;
    let window = v["window"].as_str().unwrap_or("?");
    let name_w = series
        .iter()
        .filter_map(|s| s["series"].as_str().map(str::len))
        .max()
        .unwrap_or(6)
        .max(6);
    let mut out = format!(
        "latency in µs, window {window}\n{:<name_w$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "SERIES", "COUNT", "p50", "p90", "p99", "p99.9", "max"
    );
    for s in series {
        let n = |k: &str| s[k].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "{:<name_w$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            s["series"].as_str().unwrap_or("?"),
            n("count"),
            n("p50"),
            n("p90"),
            n("p99"),
            n("p999"),
            n("max"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_series() {
        let json = r#"{"window":"1m","unit":"us","series":[
            {"series":"route:api:total","count":3,"p50":10,"p90":20,"p99":30,"p999":30,"max":31},
            {"series":"protocol:h1:total","count":12345,"p50":1,"p90":2,"p99":3,"p999":4,"max":5}]}"#;
        let t = stats_table(json).expect("table");
        let lines: Vec<_> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].contains("window 1m"));
        assert_eq!(lines[1].len(), lines[2].len());
        assert_eq!(lines[2].len(), lines[3].len());
        assert!(lines[3].contains("12345"));
    }

    #[test]
    fn rejects_bad_urls() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let e = rt
            .block_on(call("ftp://x", None, Method::GET, "/"))
            .expect_err("scheme");
        assert!(matches!(e, ClientError::Url(_)));
    }
}
