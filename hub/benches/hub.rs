//! The hub's event path without the network: what one output event costs from the agent's
//! frame to every subscriber's queue (seq check, dedup, JSON built once, ring, fan-out), and
//! what a live task and a subscriber cost in memory.
//!
//! `cargo bench -p orchestra-hub --bench hub` (criterion); the memory figures are printed first,
//! measured as the growth of this process's VmRSS over 10,000 tasks / subscribers.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures::FutureExt;
use orchestra_hub::{
    AgentHello, AgentLink, Hub, HubConfig, MemoryPersist, StartTask, TaskAttachment, TaskStart,
    Transport,
};
use orchestra_proto::v1::{self, task_event::Body};
use parking_lot::Mutex;

#[derive(Default)]
struct Link(Mutex<Vec<TaskStart>>);

impl AgentLink for Link {
    fn assign(&self, start: TaskStart) {
        self.0.lock().push(start);
    }
    fn close(&self, _: &'static str, _: &str) {}
}

fn hello(slots: u32) -> AgentHello {
    AgentHello {
        id: "bench".into(),
        name: "bench".into(),
        capabilities: vec!["custom".into()],
        version: "bench".into(),
        metadata: Default::default(),
        max_tasks: slots,
        running_tasks: vec![],
        transport: Transport::Quic,
        peer: "127.0.0.1:1".parse().expect("addr"),
    }
}

fn task() -> StartTask {
    StartTask {
        owner: "o".into(),
        session_id: "s".into(),
        tool: "custom".into(),
        prompt: "p".into(),
        agent_id: None,
        requires: vec![],
        cwd: None,
        priority: 0,
    }
}

fn event(seq: u64) -> v1::TaskEvent {
    v1::TaskEvent {
        seq,
        body: Some(Body::Output(v1::OutputItem {
            kind: v1::OutputKind::Stdout as i32,
            text: "compiling orchestra-hub v0.1.0 (/work/hub): 80 bytes of a typical line.".into(),
            json: String::new(),
        })),
    }
}

/// A hub with one running task and its attachment.
fn running(rt: &tokio::runtime::Runtime, slots: u32) -> (Hub, Arc<Link>, TaskAttachment, u64) {
    let hub = Hub::new(HubConfig::default(), MemoryPersist::new());
    let link = Arc::new(Link::default());
    let session = hub.connect(hello(slots), link.clone());
    std::mem::forget(session);
    hub.start_task(task()).expect("start");
    let start = link.0.lock().pop().expect("assign");
    let mut att = start.attachment;
    let first = start.assign.first_seq;
    let mut batch = Vec::new();
    att.accepted(first, 1, &mut batch).expect("accept");
    let _ = rt;
    (hub, link, att, first)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn memory(rt: &tokio::runtime::Runtime) {
    const N: u64 = 10_000;
    let hub = Hub::new(HubConfig::default(), MemoryPersist::new());
    let link = Arc::new(Link::default());
    std::mem::forget(hub.connect(hello(N as u32 + 1), link.clone()));
    let before = rss_kib();
    let mut ids = Vec::new();
    for _ in 0..N {
        ids.push(hub.start_task(task()).expect("start").task_id);
    }
    let starts = std::mem::take(&mut *link.0.lock());
    let after_tasks = rss_kib();
    let mut subs = Vec::new();
    rt.block_on(async {
        for id in &ids {
            subs.push(hub.subscribe(id, 0).await.expect("subscribe"));
        }
    });
    let after_subs = rss_kib();
    println!(
        "memory: {} B per live task (assigned, 1 event in its ring; MemoryPersist holds its record too), {} B per subscriber (empty queue)",
        (after_tasks - before) * 1024 / N,
        (after_subs - after_tasks) * 1024 / N
    );
    drop((subs, starts));
}

fn ingest(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    memory(&rt);
    let mut g = c.benchmark_group("hub_ingest");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    for subscribers in [0usize, 1, 16] {
        let (hub, _link, mut att, first) = running(&rt, 4);
        let id = att.task_id().to_string();
        let mut subs = Vec::new();
        rt.block_on(async {
            for _ in 0..subscribers {
                subs.push(hub.subscribe(&id, 0).await.expect("subscribe"));
            }
        });
        let mut seq = first;
        let mut batch = Vec::with_capacity(256);
        g.bench_function(format!("output_event_{subscribers}_subscribers"), |b| {
            b.iter_batched(
                || {
                    seq += 1;
                    event(seq)
                },
                |ev| {
                    att.ingest(&ev, &mut batch).expect("ingest");
                    if batch.len() >= 128 {
                        batch.clear();
                        // Subscribers take what they were sent (their share of the cost).
                        for s in &mut subs {
                            while let Some(Some(_)) = s.next().now_or_never() {}
                        }
                    }
                },
                BatchSize::SmallInput,
            )
        });
        for s in &subs {
            assert!(s.last_seq() > first, "subscribers received the events");
        }
    }
    g.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
