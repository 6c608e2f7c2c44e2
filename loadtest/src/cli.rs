//! Command line: one subcommand per mode, shared flag groups flattened into each.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use orchestra_config::duration::parse_duration;

/// Load generator for Orchestra Gateway.
///
/// Closed loop (default): each of -c connections sends its next request as soon as the previous
/// one finished. Open loop (--rate R): requests are due at t0 + i/R whatever the target does;
/// latency counts from that intended time (coordinated-omission corrected), so time spent
/// waiting for a free connection is part of it.
///
/// Latencies are HdrHistograms (3 significant digits): p50, p90, p99, p99.9, max, mean.
/// A progress line goes to stderr every second; the report goes to stdout (--json for one
/// JSON object with stable field names, latencies in µs).
#[derive(Debug, Parser)]
#[command(name = "orchestra-loadtest", version, about, long_about)]
pub struct Cli {
    /// The protocol / scenario to run.
    #[command(subcommand)]
    pub mode: ModeCmd,
}

/// Modes (subcommands).
#[derive(Debug, Subcommand)]
pub enum ModeCmd {
    /// HTTP/1.1 with keep-alive (or a new connection per request with --new-conn); http:// or
    /// https:// URLs.
    H1(H1Args),
    /// HTTP/2 cleartext with prior knowledge (h2c); http:// URLs.
    H2c(H2Args),
    /// HTTP/2 over TLS (ALPN h2); https:// URLs. Use --insecure for self-signed certificates
    /// or --ca FILE.
    H2(H2Args),
    /// HTTP/3 over QUIC (ALPN h3); https:// URLs naming the server's UDP port. Same flags as h2
    /// (--streams per connection, --insecure or --ca).
    H3(H2Args),
    /// WebSocket echo round trips: each request is one binary message of --msg-size bytes that
    /// the server must send back; ws:// or wss:// URLs.
    Ws(WsArgs),
    /// Open N WebSocket connections, hold them for --duration, and report the target
    /// process's memory per connection (VmRSS of --pid before and after).
    #[command(name = "ws-hold")]
    WsHold(WsHoldArgs),
    /// N Server-Sent Events subscribers: events/s, and per-event latency when an event's data
    /// carries "ts_us":<unix µs> (or "ts_ms") from the sender's clock.
    Sse(SseArgs),
    /// Start one task through the gateway's realtime channel (/ws) and print its output; with
    /// --repeat N, measure worker:start -> first output instead.
    Task(TaskArgs),
    /// One task's output fanned out to N /ws subscribers: events/s delivered and latency.
    Fanout(FanoutArgs),
    /// Simulated agents over QUIC (orchestra-agent/1): gateway memory per agent and idle CPU,
    /// task dispatch latency, one task's output throughput into the backend.
    Agents(AgentsArgs),
}

impl ModeCmd {
    /// The flags every mode shares.
    pub fn common(&self) -> &CommonArgs {
        match self {
            ModeCmd::H1(a) => &a.common,
            ModeCmd::H2c(a) | ModeCmd::H2(a) | ModeCmd::H3(a) => &a.common,
            ModeCmd::Ws(a) => &a.common,
            ModeCmd::WsHold(a) => &a.common,
            ModeCmd::Sse(a) => &a.common,
            ModeCmd::Agents(a) => &a.common,
            ModeCmd::Task(a) => &a.common,
            ModeCmd::Fanout(a) => &a.common,
        }
    }
}

/// Flags shared by every mode.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Runtime worker threads (default: the number of CPUs; 1 = single-threaded runtime).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object on stdout instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Flags of every request/response mode (h1, h2c, h2, ws).
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Target URL.
    #[arg(long, short = 'u')]
    pub url: String,
    /// Concurrent connections.
    #[arg(long = "connections", short = 'c', default_value_t = 10)]
    pub connections: usize,
    /// Measured duration (e.g. 10s, 1m). Default 10s unless -n is given.
    #[arg(long, short = 'd', value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many measured requests (with -d too: whichever comes first).
    #[arg(long = "requests", short = 'n')]
    pub requests: Option<u64>,
    /// Warm-up before measuring (sent at the same pace, not recorded).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open loop: constant rate in requests/s over all connections. Without it: closed loop.
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Give up on one request (connect included) after this long; counted as a timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Extra request header "Name: value" (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
}

