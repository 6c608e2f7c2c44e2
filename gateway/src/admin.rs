//! The admin API (SPEC.md): config, reload, history, rollback, upstream state, latency
//! histograms and Prometheus metrics (agents and tasks: [`crate::admin_agents`]), on its own listener (127.0.0.1:9901 in the shipped config).
//!
//! It runs on the control-plane runtime of the main thread, never on the proxy's worker threads.
//! With `[admin] token` set, every endpoint requires `Authorization: Bearer <token>` (401
//! otherwise, compared in constant time), except the dashboard page and its assets
//! ([`crate::dashboard`]), which hold no data. Bodies are JSON unless noted. Config texts are shown
//! with their secrets masked ([`orchestra_config::secrets`]).
//!
//! Besides this file: [`monitor_api`] (`/admin/alerts`, `/admin/timeseries`), [`gauges`] (the
//! non-histogram part of `/metrics`), [`config_versions`] (`/admin/config/history/{n}`).

mod config_versions;
mod gauges;
mod monitor_api;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use orchestra_lb::BreakerState;
use orchestra_metrics::{export, Summary, Window};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::reload::{self, Applied, ReloadError, Version};
use crate::state::GatewayState;

/// Largest config accepted by `PUT /admin/config`.
pub const MAX_CONFIG_BYTES: usize = 16 * 1024 * 1024;

/// An admin API response.
pub(crate) type Resp = Response<Full<Bytes>>;

pub(crate) fn json_response(status: StatusCode, v: Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn text_response(status: StatusCode, content_type: &'static str, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Resp {
    json_response(
        status,
        json!({"error": {"code": code, "message": message.into()}}),
    )
}

/// Serves the admin API on `listener` until the process exits.
pub async fn serve(listener: TcpListener, state: Arc<GatewayState>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(req, &state, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin connection");
            }
        });
    }
}

fn authorized(req: &Request<Incoming>, state: &GatewayState) -> bool {
    let live = state.live();
    let Some(token) = live.snapshot.admin.token.as_deref() else {
        return true;
    };
    let Some(given) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Same constant-time comparison as agent key checks (`subtle`, as in orchestra-plugins).
    bool::from(given.trim().as_bytes().ct_eq(token.as_bytes()))
}

pub(crate) fn query_param<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    })
}

async fn handle(req: Request<Incoming>, state: &Arc<GatewayState>, peer: SocketAddr) -> Resp {
    if let Some(page) = crate::dashboard::serve(&req) {
        return page;
    }
    if !authorized(&req, state) {
        tracing::warn!(%peer, path = req.uri().path(), "admin: missing or wrong bearer token");
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "AUTH_001",
            "missing or invalid bearer token",
        );
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::GET, "/admin/config") => get_config(&req, state),
        (Method::PUT, "/admin/config") => put_config(req, state).await,
        (Method::POST, "/admin/reload") => applied(reload::reload_file(state, "admin-reload")),
        (Method::GET, "/admin/config/history") => history(state),
        (Method::POST, "/admin/config/rollback") => applied(reload::rollback(state)),
        (Method::GET, "/admin/upstreams") => upstreams(state),
        (Method::GET, "/admin/histograms") => histograms(&req, state),
        (Method::GET, p) if p.starts_with("/admin/histograms/") => {
            histogram_one(&req, state, &p["/admin/histograms/".len()..])
        }
        (Method::GET, "/admin/alerts") => monitor_api::alerts(state),
        (Method::GET, "/admin/timeseries") => monitor_api::timeseries(&req, state),
        (Method::GET, p) if p.starts_with("/admin/config/history/") => {
            config_versions::version(state, &p["/admin/config/history/".len()..])
        }
        (Method::GET, "/metrics") => {
            let mut text = export::prometheus(&state.registry, Instant::now());
            gauges::append(&mut text, state);
            if let Some(agents) = state.agents() {
                crate::agent_hub::report::prometheus(agents, &mut text);
            }
            crate::backend::prometheus(state, &mut text);
            text_response(StatusCode::OK, "text/plain; version=0.0.4", text)
        }
        (_, p) if crate::admin_agents::owns(p) => crate::admin_agents::handle(req, state).await,
        (_, p) if p.starts_with("/admin") || p == "/metrics" => error(
            StatusCode::NOT_FOUND,
            "NO_ROUTE",
            format!("no admin endpoint {p}"),
        ),
        _ => error(StatusCode::NOT_FOUND, "NO_ROUTE", "not an admin path"),
    }
}

fn unix(t: std::time::SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn version_json(v: &Version) -> Value {
    json!({
        "version": v.version,
        "sha256": v.sha256,
        "source": v.source,
        "applied_at_unix": unix(v.applied_at),
    })
}

fn get_config(req: &Request<Incoming>, state: &GatewayState) -> Resp {
    let live = state.live();
    let masked = orchestra_config::secrets::mask_config_text(&live.text);
    if query_param(req, "format") == Some("toml") {
        let mut r = text_response(StatusCode::OK, "application/toml", masked);
        if let Ok(v) = http::HeaderValue::from_str(&live.version.to_string()) {
            r.headers_mut().insert("x-config-version", v);
        }
        if let Ok(v) = http::HeaderValue::from_str(&live.sha256) {
            r.headers_mut().insert("x-config-sha256", v);
        }
        return r;
    }
    json_response(
        StatusCode::OK,
        json!({
            "version": live.version,
            "sha256": live.sha256,
            "source": live.source,
            "applied_at_unix": unix(live.applied_at),
            "format": "toml",
            "config": masked,
        }),
    )
}

async fn put_config(req: Request<Incoming>, state: &GatewayState) -> Resp {
    let body = match Limited::new(req.into_body(), MAX_CONFIG_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PARAM_001",
                format!("config body: {e} (limit {MAX_CONFIG_BYTES} bytes)"),
            )
        }
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "PARAM_001",
            "config body is not UTF-8",
        );
    };
    let result = reload::apply(state, text, "PUT /admin/config", "admin-put");
    if let Err(e) = &result {
        tracing::error!(error = %e, "config from PUT /admin/config rejected");
    }
    applied(result)
}

