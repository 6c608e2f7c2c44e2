//! A real headless Chromium for page tests, driven over WebDriver: [`ChromeDriver`] starts
//! Debian's `chromedriver` (package `chromium-driver`, installed by `scripts/setup
//! --install-only`) on a free loopback port and kills it on drop; [`ChromeDriver::session`] opens
//! a [`fantoccini`] session on Debian's `chromium` with a fresh profile directory.
//!
//! Chromium runs as it must on the CI machines: as root, so `--no-sandbox`; headless without a GPU;
//! no QUIC; and without any background networking (component updates, sync, first-run pings),
//! whose connections the closed test network refuses. `CHROMIUM` and `CHROMEDRIVER` override the
//! binaries' paths.

use std::fmt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use fantoccini;

use crate::net::free_addr;

/// Default Chromium binary (Debian package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Default ChromeDriver binary (Debian package `chromium-driver`).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The flags every session starts Chromium with (plus `--user-data-dir`).
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1600",
];

/// Why the browser could not be started.
#[derive(Debug)]
pub enum BrowserError {
    /// A binary is missing: run `scripts/setup --install-only`.
    Missing(PathBuf),
    /// Spawning or talking to chromedriver failed.
    Io(std::io::Error),
    /// chromedriver never answered `/status` ready.
    NotReady(String),
    /// The WebDriver session could not be created.
    Session(String),
}

impl fmt::Display for BrowserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrowserError::Missing(p) => write!(
                f,
                "{} not found: run `scripts/setup --install-only` (installs Debian's chromium and chromium-driver)",
                p.display()
            ),
            BrowserError::Io(e) => write!(f, "chromedriver: {e}"),
            BrowserError::NotReady(s) => write!(f, "chromedriver did not become ready: {s}"),
            BrowserError::Session(s) => write!(f, "cannot open a Chromium session: {s}"),
        }
    }
}

impl std::error::Error for BrowserError {}

fn binary(env: &str, default: &str) -> Result<PathBuf, BrowserError> {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    if path.exists() {
        Ok(path)
    } else {
        Err(BrowserError::Missing(path))
    }
}

/// A running chromedriver; killed (with its browsers) on drop.
pub struct ChromeDriver {
    child: Child,
    url: String,
    log: TempDir,
}

impl fmt::Debug for ChromeDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChromeDriver")
            .field("url", &self.url)
            .finish()
    }
}

impl ChromeDriver {
    /// Starts chromedriver on a free loopback port and waits until it is ready.
    pub async fn start() -> Result<ChromeDriver, BrowserError> {
        let driver = binary("CHROMEDRIVER", CHROMEDRIVER)?;
        binary("CHROMIUM", CHROMIUM)?;
        let addr = free_addr().map_err(BrowserError::Io)?;
        let log = tempfile::Builder::new()
            .prefix("chromedriver-")
            .tempdir()
            .map_err(BrowserError::Io)?;
        let child = Command::new(driver)
            // Its own process group: dropping the driver kills Chromium too.
            .process_group(0)
            .arg(format!("--port={}", addr.port()))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!(
                "--log-path={}",
                log.path().join("driver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(BrowserError::Io)?;
        let driver = ChromeDriver {
            child,
            url: format!("http://{addr}"),
            log,
        };
        driver.wait_ready(Duration::from_secs(20)).await?;
        Ok(driver)
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<(), BrowserError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| BrowserError::NotReady(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            match client.get(format!("{}/status", self.url)).send().await {
                Ok(r) => match r.json::<serde_json::Value>().await {
                    Ok(v) if v["value"]["ready"] == true => return Ok(()),
                    Ok(v) => last = v.to_string(),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(BrowserError::NotReady(last))
    }

    /// The WebDriver endpoint, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What chromedriver logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path().join("driver.log")).unwrap_or_default()
    }

    /// Opens a session on headless Chromium with a fresh profile directory.
    pub async fn session(&self) -> Result<Session, BrowserError> {
        let chromium = binary("CHROMIUM", CHROMIUM)?;
        let profile = tempfile::Builder::new()
            .prefix("chromium-profile-")
            .tempdir()
            .map_err(BrowserError::Io)?;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium, "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .map_err(|e| {
                BrowserError::Session(format!("{e}; chromedriver log:\n{}", self.log()))
            })?;
        Ok(Session {
            client,
            _profile: profile,
        })
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The whole group (chromedriver and the browsers it started), with kill(1): no unsafe.
        let group = format!("-{}", self.child.id());
        let killed_group = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !killed_group {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A WebDriver session; its profile directory is removed on drop. Call
/// [`fantoccini::Client::close`] on [`Session::client`] to end the browser cleanly (dropping the
/// [`ChromeDriver`] kills it otherwise).
pub struct Session {
    /// The fantoccini client.
    pub client: fantoccini::Client,
    _profile: TempDir,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}