impl LoadArgs {
    /// `--duration`, defaulting to 10 s when neither it nor `--requests` is given, so a run
    /// always ends by itself.
    pub fn effective_duration(&self) -> Option<Duration> {
        match (self.duration, self.requests) {
            (None, None) => Some(Duration::from_secs(10)),
            (d, _) => d,
        }
    }

    /// Checks values clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("-c/--connections must be at least 1".into());
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(format!("--rate must be a positive number, got {r}"));
            }
        }
        if self.requests == Some(0) {
            return Err("-n/--requests must be at least 1".into());
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be positive".into());
        }
        Ok(())
    }
}

/// TLS flags.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Accept any server certificate (self-signed test setups).
    #[arg(long, short = 'k')]
    pub insecure: bool,
    /// Trust the CA certificates in this PEM file instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// `h1` flags.
#[derive(Debug, Clone, Args)]
pub struct H1Args {
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Open a new connection for every request (sends "Connection: close"); latency includes
    /// the TCP (and TLS) handshake.
    #[arg(long)]
    pub new_conn: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `h2c` / `h2` flags.
#[derive(Debug, Clone, Args)]
pub struct H2Args {
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Concurrent streams per connection (requests in flight = connections x streams).
    #[arg(long, short = 'm', default_value_t = 1)]
    pub streams: usize,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// HTTP request shape.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Request method.
    #[arg(long, short = 'X', default_value = "GET")]
    pub method: String,
    /// Request body of this many bytes (sent with every request).
    #[arg(long, default_value_t = 0)]
    pub body_size: usize,
}

/// `ws` flags.
#[derive(Debug, Clone, Args)]
pub struct WsArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Size of each binary message, in bytes.
    #[arg(long, default_value_t = 64)]
    pub msg_size: usize,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `ws-hold` flags.
#[derive(Debug, Clone, Args)]
pub struct WsHoldArgs {
    /// WebSocket URL (ws:// or wss://).
    #[arg(long, short = 'u')]
    pub url: String,
    /// Connections to open and hold.
    #[arg(long = "connections", short = 'c', default_value_t = 1000)]
    pub connections: usize,
    /// How long to hold them once all are open.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Process whose VmRSS (/proc/PID/status) is read before and after (repeatable: the sum,
    /// e.g. an nginx master and its worker).
    #[arg(long)]
    pub pid: Vec<u32>,
    /// Handshakes in flight at once while opening.
    #[arg(long, default_value_t = 64)]
    pub open_concurrency: usize,
    /// Pause after the last connection opened before reading RSS again.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Send a ping on every connection this often while holding (0s = never).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Give up on one connection's handshake after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Extra handshake header "Name: value" (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `sse` flags.
#[derive(Debug, Clone, Args)]
pub struct SseArgs {
    /// Event stream URL (http:// or https://).
    #[arg(long, short = 'u')]
    pub url: String,
    /// Subscribers (one connection each).
    #[arg(long = "connections", short = 'c', default_value_t = 10)]
    pub connections: usize,
    /// How long to listen.
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Give up on connecting (and on the response head) after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Extra request header "Name: value" (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `agents` flags.
#[derive(Debug, Clone, Args)]
pub struct AgentsArgs {
    /// The gateway's QUIC address (UDP host:port).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub addr: String,
    /// CA certificate (PEM) to trust: the gateway's self-signed one is data/tls/self-signed.crt.
    #[arg(long, default_value = "data/tls/self-signed.crt")]
    pub ca: PathBuf,
    /// Simulated agents (ids load-0 ... load-{N-1}).
    #[arg(long = "agents", short = 'c', default_value_t = 100)]
    pub agents: usize,
    /// Write the gateway's keys file for -c agents to FILE and exit.
    #[arg(long, value_name = "FILE")]
    pub write_keys: Option<PathBuf>,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 200)]
    pub open_concurrency: usize,
    /// Each agent's heartbeat period.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// Pause after the last registration before reading the gateway's RSS.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Idle hold (agents only heartbeating) over which the gateway's CPU is measured.
    #[arg(long, short = 'd', default_value = "30s", value_parser = parse_duration)]
    pub hold: Duration,
    /// The gateway process (VmRSS and CPU time from /proc).
    #[arg(long)]
    pub pid: Option<u32>,
    /// The gateway's admin API (tasks are started with POST /admin/tasks).
    #[arg(long, default_value = "http://127.0.0.1:9901")]
    pub admin: String,
    /// Admin bearer token.
    #[arg(long, env = "ORCHESTRA_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Tasks to start one after another after the hold (dispatch latency).
    #[arg(long, default_value_t = 0)]
    pub tasks: u64,
    /// Output lines of one more task, sent back to back (throughput into the backend).
    #[arg(long, default_value_t = 0)]
    pub stream_lines: u64,
    /// Give up on one registration or one task step after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("orchestra-loadtest").chain(args.iter().copied()))
    }

