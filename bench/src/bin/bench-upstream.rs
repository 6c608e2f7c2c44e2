//! `bench-upstream`: the fast upstream for side-by-side proxy benchmarks.
//!
//! HTTP/1.1 and h2c on `--listen`, optionally TLS (h2, http/1.1) on `--tls-listen`. Routes: `/`,
//! `/bytes/N`, `/ws` (echo), `/sse`, `/slow?ms=N`, `/healthz`. See `bench/README.md`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use orchestra_bench::upstream::{self, State, UpstreamConfig};
use orchestra_config::duration::parse_duration;
use tokio::net::TcpListener;

/// Fast upstream for Orchestra Gateway benchmarks (hyper 1: HTTP/1.1 + h2c on one port).
///
/// Routes: `GET /` → "hello, world\n" (13 bytes); `GET /bytes/N` → N bytes (preallocated);
/// `GET /ws` → WebSocket echo; `GET /sse` → event stream (one event per --sse-interval, or
/// `?interval_ms=N`), each event's data is {"seq":N,"ts_us":UNIX_MICROS}; `GET /slow?ms=N` →
/// the small body after N ms; `GET /healthz` → "ok".
#[derive(Debug, Parser)]
#[command(name = "bench-upstream", version)]
struct Args {
    /// Address for HTTP/1.1 and h2c (prior knowledge).
    #[arg(long, default_value = "127.0.0.1:19000")]
    listen: SocketAddr,
    #[command(flatten)]
    tls: orchestra_bench::cli::TlsListen,
    /// Runtime worker threads (1 = a single-threaded runtime, cheapest when pinned to one CPU).
    /// Default: the number of CPUs.
    #[arg(long)]
    threads: Option<usize>,
    /// Time between two events on /sse (e.g. 100ms, 1s).
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    sse_interval: Duration,
    /// Largest N accepted by /bytes/N; allocated once at start.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    max_bytes: usize,
    /// Delay added before every answer (e.g. 20ms): a slow instance for balancing benchmarks.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    delay: Duration,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (rt, threads) = match orchestra_bench::runtime::build(args.threads) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("bench-upstream: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args, threads)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-upstream: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, threads: usize) -> std::io::Result<()> {
    let cfg = UpstreamConfig {
        sse_interval: args.sse_interval,
        max_bytes: args.max_bytes,
        delay: args.delay,
    };
    let state = Arc::new(State::new(&cfg));
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("bind {}: {e}", args.listen)))?;
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(upstream::serve(listener, state.clone(), None)));
    if let (Some(addr), Some(cert), Some(key)) =
        (args.tls.tls_listen, &args.tls.cert, &args.tls.key)
    {
        let acceptor = upstream::tls::acceptor(cert, key)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
        tasks.push(tokio::spawn(upstream::serve(
            listener,
            state.clone(),
            Some(acceptor),
        )));
        eprintln!("bench-upstream: TLS (h2, http/1.1) on {addr}");
    }
    eprintln!(
        "bench-upstream: HTTP/1.1 + h2c on {} ({threads} thread(s))",
        args.listen
    );
    for task in tasks {
        match task.await {
            Ok(res) => res?,
            Err(e) => return Err(std::io::Error::other(e)),
        }
    }
    Ok(())
}
