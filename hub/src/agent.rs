//! Connected agents: what they said when they registered, what their heartbeats report, and
//! the balancing state dispatch reads.
//!
//! Each connected agent is one [`AgentEntry`] in the hub's sharded map, replaced as a whole when
//! the agent reconnects. Its load for dispatch lives in a one-target `orchestra_lb` [`Pool`]:
//! the target's in-flight count is the agent's running tasks (each task holds an
//! `InFlightGuard`), its peak-EWMA estimate is fed with ping round trips, and heartbeats store the
//! reported CPU and memory with `report_load` for `resource_based` dispatch.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use orchestra_lb::{Outcome, Pool, Target, TargetStats};
use orchestra_proto::v1;
use parking_lot::Mutex;

use crate::task::TaskCommand;

/// Round trips below this count as this much for dispatch: between two agents on a LAN (or on
/// one busy host) the difference is noise next to a task that streams output for minutes, so
/// their load decides.
pub const RTT_FLOOR: Duration = Duration::from_millis(5);

/// How an agent is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// QUIC, ALPN `orchestra-agent/1`.
    Quic,
    /// WebSocket at `/agent/ws`.
    Ws,
}

impl Transport {
    /// Name for logs and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::Ws => "ws",
        }
    }
}

/// What an authenticated agent announced in `Register`.
#[derive(Debug, Clone)]
pub struct AgentHello {
    /// Agent id (verified).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Tools and other capabilities.
    pub capabilities: Vec<String>,
    /// `orchestra-agent` version.
    pub version: String,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// Tasks it runs at most at once (0 = 1).
    pub max_tasks: u32,
    /// Tasks from a previous connection it still runs (each resumed on its own stream).
    pub running_tasks: Vec<String>,
    /// The connection's transport.
    pub transport: Transport,
    /// The connection's remote address.
    pub peer: SocketAddr,
}

/// A new task for an agent: the assignment to send and the hub side of its stream.
#[derive(Debug)]
pub struct TaskStart {
    /// The `TaskAssign` frame.
    pub assign: v1::TaskAssign,
    /// The hub side of the task's stream.
    pub attachment: crate::attachment::TaskAttachment,
}

/// What the hub needs from an agent's connection; implemented by the gateway for QUIC and for
/// WebSocket. Both methods are called with hub locks held: they must not block (spawn the work).
pub trait AgentLink: Send + Sync + 'static {
    /// Opens a task stream, sends the assignment and runs the stream with `start.attachment`.
    /// If the stream cannot be opened, drop the attachment (the task is then orphaned and
    /// waits for the agent to reconnect).
    fn assign(&self, start: TaskStart);

    /// Closes the connection with an `Error` frame of `code` (e.g. `AUTH_001` when its key was
    /// removed, `AGENT_001` when a newer connection replaced it).
    fn close(&self, code: &'static str, reason: &str);
}

/// System information from the last heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SystemInfo {
    /// CPU use, percent of all cores.
    pub cpu_percent: f32,
    /// Memory used, bytes.
    pub memory_used_bytes: u64,
    /// Memory total, bytes.
    pub memory_total_bytes: u64,
    /// Disk used, bytes.
    pub disk_used_bytes: u64,
    /// Disk total, bytes.
    pub disk_total_bytes: u64,
    /// 1-minute load average.
    pub load_average: f32,
    /// Tasks the agent says it runs.
    pub running_tasks: u32,
}

/// One connected agent.
pub struct AgentEntry {
    pub(crate) hello: AgentHello,
    /// Connection generation (unique per connection).
    pub(crate) conn_gen: u64,
    pub(crate) connection_id: String,
    pub(crate) connected_at: SystemTime,
    pub(crate) link: Arc<dyn AgentLink>,
    /// One-target pool: running tasks (in flight), RTT estimate, reported load.
    pub(crate) pool: Arc<Pool>,
    pub(crate) system: Mutex<SystemInfo>,
    /// Last raw ping round trip, µs (0 = none yet).
    pub(crate) last_rtt_us: AtomicU64,
    /// Heartbeats received on this connection.
    pub(crate) heartbeats: AtomicU64,
    /// Unix ms of the last heartbeat (or of the register).
    pub(crate) last_heartbeat_ms: AtomicU64,
}