    #[test]
    fn h1_closed_loop_defaults() {
        let cli = parse(&["h1", "--url", "http://127.0.0.1:1/"]).expect("parse");
        let ModeCmd::H1(a) = cli.mode else {
            panic!("not h1")
        };
        assert_eq!(a.load.connections, 10);
        assert_eq!(a.load.rate, None);
        assert_eq!(a.load.effective_duration(), Some(Duration::from_secs(10)));
        assert!(!a.new_conn);
        assert_eq!(a.http.method, "GET");
        assert!(a.load.validate().is_ok());
    }

    #[test]
    fn durations_take_the_config_grammar_and_need_a_unit() {
        let cli = parse(&[
            "h1",
            "-u",
            "http://127.0.0.1:1/",
            "-d",
            "1.5s",
            "--warmup",
            "250ms",
        ])
        .expect("parse");
        let ModeCmd::H1(a) = cli.mode else {
            panic!("not h1")
        };
        assert_eq!(a.load.duration, Some(Duration::from_millis(1500)));
        assert_eq!(a.load.warmup, Duration::from_millis(250));
        let bare =
            parse(&["h1", "-u", "http://127.0.0.1:1/", "-d", "30"]).expect_err("bare number");
        let message = bare.to_string();
        assert!(message.contains("missing unit"), "{message}");
        let negative =
            parse(&["h1", "-u", "http://127.0.0.1:1/", "--duration=-1s"]).expect_err("negative");
        assert!(
            negative.to_string().contains("must not be negative"),
            "{negative}"
        );
    }

    #[test]
    fn h1_open_loop_flags() {
        let cli = parse(&[
            "h1",
            "-u",
            "http://127.0.0.1:1/x",
            "-c",
            "64",
            "--rate",
            "5000",
            "-d",
            "30s",
            "--warmup",
            "2s",
            "-H",
            "x-a: 1",
            "-H",
            "x-b: 2",
            "--new-conn",
            "--json",
            "--threads",
            "1",
            "--body-size",
            "100",
            "-X",
            "POST",
        ])
        .expect("parse");
        let ModeCmd::H1(a) = &cli.mode else {
            panic!("not h1")
        };
        assert_eq!(a.load.connections, 64);
        assert_eq!(a.load.rate, Some(5000.0));
        assert_eq!(a.load.duration, Some(Duration::from_secs(30)));
        assert_eq!(a.load.warmup, Duration::from_secs(2));
        assert_eq!(a.load.headers, vec!["x-a: 1", "x-b: 2"]);
        assert!(a.new_conn);
        assert_eq!(a.http.body_size, 100);
        assert_eq!(a.http.method, "POST");
        assert!(cli.mode.common().json);
        assert_eq!(cli.mode.common().threads, Some(1));
    }

