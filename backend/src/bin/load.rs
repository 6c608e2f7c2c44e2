//! `orchestra-backend-load`: drives the gateway's backend client the way the agent hub does and
//! measures it; also the "process that is spooling" of the crash tests.
//!
//! Creates a session and `--tasks` tasks, then appends `--events` events to each task through
//! [`BackendClient::append_events`] (`--per-call` events per call, tasks interleaved), keeping
//! at most `--window` calls in flight, and awaits every call's `Durable`. Prints
//! `durable TASK SEQ` on stdout every `--report-every` durable calls (in order), and at the end
//! one JSON summary line: events/s, the latency from a call to its `Durable` (p50, p99, max),
//! how many were committed, spooled, refused or rejected, and the client's status. With
//! `--read-back N`, also times range reads of N events of the first task.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::stream::{FuturesOrdered, StreamExt};
use orchestra_backend::client::{BackendClient, ClientConfig, ClientError, Persisted};
use orchestra_backend::model::{NewEvent, NewSession, NewTask, WriteOp};
use orchestra_logging::LogFormat;

/// Append events through the backend client and measure events/s and durability latency.
#[derive(Debug, Parser)]
#[command(name = "orchestra-backend-load", version, about)]
struct Args {
    /// Backend URL.
    #[arg(long)]
    url: String,
    /// Spool directory of the client.
    #[arg(long)]
    spool_dir: PathBuf,
    /// Spool size limit in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    spool_max_bytes: u64,
    /// Tasks to write to.
    #[arg(long, default_value_t = 1)]
    tasks: usize,
    /// Events per task.
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// Events per `append_events` call.
    #[arg(long, default_value_t = 1)]
    per_call: u64,
    /// Bytes of text in each event's data.
    #[arg(long, default_value_t = 64)]
    event_bytes: usize,
    /// Client batch size.
    #[arg(long, default_value_t = 50)]
    batch_max_events: usize,
    /// Client batch delay in milliseconds.
    #[arg(long, default_value_t = 50)]
    batch_max_delay_ms: u64,
    /// Prefix of the session and task ids.
    #[arg(long, default_value = "load")]
    run_id: String,
    /// Print `durable TASK SEQ` after every this many durable calls.
    #[arg(long)]
    report_every: Option<u64>,
    /// Calls in flight at most.
    #[arg(long, default_value_t = 100_000)]
    window: usize,
    /// Time range reads of this many events of the first task afterwards.
    #[arg(long)]
    read_back: Option<u32>,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "json")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    orchestra_logging::init(args.log_format, orchestra_backend::DEFAULT_LOG_FILTER);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(args))
}

#[derive(Default)]
struct Tally {
    committed: u64,
    spooled: u64,
    refused: u64,
    rejected: u64,
    other: u64,
}

impl Tally {
    fn add(&mut self, r: &Result<Persisted, ClientError>) {
        match r {
            Ok(Persisted::Committed) => self.committed += 1,
            Ok(Persisted::Spooled) => self.spooled += 1,
            Err(ClientError::SpoolFull { .. }) => self.refused += 1,
            Err(ClientError::Rejected { .. }) => self.rejected += 1,
            Err(_) => self.other += 1,
        }
    }
}