impl std::fmt::Debug for AgentEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentEntry")
            .field("id", &self.hello.id)
            .field("conn_gen", &self.conn_gen)
            .field("transport", &self.hello.transport)
            .finish()
    }
}

impl AgentEntry {
    pub(crate) fn new(
        hello: AgentHello,
        conn_gen: u64,
        link: Arc<dyn AgentLink>,
        params: &orchestra_lb::Params,
    ) -> AgentEntry {
        let target = Target::new(hello.peer, 1);
        let pool = Pool::new(
            vec![target],
            Arc::clone(&params.clock),
            params.peak_ewma,
            params.outlier,
        );
        let now = SystemTime::now();
        AgentEntry {
            conn_gen,
            connection_id: uuid::Uuid::now_v7().to_string(),
            connected_at: now,
            link,
            pool,
            system: Mutex::new(SystemInfo::default()),
            last_rtt_us: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            last_heartbeat_ms: AtomicU64::new(crate::unix_ms(now)),
            hello,
        }
    }

    /// The agent id.
    pub fn id(&self) -> &str {
        &self.hello.id
    }

    /// The id the gateway gave this connection (sent in `Registered`).
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    pub(crate) fn stats(&self) -> &Arc<TargetStats> {
        &self.pool.targets()[0].stats
    }

    /// Tasks assigned to this connection and not over.
    pub fn running(&self) -> u32 {
        u32::try_from(self.stats().in_flight()).unwrap_or(u32::MAX)
    }

    /// Slots (0 in `Register` means 1).
    pub fn max_tasks(&self) -> u32 {
        self.hello.max_tasks.max(1)
    }

    /// True when it may take one more task.
    pub fn has_free_slot(&self) -> bool {
        self.running() < self.max_tasks()
    }

    /// True when it can run `tool` with `requires`.
    pub fn can_run(&self, tool: &str, requires: &[String]) -> bool {
        let caps = &self.hello.capabilities;
        caps.iter().any(|c| c == tool) && requires.iter().all(|r| caps.contains(r))
    }

    /// Records a heartbeat: system info, and load for `resource_based` dispatch.
    pub(crate) fn heartbeat(&self, hb: &v1::Heartbeat) {
        let info = SystemInfo {
            cpu_percent: hb.cpu_percent,
            memory_used_bytes: hb.memory_used_bytes,
            memory_total_bytes: hb.memory_total_bytes,
            disk_used_bytes: hb.disk_used_bytes,
            disk_total_bytes: hb.disk_total_bytes,
            load_average: hb.load_average,
            running_tasks: hb.running_tasks,
        };
        *self.system.lock() = info;
        let cpu = hb.cpu_percent / 100.0;
        let mem = if hb.memory_total_bytes > 0 {
            hb.memory_used_bytes as f32 / hb.memory_total_bytes as f32
        } else {
            0.0
        };
        // Load per task slot: a load average of `max_tasks` means the agent is saturated.
        let load = hb.load_average / self.max_tasks() as f32;
        self.stats().report_load(cpu, mem, load);
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
        self.last_heartbeat_ms
            .store(crate::unix_ms(SystemTime::now()), Ordering::Relaxed);
    }

    /// Records a ping round trip (for the admin API, and the dispatch estimate, floored).
    pub(crate) fn rtt(&self, rtt: Duration) {
        self.last_rtt_us
            .store(rtt.as_micros().max(1) as u64, Ordering::Relaxed);
        self.pool.record(0, Outcome::success(rtt.max(RTT_FLOOR)));
    }

