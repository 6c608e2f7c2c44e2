//! Helpers of the operator tests (alerts, dashboard, secrets): steady background traffic and
//! polling of `GET /admin/alerts`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::admin::Admin;
use super::http_client;

/// Requests sent in a loop by background tasks until dropped.
#[derive(Debug)]
pub struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    /// `concurrency` tasks, each sending `GET url` again as soon as the previous answer arrived.
    pub fn start(url: String, concurrency: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let tasks = (0..concurrency)
            .map(|_| {
                let (stop, sent, url) = (Arc::clone(&stop), Arc::clone(&sent), url.clone());
                tokio::spawn(async move {
                    let client = http_client();
                    while !stop.load(Ordering::Relaxed) {
                        if client.get(&url).send().await.is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        } else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                })
            })
            .collect();
        Traffic { stop, sent, tasks }
    }

    /// Requests answered so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The rule `name` in `GET /admin/alerts`, if it is there.
pub async fn find_alert(admin: &Admin, name: &str) -> Option<Value> {
    let body = admin.get_json("/admin/alerts").await;
    body["alerts"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == name).cloned())
}

/// The rule `name` in `GET /admin/alerts`.
pub async fn alert(admin: &Admin, name: &str) -> Value {
    find_alert(admin, name)
        .await
        .unwrap_or_else(|| panic!("no alert {name:?} in GET /admin/alerts"))
}

/// Polls `GET /admin/alerts` until rule `name` is there and satisfies `pred` (a reload reaches
/// the monitor at its next tick); panics with the last state after `timeout`.
pub async fn wait_alert(
    admin: &Admin,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let a = find_alert(admin, name).await.unwrap_or(Value::Null);
        if !a.is_null() && pred(&a) {
            return a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alert {name} never reached the expected state; last: {a}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
