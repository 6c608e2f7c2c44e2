//! A throwaway PostgreSQL cluster for a test: `initdb` into a temporary directory, `postgres`
//! on a free loopback port, killed and deleted on drop.
//!
//! The binaries come from Debian's `postgresql` package (`/usr/lib/postgresql/*/bin`, installed
//! by `scripts/setup --install-only`). PostgreSQL refuses to run as root, so when the tests run
//! as root both `initdb` and `postgres` are started as the `postgres` user through `setpriv`
//! (which `exec`s: the child we hold is the postmaster itself, so killing it needs no process
//! tree walk), in a directory that user owns. Authentication is `trust` on 127.0.0.1.
//!
//! [`PgCluster::start`] runs with `fsync = off` (fast tests; nothing survives a machine crash
//! anyway); [`PgCluster::start_durable`] keeps PostgreSQL's durable defaults for benchmarks.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::net::free_addr;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// A running PostgreSQL cluster. Stopped (fast shutdown, then SIGKILL) and deleted on drop.
#[derive(Debug)]
pub struct PgCluster {
    child: Option<Child>,
    addr: SocketAddr,
    bin: PathBuf,
    dir: TempDir,
}

/// The directory of the newest installed PostgreSQL's binaries.
pub fn bin_dir() -> io::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| not_installed(&e.to_string()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| not_installed("no /usr/lib/postgresql/*/bin/postgres"))
}

fn not_installed(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("PostgreSQL server not installed ({why}): run ./scripts/setup --install-only"),
    )
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// `uid:gid` of the `postgres` user.
fn postgres_ids() -> io::Result<(u32, u32)> {
    let id = |flag: &str| -> io::Result<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output()?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| not_installed("no `postgres` user"))
    };
    Ok((id("-u")?, id("-g")?))
}

/// A command for a PostgreSQL binary, as the `postgres` user when we are root.
fn command(bin: &Path, name: &str) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(bin.join(name));
        c
    } else {
        Command::new(bin.join(name))
    }
}

impl PgCluster {
    /// A fast cluster for tests (`fsync = off`, `synchronous_commit = off`).
    pub fn start() -> io::Result<PgCluster> {
        Self::start_with(&[
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
        ])
    }

    /// A cluster with PostgreSQL's durable defaults (for benchmarks).
    pub fn start_durable() -> io::Result<PgCluster> {
        Self::start_with(&[])
    }

    fn start_with(settings: &[&str]) -> io::Result<PgCluster> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("orchestra-pg-").tempdir()?;
        if is_root() {
            let (uid, gid) = postgres_ids()?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let data = dir.path().join("data");
        let out = command(&bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "initdb failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut last_err = None;
        for _ in 0..3 {
            let addr = free_addr()?;
            let log_path = dir.path().join(format!("postgres-{}.log", addr.port()));
            let mut cmd = command(&bin, "postgres");
            cmd.arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(dir.path())
                .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
                .args(["-c", "max_connections=50", "-c", "shared_buffers=32MB"]);
            for s in settings {
                cmd.args(["-c", s]);
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log_path)?)
                .spawn()?;
            match wait_ready(&mut child, &bin, addr, &log_path) {
                Ok(()) => {
                    return Ok(PgCluster {
                        child: Some(child),
                        addr,
                        bin,
                        dir,
                    })
                }
                Err(e) => {
                    stop_child(child);
                    // Most likely the port was taken between our probe and postgres' bind.
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("postgres did not start")))
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of database `db` on this cluster.
    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@{}/{db}", self.addr)
    }

    /// What the server wrote on stderr (its log).
    pub fn server_log(&self) -> String {
        read_log(
            &self
                .dir
                .path()
                .join(format!("postgres-{}.log", self.addr.port())),
        )
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> io::Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args([
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
            ])
            .arg(format!("CREATE DATABASE \"{name}\""))
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "CREATE DATABASE {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(self.url_of(name))
    }

    /// Stops the server: fast shutdown (SIGINT), then SIGKILL if it has not exited within 10 s.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_child(child);
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn wait_ready(child: &mut Child, bin: &Path, addr: SocketAddr, log: &Path) -> io::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "postgres exited during start-up ({status}): {}",
                read_log(log)
            )));
        }
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &addr.port().to_string(), "-q"])
            .status()?
            .success();
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::other(format!(
                "postgres not ready after {START_TIMEOUT:?}: {}",
                read_log(log)
            )));
        }
        std::thread::sleep(POLL);
    }
}

fn stop_child(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
