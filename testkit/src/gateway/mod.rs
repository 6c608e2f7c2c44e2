//! Starts `orchestra-gateway` as a child process for a test.
//!
//! [`GatewayProcess::builder`] takes the binary path (integration tests of the gateway
//! crate pass `env!("CARGO_BIN_EXE_orchestra-gateway")`). Starting it:
//! 1. creates a temporary directory holding `gateway.toml`, `stderr.log`, `stdout.log`
//!    and the data directory `data/`;
//! 2. picks free loopback ports for the `http` (and optionally `https` and `admin`)
//!    listeners;
//! 3. spawns `orchestra-gateway run -c <dir>/gateway.toml` with stderr and stdout captured
//!    to files;
//! 4. waits until `GET /healthz` on the http listener answers `200 {"status":"ok"}` (and
//!    the https and admin ports accept connections), failing with the captured stderr if the process
//!    exits or the startup timeout passes. If stderr reports a port in use (another
//!    process took it between our probe and the gateway's bind), the process is killed and
//!    started again on new ports (at most 3 attempts).
//!
//! The process is killed when the [`GatewayProcess`] is dropped. [`run_check`] runs the
//! `check` subcommand on a config instead.
//!
//! For hot-reload tests, [`GatewayProcess::config_text`] renders another config body with the
//! same listeners and `[server]` / `[admin]` settings, [`GatewayProcess::write_config`]
//! rewrites the config file in place, [`GatewayProcess::replace_config`] writes a new file
//! and renames it over the old one, and [`GatewayProcess::sighup`] asks for a reload.
//!
//! [`toml`] builds config bodies (upstreams, routes, plugins) from typed calls.

mod builder;
mod check;
mod logs;
pub(crate) mod probe;
pub mod toml;

pub use builder::{
    GatewayBuilder, ADMIN_PLACEHOLDER, DATA_DIR_PLACEHOLDER, DIR_PLACEHOLDER, HTTPS_PLACEHOLDER,
    HTTP_PLACEHOLDER,
};
pub use check::{run_check, CheckOutput};
pub use logs::{flatten_log_line, flatten_log_lines};

use std::fmt;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::net::free_addrs;

pub(crate) const POLL: Duration = Duration::from_millis(25);
const MAX_ATTEMPTS: usize = 3;

/// Why a gateway could not be started.
#[derive(Debug)]
pub enum LaunchError {
    /// Writing the config or spawning the process failed.
    Io(std::io::Error),
    /// The process exited before it became healthy.
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// Everything it wrote on stderr.
        stderr: String,
    },
    /// `/healthz` did not answer 200 `{"status":"ok"}` within the startup timeout.
    Timeout {
        /// The last answer to `GET /healthz`, if any.
        last_healthz: Option<String>,
        /// Everything the process wrote on stderr so far.
        stderr: String,
    },
    /// A listener port was taken by another process (after the retries were used up).
    PortInUse {
        /// Everything the process wrote on stderr.
        stderr: String,
    },
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::Io(e) => write!(f, "could not start the gateway: {e}"),
            LaunchError::Exited { status, stderr } => {
                write!(
                    f,
                    "gateway exited during startup ({status}); stderr:\n{stderr}"
                )
            }
            LaunchError::Timeout {
                last_healthz,
                stderr,
            } => write!(
                f,
                "gateway never answered /healthz 200 {{\"status\":\"ok\"}} (last answer: \
                 {last_healthz:?}); stderr:\n{stderr}"
            ),
            LaunchError::PortInUse { stderr } => {
                write!(f, "a listener port was in use; stderr:\n{stderr}")
            }
        }
    }
}

impl std::error::Error for LaunchError {}

impl From<std::io::Error> for LaunchError {
    fn from(e: std::io::Error) -> Self {
        LaunchError::Io(e)
    }
}

/// A running `orchestra-gateway` child process. Killed on drop.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    exit: Option<ExitStatus>,
    dir: TempDir,
    http: SocketAddr,
    https: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    builder: GatewayBuilder,
    subs: builder::Substitutions,
}

