//! Measures `orchestra-agent`'s output path end to end: a task printing N numbered lines, read
//! and acked by a scripted gateway peer over QUIC on loopback (the same peer the tests use).
//!
//! ```sh
//! cargo build --release -p orchestra-agent
//! cargo run --release -p orchestra-agent --example output_throughput -- 1000000
//! ```
//!
//! Two scenarios:
//! - `live`: the peer acks every 64th event as it reads (a gateway keeping up);
//! - `offline`: the peer reads nothing until the task has finished (a slow or absent gateway:
//!   the output goes to the spill file past the 4 MiB memory cap), then drains it all.
//!
//! Printed per scenario: items/s from assignment to result (live) or of the drain (offline),
//! the agent's CPU time (utime + stime from `/proc`) and its peak RSS (`VmHWM`). The agent
//! binary is `$ORCHESTRA_AGENT_BIN` (default `target/release/orchestra-agent`). Results:
//! `bench/RESULTS.md`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::agent::AgentBuilder;
use support::frames::{ack, assign, item_of, result_of, seq_of};
use support::peer::{GatewayPeer, PeerStream};

fn proc_stat(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 (1-based); after the ')' field 3 is index 0.
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks as f64 / 100.0, hwm_kb)
}

async fn drain(t: &mut PeerStream, ack_every: u64) -> (u64, u64) {
    let mut items = 0;
    let mut last = 0;
    loop {
        let Some(f) = t.next().await else {
            return (items, last);
        };
        let seq = seq_of(&f).expect("numbered frame");
        if item_of(&f).is_some() {
            items += 1;
        }
        let done = result_of(&f).is_some();
        if done || seq.is_multiple_of(ack_every) {
            t.send(&ack(seq)).await;
        }
        last = last.max(seq);
        if done {
            return (items, last);
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let lines: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let prompt = format!("seq -f 'line %.0f of the throughput run' 1 {lines}");
    for scenario in ["live", "offline"] {
        // A production-like heartbeat: the peer's 200 ms test default would have the agent
        // call the gateway silent whenever this single drain loop delays the peer's pongs.
        let mut peer = GatewayPeer::start();
        peer.heartbeat_ms = 5_000;
        let agent = AgentBuilder::new(peer.addr)
            .set("stop_grace", "\"1s\"")
            .start(&peer);
        let session = peer.accept().await;
        let before = proc_stat(agent.pid());
        let start = Instant::now();
        let mut t = session.assign(assign("bench", "custom", &prompt)).await;
        let (items, drain_start) = if scenario == "live" {
            (drain(&mut t, 64).await.0, start)
        } else {
            assert!(
                agent
                    .wait_log("task finished", Duration::from_secs(600))
                    .await,
                "the task finishes while nothing is read"
            );
            let spilled = std::fs::metadata(agent.workdir().join(".spill/bench"))
                .map(|m| m.len())
                .unwrap_or(0);
            println!(
                "offline: task finished after {:.2} s with nothing acked; spill file {:.1} MiB",
                start.elapsed().as_secs_f64(),
                spilled as f64 / (1024.0 * 1024.0)
            );
            let drain_start = Instant::now();
            (drain(&mut t, 64).await.0, drain_start)
        };
        let secs = drain_start.elapsed().as_secs_f64();
        let after = proc_stat(agent.pid());
        if items != lines {
            for l in agent.logs().iter().rev().take(10).rev() {
                eprintln!("agent: {l}");
            }
        }
        assert_eq!(items, lines, "every line arrives");
        println!(
            "{scenario}: {items} items in {secs:.2} s = {:.0} items/s; agent CPU {:.2} s; agent peak RSS {:.1} MiB",
            items as f64 / secs,
            after.0 - before.0,
            after.1 as f64 / 1024.0
        );
    }
}
