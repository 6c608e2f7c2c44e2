//! A small client of the gateway's admin API for the SRE end-to-end tests (reload, history,
//! upstream counters, histograms, metrics), and a runner for the `stats` / `reload`
//! subcommands.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use testkit::GatewayProcess;

use super::{http_client, BIN, WAIT};

/// The environment variable the CLI reads its admin token from.
pub const TOKEN_ENV: &str = "ORCHESTRA_ADMIN_TOKEN";

/// sha256 of `text`, lowercase hex (what the admin API reports for a config text).
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A status code and the body parsed as JSON (`Value::Null` when the body is not JSON, with
/// the raw text kept).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body as JSON, or `Null`.
    pub json: Value,
    /// The raw body.
    pub text: String,
}

/// Talks to one gateway's admin listener, with or without a bearer token.
#[derive(Debug, Clone)]
pub struct Admin {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Admin {
    /// A client for `gw`'s admin listener using the token it was started with, if any.
    pub fn new(gw: &GatewayProcess) -> Self {
        Self {
            client: http_client(),
            base: gw.admin_base_url(),
            token: gw.admin_token().map(str::to_string),
        }
    }

    /// The same client with another token (`None`: no `Authorization` header).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    /// A request builder for `method path` with the bearer token when set.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    /// Sends `method path` with an optional body and reads the answer.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&str>) -> Answer {
        let mut builder = self.request(method.clone(), path);
        if let Some(body) = body {
            builder = builder
                .header("content-type", "application/toml")
                .body(body.to_string());
        }
        let resp = builder
            .send()
            .await
            .unwrap_or_else(|e| panic!("admin {method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("admin {method} {path} body: {e}"));
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, json, text }
    }

    /// `GET path`, asserting 200 and a JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let a = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(a.status, 200, "GET {path}: {}", a.text);
        assert!(
            !a.json.is_null(),
            "GET {path}: body is not JSON: {}",
            a.text
        );
        a.json
    }

    /// `PUT /admin/config` with `text`.
    pub async fn put_config(&self, text: &str) -> Answer {
        self.call(reqwest::Method::PUT, "/admin/config", Some(text))
            .await
    }

    /// `PUT /admin/config`, asserting 200 and that the answer's `restart_needed` is exactly
    /// `restart_needed` (the settings the process keeps until it restarts); returns the answer.
    pub async fn put_config_needing_restart(&self, text: &str, restart_needed: &[&str]) -> Answer {
        let a = self.put_config(text).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(
            a.json["restart_needed"],
            serde_json::json!(restart_needed),
            "{}",
            a.text
        );
        a
    }

