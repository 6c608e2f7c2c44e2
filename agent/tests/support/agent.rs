//! Runs the real `orchestra-agent` binary for a test: writes its config (mode 0600) into a
//! temporary directory, passes the secret in the environment, collects its stderr, and stops
//! it on drop (SIGTERM twice — stop the tasks, skip the drain — then SIGKILL if it lingers).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

use super::peer::{GatewayPeer, AGENT_ID, API_KEY, SECRET};
use super::poll_until;

/// The agent binary: the one cargo built for these tests, or (for the measurement example,
/// which cargo gives no binary path) `$ORCHESTRA_AGENT_BIN`, default
/// `target/release/orchestra-agent`.
pub fn bin() -> String {
    match option_env!("CARGO_BIN_EXE_orchestra-agent") {
        Some(b) => b.to_string(),
        None => std::env::var("ORCHESTRA_AGENT_BIN")
            .unwrap_or_else(|_| "target/release/orchestra-agent".to_string()),
    }
}

/// The environment variable the tests pass the secret in.
pub const SECRET_ENV: &str = "ORCHESTRA_TEST_AGENT_SECRET";

/// Describes an agent run: top-level keys, sections and tools of its config.
#[derive(Debug, Clone)]
pub struct AgentBuilder {
    top: BTreeMap<String, String>,
    reconnect: BTreeMap<String, String>,
    output: BTreeMap<String, String>,
    tools: BTreeMap<String, String>,
    args: Vec<String>,
}

impl AgentBuilder {
    /// The defaults: the peer's address and certificate, fast reconnects, short stop grace,
    /// `custom = ["bash", "-c", "{prompt}"]`.
    pub fn new(peer_addr: std::net::SocketAddr) -> Self {
        let q = |s: &str| format!("{s:?}");
        let mut top = BTreeMap::new();
        top.insert("gateway".into(), q(&peer_addr.to_string()));
        top.insert("server_name".into(), q("localhost"));
        top.insert("id".into(), q(AGENT_ID));
        top.insert("api_key".into(), q(API_KEY));
        top.insert("secret_env".into(), q(SECRET_ENV));
        top.insert("max_tasks".into(), "4".into());
        top.insert("stop_grace".into(), q("500ms"));
        top.insert("connect_timeout".into(), q("2s"));
        let mut reconnect = BTreeMap::new();
        reconnect.insert("base".into(), q("100ms"));
        reconnect.insert("max".into(), q("400ms"));
        let mut tools = BTreeMap::new();
        tools.insert("custom".into(), r#"["bash", "-c", "{prompt}"]"#.into());
        AgentBuilder {
            top,
            reconnect,
            output: BTreeMap::new(),
            tools,
            args: Vec::new(),
        }
    }

    /// Sets a top-level key to a TOML value.
    pub fn set(mut self, key: &str, toml_value: &str) -> Self {
        self.top.insert(key.into(), toml_value.into());
        self
    }

    /// Removes a top-level key.
    pub fn unset(mut self, key: &str) -> Self {
        self.top.remove(key);
        self
    }

    /// Sets a `[reconnect]` key.
    pub fn reconnect(mut self, key: &str, toml_value: &str) -> Self {
        self.reconnect.insert(key.into(), toml_value.into());
        self
    }

    /// Sets an `[output]` key.
    pub fn output(mut self, key: &str, toml_value: &str) -> Self {
        self.output.insert(key.into(), toml_value.into());
        self
    }

    /// Adds a tool.
    pub fn tool(mut self, name: &str, toml_value: &str) -> Self {
        self.tools.insert(name.into(), toml_value.into());
        self
    }

    /// Adds command-line arguments.
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }

    /// The config text; `{dir}` in values is the test's directory.
    pub fn render(&self, dir: &Path) -> String {
        let mut out = String::new();
        let dir = dir.display().to_string();
        let mut section = |name: Option<&str>, map: &BTreeMap<String, String>| {
            if let Some(n) = name {
                if map.is_empty() {
                    return;
                }
                out.push_str(&format!("\n[{n}]\n"));
            }
            for (k, v) in map {
                out.push_str(&format!("{k} = {}\n", v.replace("{dir}", &dir)));
            }
        };
        section(None, &self.top);
        section(Some("reconnect"), &self.reconnect);
        section(Some("output"), &self.output);
        section(Some("tools"), &self.tools);
        out
    }

    /// Starts the agent against `peer` (its certificate is the agent's `ca`).
    pub fn start(self, peer: &GatewayPeer) -> AgentProcess {
        AgentProcess::start(self, Some(peer.cert.cert_pem.as_bytes()))
    }

    /// Starts the agent trusting `ca_pem`.
    pub fn start_with_ca(self, ca_pem: &str) -> AgentProcess {
        AgentProcess::start(self, Some(ca_pem.as_bytes()))
    }
}

/// A running agent. Stopped on drop.
pub struct AgentProcess {
    child: Child,
    dir: TempDir,
    stderr: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
}

impl AgentProcess {
    fn start(b: AgentBuilder, ca_pem: Option<&[u8]>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("orchestra-agent-")
            .tempdir()
            .unwrap();
        let mut b = b;
        if let Some(pem) = ca_pem {
            let ca = dir.path().join("ca.pem");
            std::fs::write(&ca, pem).unwrap();
            b.top
                .entry("ca".into())
                .or_insert_with(|| format!("{:?}", ca.display().to_string()));
        }
        b.top
            .entry("workdir".into())
            .or_insert_with(|| format!("{:?}", dir.path().join("work").display().to_string()));
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, b.render(dir.path())).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut child = Command::new(bin())
            .arg("run")
            .arg("-c")
            .arg(&config)
            .args(&b.args)
            .env(SECRET_ENV, SECRET)
            .env("RUST_LOG", "info,orchestra_agent=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn orchestra-agent");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        AgentProcess {
            child,
            dir,
            stderr,
            status: None,
        }
    }

    /// The test directory (config, `ca.pem`, `work/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The agent's work directory.
    pub fn workdir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The stderr lines that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<serde_json::Value> {
        self.logs()
            .iter()
            .filter(|l| l.contains(needle))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until a stderr line contains `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        poll_until(timeout, || self.logs().iter().any(|l| l.contains(needle))).await
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal);
    }

    /// Waits for the agent to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(s) = self.status {
                return Some(s);
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
                return Some(s);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if self.status.is_some() || matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        use nix::sys::signal::Signal;
        self.signal(Signal::SIGTERM);
        std::thread::sleep(Duration::from_millis(50));
        self.signal(Signal::SIGTERM);
        for _ in 0..250 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the agent binary to completion with `args` (for `check`, `--help`, bad configs).
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_remove(SECRET_ENV)
        .env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run orchestra-agent");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
