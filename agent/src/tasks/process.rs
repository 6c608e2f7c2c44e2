//! A task's process: spawned from the tool's argv (no shell), in its own process group and
//! working directory, with reader tasks turning stdout/stderr into [`ProcEvent`]s, a waiter
//! reaping it, and a writer feeding its stdin.
//!
//! Every event goes through one bounded channel to the task's actor: when the actor stops
//! taking events (its held output reached the spill cap), the readers stop reading and the
//! process blocks on its pipe — back-pressure instead of loss. Signals go to the whole process
//! group (`kill(-pgid, sig)`), so a stop also reaches what the tool started (a shell's children,
//! a dev server).

use std::path::Path;
use std::process::{ExitStatus, Stdio};

use bytes::Bytes;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use orchestra_proto::v1::{OutputItem, OutputKind};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};
use tokio::sync::mpsc;

use super::lines::{LineReader, JSON_LINE_MAX, LINE_MAX};
use super::stream_json::{self, ToolReport};
use crate::config::{OutputFormat, StdinMode};

/// Events a process sends its actor before the actor slows it down.
const EVENT_QUEUE: usize = 256;
/// Input chunks queued for stdin.
const STDIN_QUEUE: usize = 16;

/// What happens in a task's process.
#[derive(Debug)]
pub enum ProcEvent {
    /// An output item.
    Item(OutputItem),
    /// A JSON-lines tool reported its session id.
    Session(String),
    /// A JSON-lines tool reported its result.
    Report(ToolReport),
    /// stdout reached end of file.
    StdoutClosed,
    /// stderr reached end of file.
    StderrClosed,
    /// The process exited (it has been reaped).
    Exited(std::io::Result<ExitStatus>),
}

/// Input for the process's stdin.
#[derive(Debug)]
pub struct StdinChunk {
    /// Bytes to write.
    pub data: Bytes,
    /// Close stdin afterwards.
    pub close: bool,
}

/// How to start a task's process.
#[derive(Debug)]
pub struct Launch<'a> {
    /// Program and arguments.
    pub argv: &'a [String],
    /// Working directory (exists).
    pub cwd: &'a Path,
    /// Extra environment.
    pub env: &'a [(String, String)],
    /// stdout format.
    pub format: OutputFormat,
    /// stdin mode.
    pub stdin: StdinMode,
}

/// A started process.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid, which is also its process group id.
    pub pid: u32,
    /// Its events.
    pub events: mpsc::Receiver<ProcEvent>,
    /// Its stdin, when piped.
    pub stdin: Option<mpsc::Sender<StdinChunk>>,
}

/// Starts the process, its readers, its waiter and its stdin writer.
pub fn spawn(launch: &Launch<'_>) -> std::io::Result<Spawned> {
    let (program, args) = launch
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command line"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(launch.cwd)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(match launch.stdin {
            StdinMode::Pipe => Stdio::piped(),
            StdinMode::Null => Stdio::null(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("the process exited before its pid was read"))?;
    let (tx, events) = mpsc::channel(EVENT_QUEUE);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(read_stdout(out, launch.format, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(read_lines(
            err,
            OutputKind::Stderr,
            tx.clone(),
            ProcEvent::StderrClosed,
        ));
    }
    let stdin = child.stdin.take().map(|s| {
        let (in_tx, in_rx) = mpsc::channel(STDIN_QUEUE);
        tokio::spawn(write_stdin(s, in_rx));
        in_tx
    });
    tokio::spawn(async move {
        let status = child.wait().await;
        let _ = tx.send(ProcEvent::Exited(status)).await;
    });
    Ok(Spawned { pid, events, stdin })
}

/// Sends `signal` to the process group `pgid`; false when the group no longer exists.
pub fn signal_group(pgid: u32, signal: Signal) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    if raw <= 1 {
        return false;
    }
    killpg(Pid::from_raw(raw), signal).is_ok()
}

fn item(kind: OutputKind, text: String) -> ProcEvent {
    ProcEvent::Item(OutputItem {
        kind: kind as i32,
        text,
        json: String::new(),
    })
}

async fn read_lines<R: AsyncRead + Unpin>(
    pipe: R,
    kind: OutputKind,
    tx: mpsc::Sender<ProcEvent>,
    closed: ProcEvent,
) {
    let mut reader = LineReader::new(pipe, LINE_MAX);
    loop {
        match reader.next().await {
            Ok(Some(line)) => {
                if tx.send(item(kind, line.text)).await.is_err() {
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, ?kind, "reading the task's output failed");
                break;
            }
        }
    }
    let _ = tx.send(closed).await;
}

async fn read_stdout<R: AsyncRead + Unpin>(
    pipe: R,
    format: OutputFormat,
    tx: mpsc::Sender<ProcEvent>,
) {
    if format == OutputFormat::Lines {
        return read_lines(pipe, OutputKind::Stdout, tx, ProcEvent::StdoutClosed).await;
    }
    let mut reader = LineReader::new(pipe, JSON_LINE_MAX);
    // True while the pieces of an over-long line arrive: they are raw text, not JSON.
    let mut continued = false;
    loop {
        let line = match reader.next().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "reading the task's output failed");
                break;
            }
        };
        let raw = continued || !line.complete;
        continued = !line.complete;
        let events: Vec<ProcEvent> = if raw {
            vec![item(OutputKind::Stdout, line.text)]
        } else {
            let mapped = stream_json::map_line(&line.text);
            let mut ev = Vec::with_capacity(mapped.items.len() + 2);
            if let Some(s) = mapped.session_id {
                ev.push(ProcEvent::Session(s));
            }
            ev.extend(mapped.items.into_iter().map(ProcEvent::Item));
            if let Some(r) = mapped.report {
                ev.push(ProcEvent::Report(r));
            }
            ev
        };
        for e in events {
            if tx.send(e).await.is_err() {
                return;
            }
        }
    }
    let _ = tx.send(ProcEvent::StdoutClosed).await;
}

async fn write_stdin(mut stdin: ChildStdin, mut rx: mpsc::Receiver<StdinChunk>) {
    while let Some(chunk) = rx.recv().await {
        if !chunk.data.is_empty() {
            if let Err(e) = stdin.write_all(&chunk.data).await {
                tracing::debug!(error = %e, "the task's stdin is closed; input dropped");
                return;
            }
            let _ = stdin.flush().await;
        }
        if chunk.close {
            return;
        }
    }
}
