//! The writer thread: takes lines off the channel in batches, formats them into one buffer and
//! writes it with one `write_all`.
//!
//! While lines keep coming it wakes once per `interval` (a sleep, so submitting threads never
//! have to wake it: a send into a channel nobody waits on is a few atomics); when a wake finds
//! the channel empty it blocks on it, so an idle gateway costs nothing.

use std::io::Write;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime};

use super::format::{self, LineFormat};
use super::{AccessLine, Msg};

/// Batches larger than this are written in several `write_all`s.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Converts the monotonic end of a request to wall-clock time (the line's timestamp) without a
/// clock read per line: `anchor` pairs an `Instant` with the `SystemTime` read at the same moment.
fn wall_time(anchor: (Instant, SystemTime), ended: Instant) -> SystemTime {
    match ended.checked_duration_since(anchor.0) {
        Some(after) => anchor.1 + after,
        None => anchor.1 - anchor.0.duration_since(ended),
    }
}

/// Runs until every sender is gone, then writes what it holds and returns.
pub(super) fn run(
    rx: Receiver<Msg>,
    mut sink: Box<dyn Write + Send>,
    format: LineFormat,
    interval: Duration,
    mut anchor: (Instant, SystemTime),
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut acks = Vec::new();
    // Blocks for the first message of a burst.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        loop {
            // Drain what is queued now.
            while let Some(msg) = next.take() {
                take(&mut buf, &mut acks, format, anchor, msg);
                if buf.len() >= MAX_BATCH_BYTES {
                    write_out(&mut sink, &mut buf);
                }
                next = rx.try_recv().ok();
            }
            let wrote = !buf.is_empty();
            write_out(&mut sink, &mut buf);
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
            if !wrote {
                break;
            }
            // Re-anchor once per batch: wall-clock steps (NTP) reach the timestamps within one
            // interval.
            anchor = (Instant::now(), SystemTime::now());
            std::thread::sleep(interval);
            next = match rx.try_recv() {
                Ok(m) => Some(m),
                // Empty: back to blocking. Disconnected: `recv` ends the thread.
                Err(_) => break,
            };
        }
    }
    write_out(&mut sink, &mut buf);
}

fn take(
    buf: &mut Vec<u8>,
    acks: &mut Vec<std::sync::mpsc::Sender<()>>,
    format: LineFormat,
    anchor: (Instant, SystemTime),
    msg: Msg,
) {
    match msg {
        Msg::Line(line) => {
            let line: AccessLine = line;
            format::line(buf, format, wall_time(anchor, line.ended), &line);
        }
        Msg::Flush(ack) => acks.push(ack),
    }
}

fn write_out(sink: &mut Box<dyn Write + Send>, buf: &mut Vec<u8>) {
    if buf.is_empty() {
        return;
    }
    // A failing sink (closed stderr) loses these lines; there is nowhere to report it but the
    // log itself.
    let _ = sink.write_all(buf);
    let _ = sink.flush();
    buf.clear();
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::super::{AccessLine, AccessLogger, LineFormat};

    fn line(i: usize) -> AccessLine {
        AccessLine {
            request_id: http::HeaderValue::from_str(&format!("req-{i}")).ok(),
            protocol: "h1",
            method: http::Method::GET,
            path: format!("/n/{i}"),
            route: Some(Arc::from("r")),
            upstream: Some(Arc::from("u")),
            target: Some("127.0.0.1:1".parse().expect("addr")),
            status: 200,
            bytes: 13,
            duration: Duration::from_micros(i as u64),
            ended: Instant::now(),
            error: "",
        }
    }

    /// Reads JSON lines from `reader` until `n` arrived or 10 s passed.
    fn read_lines(reader: std::io::PipeReader, n: usize) -> Vec<serde_json::Value> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(reader).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(l) = rx.recv_timeout(left) else { break };
            out.push(serde_json::from_str(&l).expect("a JSON line"));
        }
        out
    }

    #[test]
    fn submitted_lines_arrive_in_order_through_a_pipe() {
        let (reader, writer) = std::io::pipe().expect("pipe");
        let (logger, _thread) = AccessLogger::start(
            Box::new(writer),
            LineFormat::Json,
            64,
            Duration::from_millis(5),
        )
        .expect("start");
        for i in 0..50 {
            logger.submit(line(i));
        }
        assert!(logger.flush(Duration::from_secs(10)), "flush timed out");
        let lines = read_lines(reader, 50);
        assert_eq!(lines.len(), 50);
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l["request_id"], format!("req-{i}"), "{l}");
            assert_eq!(l["path"], format!("/n/{i}"), "{l}");
            assert_eq!(l["log"], "access");
        }
        assert_eq!(logger.dropped(), 0);
    }

    /// A sink nobody reads (a pipe whose 64 KiB buffer fills) blocks the writer; submitting
    /// keeps returning at once, and what does not fit is counted as dropped. Once the sink is
    /// read again, every line that was not counted arrives.
    #[test]
    fn a_stalled_sink_drops_and_counts_instead_of_blocking() {
        const SENT: usize = 20_000;
        let (reader, writer) = std::io::pipe().expect("pipe");
        let (logger, _thread) = AccessLogger::start(
            Box::new(writer),
            LineFormat::Json,
            256,
            Duration::from_millis(1),
        )
        .expect("start");
        let logger = Arc::new(logger);
        // Submit from another thread so a blocking submit fails the test instead of hanging it.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let submitter = Arc::clone(&logger);
        std::thread::spawn(move || {
            for i in 0..SENT {
                submitter.submit(line(i));
            }
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("submit blocked on a stalled sink");
        let dropped = logger.dropped() as usize;
        // 20,000 lines of ~250 bytes cannot fit a 64 KiB pipe plus 256 queued lines.
        assert!(dropped > 0, "nothing dropped although the sink never read");
        assert!(dropped < SENT, "everything dropped: the writer never wrote");
        // Unstall the sink: every line not counted as dropped arrives, each once.
        let lines = read_lines(reader, SENT - dropped);
        assert!(
            logger.flush(Duration::from_secs(10)),
            "flush after unstalling"
        );
        assert_eq!(lines.len(), SENT - dropped, "dropped {dropped}");
        let mut ids: Vec<&str> = lines
            .iter()
            .map(|l| l["request_id"].as_str().expect("id"))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), SENT - dropped, "a line was written twice");
    }
}
