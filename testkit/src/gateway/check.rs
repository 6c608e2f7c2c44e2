//! Running `orchestra-gateway check -c FILE`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use tempfile::TempDir;

/// The outcome of one `check` run.
#[derive(Debug)]
pub struct CheckOutput {
    /// Exit status of the process.
    pub status: ExitStatus,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
    /// Directory the config was written to (kept alive with this value).
    dir: TempDir,
}

impl CheckOutput {
    /// The exit code (`None` if killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Directory holding the checked config file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The non-empty stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Writes `contents` to `<tempdir>/<file_name>` and runs
/// `orchestra-gateway check -c <file_name>` from that directory, so error lines start with
/// `file_name` exactly as given.
pub fn run_check(
    bin: impl AsRef<Path>,
    file_name: &str,
    contents: &str,
) -> std::io::Result<CheckOutput> {
    let dir = tempfile::Builder::new()
        .prefix("orchestra-check-")
        .tempdir()?;
    let path: PathBuf = dir.path().join(file_name);
    std::fs::write(&path, contents)?;
    let output = Command::new(bin.as_ref())
        .arg("check")
        .arg("-c")
        .arg(file_name)
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()?;
    Ok(CheckOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        dir,
    })
}
