//! Starts `orchestra-backend` as a child process for a test: free loopback port, stderr captured
//! to a file, ready once `GET /healthz` answers 200; killed on drop.
//!
//! [`BackendProcess::kill`] (SIGKILL) and [`BackendProcess::restart`] (same port, same
//! database) let spool tests take the backend away and bring it back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::gateway::probe::http_get;
use crate::gateway::LaunchError;
use crate::net::free_addr;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);
const ATTEMPTS: usize = 3;

/// A running `orchestra-backend`. Killed on drop.
#[derive(Debug)]
pub struct BackendProcess {
    bin: PathBuf,
    database_url: String,
    addr: SocketAddr,
    child: Option<Child>,
    dir: TempDir,
    starts: usize,
}

impl BackendProcess {
    /// Starts `bin` (`env!("CARGO_BIN_EXE_orchestra-backend")`) on `database_url`.
    pub async fn start(
        bin: impl Into<PathBuf>,
        database_url: impl Into<String>,
    ) -> Result<BackendProcess, LaunchError> {
        let dir = tempfile::Builder::new()
            .prefix("orchestra-backend-")
            .tempdir()?;
        let mut p = BackendProcess {
            bin: bin.into(),
            database_url: database_url.into(),
            addr: free_addr()?,
            child: None,
            dir,
            starts: 0,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match p.spawn_and_wait().await {
                Ok(()) => return Ok(p),
                Err(LaunchError::PortInUse { .. }) if attempt < ATTEMPTS => {
                    p.addr = free_addr()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address (kept across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything every run of the process wrote on stderr.
    pub fn stderr(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read(self.dir.path().join(format!("stderr-{n}.log")))
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// SIGKILL and reap: the port is free once this returns.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the process again on the same port and database (after [`BackendProcess::kill`]).
    pub async fn restart(&mut self) -> Result<(), LaunchError> {
        self.kill();
        self.spawn_and_wait().await
    }

    async fn spawn_and_wait(&mut self) -> Result<(), LaunchError> {
        self.starts += 1;
        let log = self.dir.path().join(format!("stderr-{}.log", self.starts));
        let child = Command::new(&self.bin)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--database-url")
            .arg(&self.database_url)
            .current_dir(self.dir.path())
            .env_remove("ORCHESTRA_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = None;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    let stderr = self.stderr();
                    let lower = stderr.to_lowercase();
                    if lower.contains("address already in use") || lower.contains("address in use")
                    {
                        return Err(LaunchError::PortInUse { stderr });
                    }
                    return Err(LaunchError::Exited { status, stderr });
                }
            }
            if let Some((status, body)) = http_get(self.addr, "/healthz").await {
                if status == 200 && body.contains("\"ok\"") {
                    return Ok(());
                }
                last = Some(format!("{status} {body}"));
            }
            if Instant::now() >= deadline {
                let stderr = self.stderr();
                self.kill();
                return Err(LaunchError::Timeout {
                    last_healthz: last,
                    stderr,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