    /// Marks the agent (un)healthy for dispatch (late heartbeats).
    pub(crate) fn set_healthy(&self, healthy: bool) -> bool {
        self.stats().set_healthy(healthy)
    }

    /// Takes a task slot.
    pub(crate) fn take_slot(&self) -> Option<orchestra_lb::InFlightGuard> {
        self.pool.start(0)
    }

    /// The realtime / admin view.
    pub fn info(&self) -> AgentInfo {
        let system = *self.system.lock();
        let rtt_us = self.last_rtt_us.load(Ordering::Relaxed);
        let running = self.running();
        let healthy = self.stats().is_healthy();
        AgentInfo {
            id: self.hello.id.clone(),
            name: self.hello.name.clone(),
            capabilities: self.hello.capabilities.clone(),
            status: if !healthy {
                "late"
            } else if running >= self.max_tasks() {
                "busy"
            } else {
                "online"
            },
            rtt_ms: (rtt_us > 0).then(|| rtt_us as f64 / 1000.0),
            rtt_estimate_ms: self
                .pool
                .rtt_estimate(0)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            running_tasks: running,
            max_tasks: self.max_tasks(),
            cpu: system.cpu_percent,
            memory: if system.memory_total_bytes > 0 {
                system.memory_used_bytes as f32 / system.memory_total_bytes as f32 * 100.0
            } else {
                0.0
            },
            system,
            version: self.hello.version.clone(),
            metadata: self.hello.metadata.clone(),
            transport: self.hello.transport,
            peer: self.hello.peer.to_string(),
            connection_id: self.connection_id.clone(),
            connected_at_ms: crate::unix_ms(self.connected_at),
            last_heartbeat_ms: self.last_heartbeat_ms.load(Ordering::Relaxed),
            heartbeats: self.heartbeats.load(Ordering::Relaxed),
        }
    }
}

/// A connected agent as the admin API and `agents:list` show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AgentInfo {
    /// Agent id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// `online`, `busy` (every slot taken) or `late` (a heartbeat is overdue).
    pub status: &'static str,
    /// Last ping round trip in ms (`None` before the first pong).
    pub rtt_ms: Option<f64>,
    /// The peak-EWMA round-trip estimate dispatch uses, decayed to now, in ms (samples below
    /// [`RTT_FLOOR`] count as the floor).
    pub rtt_estimate_ms: f64,
    /// Tasks running on it.
    pub running_tasks: u32,
    /// Its slots.
    pub max_tasks: u32,
    /// CPU use in percent (last heartbeat).
    pub cpu: f32,
    /// Memory use in percent (last heartbeat).
    pub memory: f32,
    /// Everything the last heartbeat reported.
    pub system: SystemInfo,
    /// `orchestra-agent` version.
    pub version: String,
    /// Metadata from `Register`.
    pub metadata: BTreeMap<String, String>,
    /// `quic` or `ws`.
    pub transport: Transport,
    /// Remote address.
    pub peer: String,
    /// The connection's id.
    pub connection_id: String,
    /// When this connection registered, Unix ms.
    pub connected_at_ms: u64,
    /// Last heartbeat, Unix ms.
    pub last_heartbeat_ms: u64,
    /// Heartbeats on this connection.
    pub heartbeats: u64,
}

/// A change in the set of connected agents (for `agent:connected`, `agent:disconnected`,
/// `agents:updated`).
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// An agent registered (also after a reconnect).
    Connected(AgentInfo),
    /// An agent's connection ended.
    Disconnected {
        /// Agent id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Running tasks or health changed.
    Updated(AgentInfo),
}

/// The command channel's capacity: input chunks waiting to be sent to the agent.
pub(crate) const COMMAND_QUEUE: usize = 64;

pub(crate) fn command_channel() -> (
    tokio::sync::mpsc::Sender<TaskCommand>,
    tokio::sync::mpsc::Receiver<TaskCommand>,
) {
    tokio::sync::mpsc::channel(COMMAND_QUEUE)
}
