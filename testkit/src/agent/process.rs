//! The real `orchestra-agent` binary as a child process of a test.
//!
//! Integration tests of another package cannot use `CARGO_BIN_EXE_orchestra-agent`, so
//! [`agent_binary`] looks for `orchestra-agent` in the target directory of the running test
//! executable (`target/<profile>/deps/test-HASH` → `target/<profile>/orchestra-agent`) and, when
//! it is not there, builds it once with `cargo build -p orchestra-agent` (same target directory
//! and profile), holding a file lock so that concurrent tests build it once.
//!
//! [`AgentProcess`] writes an `agent.toml`, starts `orchestra-agent run -c agent.toml` with
//! stdout and stderr captured to files, and kills it when dropped. [`AgentProcess::freeze`] and
//! [`AgentProcess::thaw`] send SIGSTOP and SIGCONT.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::BoxError;

/// The `orchestra-agent` binary next to the running executable (built if absent).
pub fn agent_binary() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    let mut dir = exe
        .parent()
        .ok_or("test executable without a directory")?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let bin = dir.join("orchestra-agent");
    if bin.is_file() {
        return Ok(bin);
    }
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("cannot tell the build profile")?
        .to_string();
    let target_dir = dir
        .parent()
        .ok_or("cannot tell the target directory")?
        .to_path_buf();
    let lock = File::create(target_dir.join(".orchestra-agent-build.lock"))?;
    let _guard =
        nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e)?;
    if bin.is_file() {
        return Ok(bin);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "orchestra-agent", "--bin", "orchestra-agent"])
        .env("CARGO_TARGET_DIR", &target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd.status()?;
    if !status.success() || !bin.is_file() {
        return Err(format!("cargo build -p orchestra-agent failed ({status})").into());
    }
    Ok(bin)
}

/// A running `orchestra-agent`. Killed on drop.
#[derive(Debug)]
pub struct AgentProcess {
    child: Child,
    dir: PathBuf,
}

impl AgentProcess {
    /// Writes `config` as `DIR/agent.toml` and starts `bin run -c DIR/agent.toml` in `dir`
    /// with `env` (logs in `DIR/agent.stdout.log` and `DIR/agent.stderr.log`).
    pub fn start(
        bin: &Path,
        dir: &Path,
        config: &str,
        env: &[(&str, &str)],
    ) -> Result<AgentProcess, BoxError> {
        std::fs::create_dir_all(dir)?;
        let config_path = dir.join("agent.toml");
        std::fs::write(&config_path, config)?;
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("-c")
            .arg(&config_path)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("agent.stdout.log"))?)
            .stderr(File::create(dir.join("agent.stderr.log"))?);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Ok(AgentProcess {
            child: cmd.spawn()?,
            dir: dir.to_path_buf(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the agent wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.stderr.log")).unwrap_or_default()
    }

    /// SIGSTOP: the agent freezes (no heartbeats, no reads).
    pub fn freeze(&self) -> Result<(), BoxError> {
        Ok(kill(self.nix_pid(), Signal::SIGSTOP)?)
    }

    /// SIGCONT.
    pub fn thaw(&self) -> Result<(), BoxError> {
        Ok(kill(self.nix_pid(), Signal::SIGCONT)?)
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn nix_pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = kill(self.nix_pid(), Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
