//! The modes, one file each, and the dispatch from the command line to them.
//!
//! Request/response protocols (`h1`, `h2c`, `h2`, `ws`) are [`crate::engine::Driver`]s run by
//! the shared engine, so they get open/closed loop, warm-up, limits and reports for free; an
//! HTTP/3 or simulated-agent mode is one more driver file plus one arm in [`run`]. Scenarios
//! with another shape (`ws-hold`, `sse`) run their own loop and return their own
//! [`Report`].

pub mod agents;
pub mod fanout;
pub mod h1;
pub mod h2;
pub mod h3;
pub mod http;
pub mod realtime;
pub mod sse;
pub mod task;
pub mod ws;
pub mod ws_hold;

use std::sync::Arc;

use ::http::Version;

use crate::cli::{LoadArgs, ModeCmd, TlsArgs};
use crate::engine::{self, Driver, EngineConfig, Pacing};
use crate::net::{tls_config, Connector, Target, TlsOptions};
use crate::report::{Report, RequestReport, RunInfo};

/// Runs the mode chosen on the command line with `threads` runtime threads.
pub async fn run(mode: ModeCmd, threads: usize) -> Result<Box<dyn Report>, String> {
    let progress = !mode.common().quiet;
    match mode {
        ModeCmd::H1(a) => {
            let target = Target::parse(&a.load.url, &["http", "https"])?;
            let connector = connector(&target, &a.tls, &[b"http/1.1"]).await?;
            let headers = http::parse_headers(&a.load.headers)?;
            let tpl = http::RequestTemplate::new(
                &target,
                Version::HTTP_11,
                &a.http.method,
                headers,
                a.http.body_size,
            )?;
            let driver = h1::H1::new(connector, tpl, a.new_conn);
            let workers = a.load.connections;
            run_requests(driver, "h1", &a.load, 1, workers, threads, progress).await
        }
        ModeCmd::H2c(a) | ModeCmd::H2(a) | ModeCmd::H3(a) if a.streams == 0 => {
            let _ = a;
            Err("-m/--streams must be at least 1".into())
        }
        ModeCmd::H2c(a) => {
            let target = Target::parse(&a.load.url, &["http"])?;
            run_h2(target, a, "h2c", threads, progress).await
        }
        ModeCmd::H2(a) => {
            let target = Target::parse(&a.load.url, &["https"])?;
            run_h2(target, a, "h2", threads, progress).await
        }
        ModeCmd::H3(a) => h3::run(a, threads, progress).await,
        ModeCmd::Ws(a) => {
            let (target, connector) = http1_target(&a.load.url, &["ws", "wss"], &a.tls).await?;
            let headers = http::parse_headers(&a.load.headers)?;
            let driver = ws::Ws::new(connector, target.url.clone(), headers, a.msg_size);
            let workers = a.load.connections;
            run_requests(driver, "ws", &a.load, 1, workers, threads, progress).await
        }
        ModeCmd::Agents(a) => agents::run(a, progress).await,
        ModeCmd::Task(a) => {
            let (target, connector) = http1_target(&a.url, &["ws", "wss"], &a.tls).await?;
            let url = target.url.clone();
            Ok(Box::new(task::run(a, connector, url).await?))
        }
        ModeCmd::Fanout(a) => {
            if a.subscribers == 0 {
                return Err("-c/--subscribers must be at least 1".into());
            }
            let (target, connector) = http1_target(&a.url, &["ws", "wss"], &a.tls).await?;
            let url = target.url.clone();
            Ok(Box::new(fanout::run(a, connector, url).await?))
        }
        ModeCmd::WsHold(a) => {
            if a.connections == 0 {
                return Err("-c/--connections must be at least 1".into());
            }
            let (target, connector) = http1_target(&a.url, &["ws", "wss"], &a.tls).await?;
            let cfg = ws_hold::HoldConfig {
                url: target.url.clone(),
                headers: http::parse_headers(&a.headers)?,
                connections: a.connections,
                duration: a.duration,
                pids: a.pid.clone(),
                open_concurrency: a.open_concurrency,
                settle: a.settle,
                ping_interval: a.ping_interval,
                timeout: a.timeout,
                progress,
            };
            Ok(Box::new(ws_hold::run(cfg, connector).await?))
        }
        ModeCmd::Sse(a) => {
            if a.connections == 0 {
                return Err("-c/--connections must be at least 1".into());
            }
            let (target, connector) = http1_target(&a.url, &["http", "https"], &a.tls).await?;
            let tpl = http::RequestTemplate::new(
                &target,
                Version::HTTP_11,
                "GET",
                http::parse_headers(&a.headers)?,
                0,
            )?;
            let cfg = sse::SseConfig {
                url: target.url.clone(),
                connections: a.connections,
                duration: a.duration,
                timeout: a.timeout,
                progress,
            };
            Ok(Box::new(sse::run(cfg, connector, tpl).await?))
        }
    }
}

async fn run_h2(
    target: Target,
    a: crate::cli::H2Args,
    name: &str,
    threads: usize,
    progress: bool,
) -> Result<Box<dyn Report>, String> {
    let connector = connector(&target, &a.tls, &[b"h2"]).await?;
    let headers = http::parse_headers(&a.load.headers)?;
    let tpl = http::RequestTemplate::new(
        &target,
        Version::HTTP_2,
        &a.http.method,
        headers,
        a.http.body_size,
    )?;
    let driver = h2::H2::new(connector, tpl, a.load.connections);
    let workers = a.load.connections * a.streams;
    run_requests(driver, name, &a.load, a.streams, workers, threads, progress).await
}

/// Parses `url` (one of `schemes`) and opens its connector with ALPN `http/1.1` (WebSocket and
/// SSE modes).
async fn http1_target(
    url: &str,
    schemes: &[&str],
    tls: &TlsArgs,
) -> Result<(Target, Connector), String> {
    let target = Target::parse(url, schemes)?;
    let connector = connector(&target, tls, &[b"http/1.1"]).await?;
    Ok((target, connector))
}

async fn connector(target: &Target, tls: &TlsArgs, alpn: &[&[u8]]) -> Result<Connector, String> {
    let addr = target.resolve().await?;
    let cfg = if target.tls {
        let opts = TlsOptions {
            insecure: tls.insecure,
            ca: tls.ca.clone(),
        };
        Some(tls_config(&opts, alpn)?)
    } else {
        None
    };
    Connector::new(target, addr, cfg)
}

async fn run_requests<D: Driver>(
    driver: D,
    mode: &str,
    load: &LoadArgs,
    streams: usize,
    workers: usize,
    threads: usize,
    progress: bool,
) -> Result<Box<dyn Report>, String> {
    load.validate()?;
    let cfg = EngineConfig {
        workers,
        pacing: match load.rate {
            Some(rate) => Pacing::Open { rate },
            None => Pacing::Closed,
        },
        warmup: load.warmup,
        duration: load.effective_duration(),
        requests: load.requests,
        timeout: load.timeout,
        progress,
        shards: threads * 4,
    };
    let result = engine::run(Arc::new(driver), &cfg)
        .await
        .map_err(|e| format!("cannot start the pacer: {e}"))?;
    let info = RunInfo {
        mode: mode.to_string(),
        url: load.url.clone(),
        loop_kind: if load.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        target_rate: load.rate,
        connections: load.connections,
        streams_per_connection: streams,
        threads,
        warmup_s: load.warmup.as_secs_f64(),
    };
    Ok(Box::new(RequestReport::new(info, &result)))
}