    #[test]
    fn requests_only_means_no_duration() {
        let cli = parse(&["h2c", "-u", "http://x/", "-n", "200", "-m", "4"]).expect("parse");
        let ModeCmd::H2c(a) = cli.mode else {
            panic!("not h2c")
        };
        assert_eq!(a.load.effective_duration(), None);
        assert_eq!(a.load.requests, Some(200));
        assert_eq!(a.streams, 4);
    }

    #[test]
    fn validation() {
        let cli = parse(&["ws", "-u", "ws://x/", "--rate", "0"]).expect("parse");
        let ModeCmd::Ws(a) = cli.mode else {
            panic!("not ws")
        };
        assert!(a.load.validate().is_err());
        assert!(parse(&["h1", "-u", "http://x/", "-d", "ten"]).is_err());
        assert!(parse(&["h1"]).is_err());
    }

    #[test]
    fn ws_hold_and_sse() {
        let cli = parse(&[
            "ws-hold",
            "-u",
            "ws://x/ws",
            "-c",
            "500",
            "--pid",
            "1",
            "--pid",
            "2",
        ])
        .expect("parse");
        let ModeCmd::WsHold(a) = cli.mode else {
            panic!("not ws-hold")
        };
        assert_eq!(a.pid, vec![1, 2]);
        assert_eq!(a.connections, 500);
        let cli = parse(&["sse", "-u", "http://x/sse", "-c", "3", "-d", "1s"]).expect("parse");
        assert!(matches!(cli.mode, ModeCmd::Sse(_)));
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

/// How the realtime modes authenticate (`[realtime] auth`).
#[derive(Debug, Clone, Args)]
pub struct RealtimeAuthArgs {
    /// Bearer token to send.
    #[arg(long)]
    pub token: Option<String>,
    /// Mint an HS256 token (valid 1 h) with the secret in this file (the jwt plugin's
    /// `secret_file`; ./scripts/setup writes config/dev-jwt.secret).
    #[arg(long, value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// The `sub` of a minted token.
    #[arg(long, default_value = "dev")]
    pub sub: String,
}

/// `task` flags.
#[derive(Debug, Clone, Args)]
pub struct TaskArgs {
    /// The realtime WebSocket URL.
    #[arg(long, short = 'u', default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// The tool.
    #[arg(long, default_value = "custom")]
    pub tool: String,
    /// Run on this agent only.
    #[arg(long)]
    pub agent: Option<String>,
    /// Join this session (default: a new one).
    #[arg(long)]
    pub session: Option<String>,
    /// Give up when no event arrives for this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Run the task N times without printing its output, and report worker:start -> first
    /// output beside the local spawn time of `bash -c PROMPT`.
    #[arg(long, default_value_t = 0)]
    pub repeat: usize,
    /// The prompt (joined with spaces).
    #[arg(required = true, trailing_var_arg = true)]
    pub prompt: Vec<String>,
    #[command(flatten)]
    pub auth: RealtimeAuthArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `fanout` flags.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// The realtime WebSocket URL.
    #[arg(long, short = 'u', default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Subscribers.
    #[arg(long = "subscribers", short = 'c', default_value_t = 1000)]
    pub subscribers: usize,
    /// Lines the task prints.
    #[arg(long, short = 'n', default_value_t = 2000)]
    pub events: u64,
    /// Lines per second (default: as fast as python3 prints).
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Run on this agent only.
    #[arg(long)]
    pub agent: Option<String>,
    /// A subscriber gives up when no message arrives for this long.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub auth: RealtimeAuthArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}
