//! A corrupt spool record (flipped bit, tail cut by a crash) is detected, logged and skipped on
//! replay; the records around it reach the backend. Own test binary: it installs a global log
//! capture to see the log line.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestra_backend::client::{BackendClient, ClientConfig, Persisted};
use orchestra_backend::model::{NewEvent, NewSession, WriteOp};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn event(seq: u64) -> NewEvent {
    NewEvent {
        seq,
        kind: "worker:output".into(),
        data: serde_json::json!({"text": format!("line {seq}")}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_spool_records_are_logged_and_skipped_never_a_panic() {
    let logs = Capture::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let mut db = common::sqlite().await;
    let url = db.url();
    db.backend.kill();
    let spool = tempfile::tempdir().expect("tempdir");
    let mut cfg = ClientConfig::new(&url, spool.path());
    cfg.breaker_max_open = Duration::from_millis(200);
    {
        let client = BackendClient::start(cfg.clone()).expect("client");
        let mut all = vec![
            client.write(WriteOp::CreateSession(NewSession {
                id: Some("s".into()),
                owner: "o".into(),
            })),
            client.write(WriteOp::CreateTask(common::custom_task("t", "s"))),
        ];
        for seq in 1..=10 {
            all.push(client.append_events("t", vec![event(seq)]));
        }
        for d in all {
            assert_eq!(d.await, Ok(Persisted::Spooled));
        }
        client.shutdown().await;
    }
    // Damage the spool: flip a byte inside the record of seq 5, and append half a record.
    let seg = std::fs::read_dir(spool.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    let needle = b"line 5\"";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("record of seq 5");
    bytes[at] ^= 0x20;
    bytes.extend_from_slice(&500u32.to_le_bytes());
    bytes.extend_from_slice(b"cut");
    std::fs::write(&seg, bytes).expect("write");

    db.backend.restart().await.expect("backend back");
    let client = BackendClient::start(cfg).expect("client reopens the damaged spool");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.status().spooling {
        assert!(
            Instant::now() < deadline,
            "not replayed: {:?}",
            client.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seqs: Vec<u64> = client
        .task_events("t", 0, 100)
        .await
        .expect("read")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 6, 7, 8, 9, 10]);
    assert_eq!(client.status().corrupt_records, 2);
    let text =
        String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    assert_eq!(
        text.matches("corrupt spool record skipped").count(),
        2,
        "one line per damaged record:\n{text}"
    );
    assert!(text.contains("CRC32 mismatch"), "{text}");
    assert!(text.contains("truncated"), "{text}");
    client.shutdown().await;
}