fn applied(result: Result<Applied, ReloadError>) -> Resp {
    match result {
        Ok(a) => json_response(
            StatusCode::OK,
            json!({
                "version": a.version,
                "sha256": a.sha256,
                "changed": a.changed,
                "restart_needed": a.restart_needed,
            }),
        ),
        Err(ReloadError::Invalid(errors)) => {
            let list: Vec<Value> = errors
                .0
                .iter()
                .map(|e| json!({"file": e.file, "path": e.path, "message": e.to_string()}))
                .collect();
            json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": {
                    "code": "PARAM_001",
                    "message": format!("invalid config ({} error(s)); the running config is kept", list.len()),
                    "errors": list,
                }}),
            )
        }
        Err(e @ ReloadError::AgentKeys(_)) => {
            error(StatusCode::BAD_REQUEST, "PARAM_001", e.to_string())
        }
        Err(ReloadError::NoPrevious) => error(
            StatusCode::CONFLICT,
            "PARAM_001",
            ReloadError::NoPrevious.to_string(),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "SYS_001", e.to_string()),
    }
}

fn history(state: &GatewayState) -> Resp {
    let versions: Vec<Value> = state.history.versions().iter().map(version_json).collect();
    json_response(
        StatusCode::OK,
        json!({"current": state.live().version, "versions": versions}),
    )
}

fn upstreams(state: &GatewayState) -> Resp {
    let live = state.live();
    let list: Vec<Value> = live
        .snapshot
        .upstreams
        .iter()
        .map(|u| {
            let targets: Vec<Value> = u
                .balancer
                .snapshot()
                .iter()
                .map(|t| {
                    json!({
                        "addr": t.addr.to_string(),
                        "weight": t.weight,
                        "healthy": t.healthy,
                        "ejected": t.ejected,
                        "in_flight": t.in_flight,
                        "ewma_rtt_us": t.ewma_rtt_us,
                        "requests": t.requests,
                        "errors": t.errors,
                    })
                })
                .collect();
            let breaker = u.policy.breaker.as_ref().map(|b| {
                {
                    let (state, open_remaining_ms) = match b.state() {
                        BreakerState::Closed => ("closed", None),
                        BreakerState::HalfOpen => ("half_open", None),
                        BreakerState::Open { remaining } => {
                            ("open", Some(remaining.as_millis() as u64))
                        }
                    };
                    json!({
                        "state": state,
                        "open_remaining_ms": open_remaining_ms,
                        "in_flight": b.in_flight(),
                        "trips": b.trips(),
                    })
                }
            });
            let budget = &u.policy.retry_budget;
            json!({
                "name": &*u.name,
                "balancer": u.balancer.strategy(),
                "targets": targets,
                "circuit_breaker": breaker,
                "retry_budget": {"active": budget.active(), "retries_in_flight": budget.retries_in_flight(), "rejected": budget.rejected()},
            })
        })
        .collect();
    json_response(StatusCode::OK, json!({"upstreams": list}))
}

fn window_of(req: &Request<Incoming>) -> Result<Window, Box<Resp>> {
    match query_param(req, "window") {
        None => Ok(Window::Total),
        Some(w) => Window::parse(w).ok_or_else(|| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                "PARAM_001",
                format!("window must be 1m, 5m or total, not {w:?}"),
            ))
        }),
    }
}

fn summary_json(s: &Summary) -> Value {
    json!({
        "count": s.count,
        "p50": s.p50,
        "p90": s.p90,
        "p99": s.p99,
        "p999": s.p999,
        "max": s.max,
        "mean": (s.mean * 10.0).round() / 10.0,
    })
}

fn histograms(req: &Request<Incoming>, state: &GatewayState) -> Resp {
    let window = match window_of(req) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let series: Vec<Value> = state
        .registry
        .summaries(window, Instant::now())
        .iter()
        .map(|(k, s)| {
            let mut v = summary_json(s);
            if let Value::Object(m) = &mut v {
                m.insert("series".into(), k.path().into());
                m.insert("kind".into(), k.kind.as_str().into());
                m.insert("name".into(), k.name.clone().into());
                m.insert("metric".into(), k.metric.as_str().into());
            }
            v
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({"window": window.as_str(), "unit": "us", "series": series}),
    )
}

fn histogram_one(req: &Request<Incoming>, state: &GatewayState, name: &str) -> Resp {
    let window = match window_of(req) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let name = percent_decode(name);
    let Some(id) = state.registry.find(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            "PARAM_001",
            format!("no series {name:?}; names look like route:NAME:total (see /admin/histograms)"),
        );
    };
    let h = state.registry.histogram(id, window, Instant::now());
    if query_param(req, "format") == Some("hdr") {
        return match export::hdr_base64(&h) {
            Ok(b64) => text_response(StatusCode::OK, "text/plain", b64 + "\n"),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "SYS_001", e),
        };
    }
    let mut v = summary_json(&Summary::of(&h));
    if let Value::Object(m) = &mut v {
        m.insert("series".into(), name.into());
        m.insert("window".into(), window.as_str().into());
        m.insert("unit".into(), "us".into());
    }
    json_response(StatusCode::OK, v)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