async fn run(args: Args) -> ExitCode {
    let mut cfg = ClientConfig::new(&args.url, &args.spool_dir);
    cfg.spool_max_bytes = args.spool_max_bytes;
    cfg.batch_max_events = args.batch_max_events;
    cfg.batch_max_delay = Duration::from_millis(args.batch_max_delay_ms);
    let client = match BackendClient::start(cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let session = format!("{}-session", args.run_id);
    let task_ids: Vec<String> = (0..args.tasks)
        .map(|i| format!("{}-task-{i}", args.run_id))
        .collect();
    let mut setup = vec![client.write(WriteOp::CreateSession(NewSession {
        id: Some(session.clone()),
        owner: "load".into(),
    }))];
    for id in &task_ids {
        setup.push(client.write(WriteOp::CreateTask(NewTask {
            id: Some(id.clone()),
            session_id: session.clone(),
            tool: "custom".into(),
            prompt: "load".into(),
            cwd: None,
            requires: vec![],
            priority: 0,
            agent_id: None,
        })));
    }
    for d in setup {
        if let Err(e) = d.await {
            eprintln!("setup write failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    let text: String = "x".repeat(args.event_bytes);
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("3 significant digits is valid");
    let mut tally = Tally::default();
    let mut inflight = FuturesOrdered::new();
    let mut durable_calls = 0u64;
    let out = std::io::stdout();
    let started = Instant::now();
    let mut seq = 1u64;
    while seq <= args.events {
        let last = (seq + args.per_call - 1).min(args.events);
        for (t, id) in task_ids.iter().enumerate() {
            let events: Vec<NewEvent> = (seq..=last)
                .map(|s| NewEvent {
                    seq: s,
                    kind: "worker:output".into(),
                    data: serde_json::json!({"task_id": id, "seq": s, "kind": "stdout", "text": text}),
                })
                .collect();
            let at = Instant::now();
            let durable = client.append_events(id.clone(), events);
            inflight.push_back(async move { (durable.await, at, t, last) });
            while inflight.len() >= args.window {
                if let Some(done) = inflight.next().await {
                    record(done, &mut hist, &mut tally, &mut durable_calls, &args, &out);
                }
            }
        }
        seq = last + 1;
    }
    while let Some(done) = inflight.next().await {
        record(done, &mut hist, &mut tally, &mut durable_calls, &args, &out);
    }
    let elapsed = started.elapsed();
    let total_events = args.events * args.tasks as u64;
    let mut read = serde_json::Value::Null;
    if let (Some(n), Some(task)) = (args.read_back, task_ids.first()) {
        read = read_back(&client, task, n).await;
    }
    let status = client.status();
    client.shutdown().await;
    let ms = |v: u64| v as f64 / 1000.0;
    let summary = serde_json::json!({
        "events": total_events,
        "calls": durable_calls,
        "elapsed_s": elapsed.as_secs_f64(),
        "events_per_s": total_events as f64 / elapsed.as_secs_f64(),
        "durable_latency_ms": {
            "p50": ms(hist.value_at_quantile(0.5)),
            "p99": ms(hist.value_at_quantile(0.99)),
            "max": ms(hist.max()),
        },
        "committed": tally.committed,
        "spooled": tally.spooled,
        "refused": tally.refused,
        "rejected": tally.rejected,
        "failed": tally.other,
        "client": {
            "batches": status.batches,
            "writes": status.writes,
            "spool_records": status.spool_records,
            "refused": status.refused,
        },
        "read_back": read,
    });
    let mut lock = out.lock();
    let _ = writeln!(lock, "{summary}");
    let _ = lock.flush();
    ExitCode::SUCCESS
}

fn record(
    (result, at, task, last): (Result<Persisted, ClientError>, Instant, usize, u64),
    hist: &mut hdrhistogram::Histogram<u64>,
    tally: &mut Tally,
    durable_calls: &mut u64,
    args: &Args,
    out: &std::io::Stdout,
) {
    let _ = hist.record(at.elapsed().as_micros() as u64);
    let ok = result.is_ok();
    tally.add(&result);
    if ok {
        *durable_calls += 1;
        if let Some(every) = args.report_every {
            if durable_calls.is_multiple_of(every.max(1)) {
                let mut lock = out.lock();
                let _ = writeln!(lock, "durable {task} {last}");
                let _ = lock.flush();
            }
        }
    }
}

/// Times 20 range reads of `n` events from the start of `task`.
async fn read_back(client: &BackendClient, task: &str, n: u32) -> serde_json::Value {
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("valid");
    let mut got = 0;
    for _ in 0..20 {
        let at = Instant::now();
        match client.task_events(task, 0, n).await {
            Ok(events) => got = events.len(),
            Err(e) => return serde_json::json!({"error": e.to_string()}),
        }
        let _ = hist.record(at.elapsed().as_micros() as u64);
    }
    serde_json::json!({
        "events": got,
        "reads": 20,
        "p50_ms": hist.value_at_quantile(0.5) as f64 / 1000.0,
        "p99_ms": hist.value_at_quantile(0.99) as f64 / 1000.0,
    })
}