    /// `PUT /admin/config`, asserting 200 and `changed: true`; returns the new version.
    pub async fn apply(&self, text: &str) -> u64 {
        let a = self.put_config(text).await;
        assert_eq!(a.status, 200, "PUT /admin/config: {}", a.text);
        assert_eq!(a.json["changed"], true, "PUT /admin/config: {}", a.text);
        a.json["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("no version in {}", a.text))
    }

    /// `POST /admin/reload`.
    pub async fn reload(&self) -> Answer {
        self.call(reqwest::Method::POST, "/admin/reload", None)
            .await
    }

    /// `POST /admin/config/rollback`.
    pub async fn rollback(&self) -> Answer {
        self.call(reqwest::Method::POST, "/admin/config/rollback", None)
            .await
    }

    /// `GET /admin/config` (JSON).
    pub async fn config(&self) -> Value {
        self.get_json("/admin/config").await
    }

    /// The running config version.
    pub async fn version(&self) -> u64 {
        let c = self.config().await;
        c["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("no version in {c}"))
    }

    /// Polls `GET /admin/config` until its version exceeds `version` (bounded by `timeout`)
    /// and returns it; panics with the last answer otherwise.
    pub async fn wait_version_above(&self, version: u64, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let c = self.config().await;
            if c["version"].as_u64().is_some_and(|v| v > version) {
                return c;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "config version still {} after {timeout:?}: {c}",
                c["version"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /admin/config/history`.
    pub async fn history(&self) -> Value {
        self.get_json("/admin/config/history").await
    }

    /// The entry of target `addr` of upstream `upstream` in `GET /admin/upstreams`.
    pub async fn target(&self, upstream: &str, addr: SocketAddr) -> Option<Value> {
        let all = self.get_json("/admin/upstreams").await;
        all["upstreams"]
            .as_array()?
            .iter()
            .find(|u| u["name"] == upstream)?["targets"]
            .as_array()?
            .iter()
            .find(|t| t["addr"] == addr.to_string())
            .cloned()
    }

    /// `(requests, errors)` of a target; panics when it is not listed.
    pub async fn target_counts(&self, upstream: &str, addr: SocketAddr) -> (u64, u64) {
        let t = self
            .target(upstream, addr)
            .await
            .unwrap_or_else(|| panic!("target {upstream}/{addr} not in /admin/upstreams"));
        (
            t["requests"].as_u64().expect("requests"),
            t["errors"].as_u64().expect("errors"),
        )
    }

    /// `GET /admin/histograms?window=W`.
    pub async fn histograms(&self, window: &str) -> Value {
        self.get_json(&format!("/admin/histograms?window={window}"))
            .await
    }

    /// One series of `GET /admin/histograms?window=W`, by its `series` name.
    pub async fn series(&self, window: &str, name: &str) -> Option<Value> {
        let all = self.histograms(window).await;
        all["series"]
            .as_array()?
            .iter()
            .find(|s| s["series"] == name)
            .cloned()
    }

    /// The `count` of a series in the `total` window (0 when it is not listed).
    pub async fn series_count(&self, name: &str) -> u64 {
        self.series("total", name)
            .await
            .and_then(|s| s["count"].as_u64())
            .unwrap_or(0)
    }

    /// Polls until the `total` count of series `name` reaches `at_least` (requests are
    /// recorded when their response has been written, so a client can see its answer a
    /// moment before), bounded by [`WAIT`]; returns the count then.
    pub async fn wait_series_count(&self, name: &str, at_least: u64) -> u64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let n = self.series_count(name).await;
            if n >= at_least || tokio::time::Instant::now() >= deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /metrics`, asserting 200; the exposition text.
    pub async fn metrics(&self) -> String {
        let a = self.call(reqwest::Method::GET, "/metrics", None).await;
        assert_eq!(a.status, 200, "GET /metrics: {}", a.text);
        a.text
    }
}

/// Runs `orchestra-gateway ARGS` (with `ORCHESTRA_ADMIN_TOKEN` removed from the environment,
/// then `env` added), bounded by [`WAIT`].
pub async fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_remove(TOKEN_ENV)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(WAIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("orchestra-gateway {args:?} did not finish within {WAIT:?}"))
        .unwrap_or_else(|e| panic!("orchestra-gateway {args:?}: {e}"))
}

/// Runs `orchestra-gateway stats --admin ADMIN --window total` against `gw` with `env`
/// added (see [`cli`]).
pub async fn stats_total(gw: &GatewayProcess, env: &[(&str, &str)]) -> std::process::Output {
    let admin = gw.admin_base_url();
    cli(&["stats", "--admin", &admin, "--window", "total"], env).await
}

/// `stdout` and `stderr` of a CLI run, for assertion messages.
pub fn describe_output(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `GET url` on the data plane; `(status, x-echo-server or "")`, or the error text.
pub async fn probe(client: &reqwest::Client, url: &str) -> Result<(u16, String), String> {
    let resp = client.get(url).send().await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let server = resp
        .headers()
        .get("x-echo-server")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    resp.bytes().await.map_err(|e| format!("body: {e:?}"))?;
    Ok((status, server))
}

/// Asserts that `GET url` is answered 200 by the echo server named `server`.
pub async fn assert_served_by(client: &reqwest::Client, url: &str, server: &str) {
    match probe(client, url).await {
        Ok((200, s)) if s == server => {}
        other => panic!("GET {url}: expected 200 from {server:?}, got {other:?}"),
    }
}

/// Asserts that `GET url` is answered 404 (no route).
pub async fn assert_no_route(client: &reqwest::Client, url: &str) {
    match probe(client, url).await {
        Ok((404, _)) => {}
        other => panic!("GET {url}: expected 404 NO_ROUTE, got {other:?}"),
    }
}

/// Waits (bounded by `timeout`) for a JSON log line of level ERROR whose message contains
/// `needle`; returns it.
pub async fn wait_for_error_log(
    gw: &GatewayProcess,
    needle: &str,
    timeout: Duration,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let found = gw.json_logs().into_iter().find(|l| {
            l["level"] == "ERROR" && l["message"].as_str().is_some_and(|m| m.contains(needle))
        });
        if found.is_some() || tokio::time::Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