impl GatewayProcess {
    /// Starts describing a gateway run from the binary at `bin`.
    pub fn builder(bin: impl Into<PathBuf>) -> GatewayBuilder {
        GatewayBuilder::new(bin)
    }

    pub(crate) async fn launch(b: GatewayBuilder) -> Result<Self, LaunchError> {
        let dir = tempfile::Builder::new().prefix("orchestra-gw-").tempdir()?;
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir)?;
        let template = b.template();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addrs = free_addrs(3)?;
            let http = addrs[0];
            let https = b.https.then_some(addrs[1]);
            let admin = b.wants_admin().then_some(addrs[2]);
            let subs = builder::Substitutions {
                http: http.to_string(),
                https: https.map(|a| a.to_string()).unwrap_or_default(),
                admin: admin.map(|a| a.to_string()).unwrap_or_default(),
                data_dir: data_dir.to_string_lossy().into_owned(),
                dir: dir.path().to_string_lossy().into_owned(),
            };
            let text = subs.render(&template);
            for (name, contents) in &b.files {
                std::fs::write(dir.path().join(name), subs.render(contents))?;
            }
            let config_path = dir.path().join("gateway.toml");
            std::fs::write(&config_path, text)?;

            let mut cmd = Command::new(&b.bin);
            if b.run_subcommand {
                cmd.arg("run");
            }
            cmd.arg("-c")
                .arg(&config_path)
                .current_dir(dir.path())
                .env_remove("ORCHESTRA_THREADS")
                .envs(b.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(File::create(dir.path().join("stdout.log"))?)
                .stderr(File::create(dir.path().join("stderr.log"))?);
            let mut child = cmd.spawn()?;
            let extra: Vec<SocketAddr> = https.into_iter().chain(admin).collect();
            let wait = probe::wait_healthy(&mut child, dir.path(), http, &extra, b.startup_timeout);
            match wait.await {
                Ok(()) => {
                    return Ok(GatewayProcess {
                        child,
                        exit: None,
                        dir,
                        http,
                        https,
                        admin,
                        builder: b,
                        subs,
                    })
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if !(matches!(e, LaunchError::PortInUse { .. }) && attempt < MAX_ATTEMPTS) {
                        return Err(e);
                    }
                    // A port was taken between our probe and the gateway's bind: retry.
                }
            }
        }
    }

    /// The `http` listener address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The `https` listener address, when enabled.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https
    }

    /// The `admin` listener address, when enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// `http://127.0.0.1:PORT` of the admin listener (the form `--admin` takes). Panics when
    /// the admin listener is off.
    pub fn admin_base_url(&self) -> String {
        let addr = self
            .admin
            .unwrap_or_else(|| panic!("admin listener not enabled for this gateway"));
        format!("http://{addr}")
    }

    /// `http://127.0.0.1:PORT{path}` on the admin listener. Panics when it is off.
    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.admin_base_url())
    }

    /// The admin token configured with [`GatewayBuilder::admin_token`].
    pub fn admin_token(&self) -> Option<&str> {
        self.builder.admin_token.as_deref()
    }

    /// `http://127.0.0.1:PORT{path}` on the http listener.
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `https://localhost:PORT{path}` on the https listener (resolve `localhost` to
    /// [`GatewayProcess::https_addr`] in the client). Panics when https is off.
    pub fn https_url(&self, path: &str) -> String {
        let addr = self
            .https
            .unwrap_or_else(|| panic!("https listener not enabled for this gateway"));
        format!("https://localhost:{}{path}", addr.port())
    }

    /// The temporary directory holding the config, the logs and the data dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configured `server.data_dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The config file the gateway was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// Where the generated self-signed certificate is expected:
    /// `{data_dir}/tls/self-signed.crt`.
    pub fn self_signed_cert_path(&self) -> PathBuf {
        self.data_dir().join("tls").join("self-signed.crt")
    }

    /// Where the generated self-signed key is expected: `{data_dir}/tls/self-signed.key`.
    pub fn self_signed_key_path(&self) -> PathBuf {
        self.data_dir().join("tls").join("self-signed.key")
    }

    /// The contents of the generated self-signed certificate (PEM).
    pub fn self_signed_cert_pem(&self) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.self_signed_cert_path())
    }

    /// Substitutes this process's placeholders (listener addresses, data dir, dir) in
    /// `template`.
    pub fn render(&self, template: &str) -> String {
        self.subs.render(template)
    }

    /// A whole config file with the same listeners, `[server]` and `[admin]` settings as
    /// this process was started with, and `body` (upstreams, routes, plugins) in place of the
    /// original body. Not meaningful for gateways started with
    /// [`GatewayBuilder::raw_config`] (use [`GatewayProcess::render`] there).
    pub fn config_text(&self, body: &str) -> String {
        self.render(&self.builder.clone().config(body).template())
    }

    /// Rewrites the config file in place (truncate and write, same inode), as an editor that
    /// saves in place does. The gateway does not re-read it until told or its watch sees it.
    pub fn write_config(&self, text: &str) -> std::io::Result<()> {
        std::fs::write(self.config_path(), text)
    }

    /// Writes `text` to a new file next to the config file and renames it over the config
    /// file (a new inode), as editors and config-management tools that save atomically do.
    pub fn replace_config(&self, text: &str) -> std::io::Result<()> {
        let tmp = self.dir.path().join(".gateway.toml.new");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.config_path())
    }

    /// The config file's current contents.
    pub fn read_config(&self) -> std::io::Result<String> {
        std::fs::read_to_string(self.config_path())
    }

    /// Sends SIGHUP (reload the config file).
    pub fn sighup(&self) -> std::io::Result<()> {
        self.signal(libc::SIGHUP)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything captured from stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.path().join("stderr.log"))
    }

    /// Everything captured from stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.dir.path().join("stdout.log"))
    }

    /// The stderr lines captured so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.stderr().lines().map(str::to_string).collect()
    }

    /// The stderr lines that parse as JSON objects, flattened with
    /// [`flatten_log_line`].
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        logs::flatten_log_lines(&self.stderr())
    }

    /// The JSON log lines whose `"log"` field is `"access"`.
    pub fn access_logs(&self) -> Vec<serde_json::Value> {
        self.json_logs()
            .into_iter()
            .filter(|v| v.get("log").and_then(|l| l.as_str()) == Some("access"))
            .collect()
    }

    /// Waits (polling the captured stderr) for an access-log line matching `pred`;
    /// `None` when none appeared within `timeout`.
    pub async fn wait_for_access_log(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.access_logs().into_iter().find(|v| pred(v)) {
                return Some(line);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The exit status if the process has exited.
    pub fn try_status(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait()?;
        }
        Ok(self.exit)
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        let pid = i32::try_from(self.child.id())
            .map_err(|_| std::io::Error::other("pid does not fit in pid_t"))?;
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child,
        // which is not reaped before `exit` is recorded, so it cannot have been reused.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends SIGTERM and waits (at most 30 s) for the process to exit, returning its
    /// status. On timeout the process is killed and an error of kind `TimedOut` returned.
    pub async fn terminate(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.try_status()? {
            return Ok(status);
        }
        self.signal(libc::SIGTERM)?;
        match self.wait_exit(Duration::from_secs(30)).await? {
            Some(status) => Ok(status),
            None => {
                self.kill();
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "gateway did not exit within 30 s of SIGTERM",
                ))
            }
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() || std::env::var_os("TESTKIT_PRINT_GATEWAY_LOGS").is_some() {
            eprintln!(
                "--- gateway stderr ({}) ---\n{}",
                self.dir.path().display(),
                self.stderr()
            );
        }
    }
}

pub(crate) fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
