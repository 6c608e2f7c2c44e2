//! Helpers shared by the gateway integration tests: the binary path, clients that never
//! use a system proxy, and TOML snippets for upstreams and routes.
#![allow(dead_code)]

pub mod admin;
pub mod launch;
pub mod ops;
pub mod ws;

use std::net::SocketAddr;
use std::time::Duration;

use testkit::{GatewayBuilder, GatewayProcess};

/// The gateway binary built by cargo for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_orchestra-gateway");

/// Bound for any single wait on an event (a response, a log line, a stream item).
pub const WAIT: Duration = Duration::from_secs(15);

/// A gateway builder for [`BIN`].
pub fn gateway() -> GatewayBuilder {
    GatewayProcess::builder(BIN)
}

/// A reqwest client for cleartext HTTP/1.1 (never a system proxy, 30 s overall timeout).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// A reqwest client for the gateway's https listener that trusts only the gateway's
/// generated self-signed certificate and resolves `localhost` to the listener.
pub fn tls_client(gw: &GatewayProcess, http1_only: bool) -> reqwest::Client {
    let pem = gw
        .self_signed_cert_pem()
        .expect("generated self-signed cert readable");
    tls_client_trusting(gw, &pem, http1_only)
}

/// Like [`tls_client`] but trusting the PEM certificate `pem`.
pub fn tls_client_trusting(gw: &GatewayProcess, pem: &[u8], http1_only: bool) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(pem).expect("PEM certificate");
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .tls_built_in_root_certs(false)
        .add_root_certificate(cert)
        .resolve("localhost", gw.https_addr().expect("https enabled"));
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().expect("reqwest tls client")
}

// The typed config-body builders, for every test file (each uses only some of them).
#[allow(unused_imports)]
pub use testkit::gateway::toml::{targets, ConfigBody, Plugin, Route, Upstream};

/// An `[[upstreams]]` entry with protocol `h1`, generous timeouts and `extra` lines (see
/// [`Upstream`] for the typed form).
pub fn upstream(name: &str, addrs: &[SocketAddr], extra: &str) -> String {
    Upstream::new(name, addrs).line(extra).to_string()
}

/// A `[[routes]]` entry: `match_toml` is the inline table body, e.g.
/// `path_prefix = "/api/"`; `extra` adds lines such as `strip_prefix = true` (see [`Route`]
/// for the typed form).
pub fn route(name: &str, match_toml: &str, upstream: &str, extra: &str) -> String {
    Route::matching(name, match_toml, upstream)
        .line(extra)
        .to_string()
}

/// `[[upstreams]] UPSTREAM -> addr` plus `[[routes]] ROUTE: path_prefix PREFIX -> UPSTREAM`.
pub fn upstream_and_route(upstream: &str, addr: SocketAddr, route: &str, prefix: &str) -> String {
    ConfigBody::new()
        .service(upstream, addr, route, prefix)
        .into()
}

/// `gw`'s full config text (its listeners) for `body` plus route `name` on
/// `path_prefix = prefix` to `upstream`: the usual "add a route and reload" edit.
pub fn with_route(
    gw: &GatewayProcess,
    body: &str,
    name: &str,
    prefix: &str,
    upstream: &str,
) -> String {
    gw.config_text(&format!("{body}{}", Route::prefix(name, prefix, upstream)))
}

/// The config body of one catch-all route `all` to upstream `echo` at `addr`.
pub fn catch_all_echo(addr: SocketAddr) -> String {
    upstream_and_route("echo", addr, "all", "/")
}

/// Starts a gateway (no admin listener) on the config body `body`; panics with the launch error
/// (the child's stderr included) when it does not come up.
pub async fn start_gateway(body: impl Into<String>) -> GatewayProcess {
    gateway()
        .config(body)
        .start()
        .await
        .unwrap_or_else(|e| panic!("gateway starts: {e}"))
}

/// A gateway with one catch-all route `all` to upstream `echo` at `addr`.
pub async fn start_catch_all(addr: SocketAddr) -> GatewayProcess {
    start_gateway(catch_all_echo(addr)).await
}

/// Asserts a gateway-generated JSON error: status, `content-type: application/json`,
/// `error.code`, a non-empty message, and `error.request_id` equal to the response's
/// `x-request-id`. Returns the body.
pub async fn assert_json_error(
    resp: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "content-type was {content_type:?}"
    );
    let request_id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .expect("x-request-id on the error response");
    let text = resp.text().await.expect("body");
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("error body {text:?} is not JSON: {e}"));
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message missing: {body}"
    );
    assert_eq!(
        body["error"]["request_id"],
        request_id.as_str(),
        "body: {body}"
    );
    body
}

/// The value of response header `name`, as text.
pub fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// True for a W3C `traceparent` of version 00 with non-zero ids.
pub fn is_valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

/// An HTTP/3 client of `gw`'s QUIC listener trusting its generated certificate (connecting
/// retried for up to 2 s, see [`testkit::h3::H3Client::connect_patiently`]).
pub async fn h3_client(gw: &GatewayProcess) -> testkit::h3::H3Client {
    let pem = gw
        .self_signed_cert_pem()
        .expect("generated self-signed cert readable");
    let addr = gw.https_addr().expect("https (and h3) enabled");
    testkit::h3::H3Client::connect_patiently(addr, &pem, Duration::from_secs(2))
        .await
        .unwrap_or_else(|e| panic!("h3 connect to {addr}: {e}"))
}

/// Fetches `path` over HTTP/3 with the independent `aioquic` client
/// (`tests/support/aioquic_get.py`, installed by `scripts/setup --install-only`) from
/// `127.0.0.1:port`, trusting the PEM file `ca`; `method_and_body` adds e.g. `["POST", "text"]`.
/// Returns the script's JSON line (`status`, `headers`, `body`); panics when the fetch failed.
pub async fn aioquic_fetch(
    port: u16,
    path: &str,
    ca: &std::path::Path,
    method_and_body: &[&str],
) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/aioquic_get.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .args(["127.0.0.1", &port.to_string(), path])
        .arg(ca)
        .args(method_and_body)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "aioquic fetch of {path} failed (is aioquic installed? scripts/setup --install-only): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "aioquic output is not one JSON line ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Polls `GET /readyz` until it answers 200 (bounded by [`WAIT`]); readiness may trail
/// `/healthz` by a moment during start-up, as with any orchestrator probe.
///
/// The gateway records a request in its histograms after the response is sent; before
/// returning, this waits (at most 2 s) for the access-log line of the last `/readyz`, written
/// after the recording, so that tests counting requests start from a settled count.
pub async fn wait_ready(gw: &GatewayProcess) {
    let client = http_client();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let resp = client.get(gw.http_url("/readyz")).send().await;
        let status = resp.as_ref().map(|r| r.status().as_u16());
        if let Ok(200) = status {
            if let Some(id) = resp.ok().and_then(|r| header(&r, "x-request-id")) {
                let _ = gw
                    .wait_for_access_log(Duration::from_secs(2), |l| l["request_id"] == id.as_str())
                    .await;
            }
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never answered 200 (last: {status:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
