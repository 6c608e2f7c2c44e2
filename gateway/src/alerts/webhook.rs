//! Webhook delivery of alert state changes: a JSON `POST` per change, retried with exponential
//! backoff, bounded in tries and in queued notifications.
//!
//! Each webhook URL gets one queue (64 notifications) and one task that delivers them in order,
//! so a `resolved` never overtakes its `firing`, and a dead receiver only delays its own
//! notifications. A try fails on a connection error, a timeout (`monitor.webhook_timeout`), or a
//! non-2xx answer; 408, 429 and 5xx answers and connection errors are retried after
//! `webhook_backoff × 2^(try−1)` (at most `webhook_backoff_max`, jittered to 50–100 %, at least
//! the receiver's `Retry-After` when it sends one), other answers are final. After
//! `webhook_attempts` tries the notification is dropped and logged as failed. A full queue drops
//! the new notification (logged).
//!
//! Logs name the webhook by `scheme://host:port` only: its path, query and headers may carry
//! credentials.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestra_config::{MonitorSettings, Webhook};
use tokio::sync::mpsc;

use super::{Change, Notification};

/// Notifications waiting per webhook URL, at most.
pub const QUEUE: usize = 64;

/// Delivery counters of one rule.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Notifications the receiver accepted (2xx).
    pub delivered: AtomicU64,
    /// Notifications given up after their last try.
    pub failed: AtomicU64,
    /// Tries after a failed one.
    pub retries: AtomicU64,
    /// Notifications dropped because their webhook's queue was full.
    pub dropped: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl DeliveryStats {
    /// The reason of the last failed try, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_last_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = e;
    }
}

/// Retry policy of one notification, from `[monitor]` when it was queued.
#[derive(Debug, Clone, Copy)]
struct Policy {
    timeout: Duration,
    attempts: u32,
    backoff: Duration,
    backoff_max: Duration,
}

impl Policy {
    fn of(m: &MonitorSettings) -> Policy {
        Policy {
            timeout: m.webhook_timeout,
            attempts: m.webhook_attempts.max(1),
            backoff: m.webhook_backoff,
            backoff_max: m.webhook_backoff_max,
        }
    }

    /// Delay after failed try number `attempt` (1-based), before jitter.
    fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.backoff.saturating_mul(factor).min(self.backoff_max)
    }
}

struct Job {
    notification: Notification,
    webhook: Arc<Webhook>,
    policy: Policy,
}

/// Why the webhook client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}; alert notifications will only be logged")]
pub struct ClientError(String);

/// Logs notifications and queues them for their webhooks. Lives on the control-plane runtime.
pub struct Notifier {
    client: reqwest::Client,
    queues: HashMap<String, mpsc::Sender<Job>>,
}

impl Notifier {
    /// A notifier with its HTTP client (rustls, the webpki roots; proxies from the environment).
    pub fn new() -> Result<Notifier, ClientError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("orchestra-gateway/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError(e.without_url().to_string()))?;
        Ok(Notifier {
            client,
            queues: HashMap::new(),
        })
    }

    /// Logs `n` and queues it for its webhook (must run inside the control-plane runtime).
    pub fn notify(&mut self, n: Notification, settings: &MonitorSettings) {
        log_change(&n);
        let Some(webhook) = n.webhook.clone() else {
            return;
        };
        let job = Job {
            notification: n,
            webhook,
            policy: Policy::of(settings),
        };
        let key = job.webhook.url.clone();
        let tx = self
            .queues
            .entry(key.clone())
            .or_insert_with(|| spawn_worker(self.client.clone()));
        match tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                drop_job(&job, "its webhook's queue is full")
            }
            Err(mpsc::error::TrySendError::Closed(job)) => {
                // The worker ended (it never does on its own); start a new one.
                let tx = spawn_worker(self.client.clone());
                if let Err(e) = tx.try_send(job) {
                    drop_job(&e.into_inner(), "its webhook's worker is gone");
                }
                self.queues.insert(key, tx);
            }
        }
    }
}

fn drop_job(job: &Job, why: &str) {
    job.notification
        .stats
        .dropped
        .fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        alert = %job.notification.rule,
        webhook = %job.webhook.origin,
        "alert notification dropped: {why}"
    );
}

/// Logs a state change (warn when firing, info when resolved).
pub fn log_change(n: &Notification) {
    let p = &n.payload;
    let condition = p["condition"].as_str().unwrap_or_default();
    let value = p["value_text"].as_str().unwrap_or("no data");
    match n.change {
        Change::Fired => tracing::warn!(
            alert = %n.rule,
            status = "firing",
            condition,
            value,
            "alert firing"
        ),
        Change::Resolved => tracing::info!(
            alert = %n.rule,
            status = "resolved",
            condition,
            value,
            reason = p["reason"].as_str(),
            "alert resolved"
        ),
    }
}

fn spawn_worker(client: reqwest::Client) -> mpsc::Sender<Job> {
    let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
    tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            deliver(&client, &job).await;
        }
    });
    tx
}

/// Outcome of one try.
enum Try {
    Delivered,
    Retry(String, Option<Duration>),
    Final(String),
}

async fn deliver(client: &reqwest::Client, job: &Job) {
    let n = &job.notification;
    let hook = &job.webhook;
    let body = n.payload.to_string();
    let status = n.payload["status"].as_str().unwrap_or_default();
    for attempt in 1..=job.policy.attempts {
        let outcome = try_once(client, hook, &body, job.policy.timeout).await;
        let (reason, retry_after) = match outcome {
            Try::Delivered => {
                n.stats.delivered.fetch_add(1, Ordering::Relaxed);
                n.stats.set_last_error(None);
                tracing::info!(alert = %n.rule, status, webhook = %hook.origin, attempt, "alert notification delivered");
                return;
            }
            Try::Final(reason) => {
                fail(job, &reason, attempt);
                return;
            }
            Try::Retry(reason, retry_after) => (reason, retry_after),
        };
        if attempt == job.policy.attempts {
            fail(job, &reason, attempt);
            return;
        }
        let base = job.policy.delay(attempt);
        let jittered = base.mul_f64(0.5 + fastrand::f64() * 0.5);
        let delay = retry_after
            .map(|r| r.max(jittered))
            .unwrap_or(jittered)
            .min(job.policy.backoff_max);
        n.stats.retries.fetch_add(1, Ordering::Relaxed);
        n.stats.set_last_error(Some(reason.clone()));
        tracing::warn!(
            alert = %n.rule,
            status,
            webhook = %hook.origin,
            attempt,
            error = %reason,
            retry_in_ms = delay.as_millis() as u64,
            "alert notification failed; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

fn fail(job: &Job, reason: &str, attempts: u32) {
    let n = &job.notification;
    n.stats.failed.fetch_add(1, Ordering::Relaxed);
    n.stats.set_last_error(Some(reason.to_string()));
    tracing::error!(
        alert = %n.rule,
        status = n.payload["status"].as_str().unwrap_or_default(),
        webhook = %job.webhook.origin,
        attempts,
        error = %reason,
        "alert notification not delivered; check the receiver and monitor.webhook_* settings"
    );
}

async fn try_once(client: &reqwest::Client, hook: &Webhook, body: &str, timeout: Duration) -> Try {
    let mut req = client
        .post(&hook.url)
        .timeout(timeout)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    for (name, value) in &hook.headers {
        req = req.header(name, value);
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => Try::Delivered,
        Ok(resp) => {
            let code = resp.status();
            let reason = format!("the receiver answered {code}");
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            if code.is_server_error() || code.as_u16() == 408 || code.as_u16() == 429 {
                Try::Retry(reason, retry_after)
            } else {
                Try::Final(reason)
            }
        }
        // `without_url`: the URL may carry credentials.
        Err(e) => Try::Retry(describe(e), None),
    }
}

fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut out = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = Policy {
            timeout: Duration::from_secs(1),
            attempts: 10,
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_millis(700),
        };
        let delays: Vec<u128> = (1..=5).map(|a| p.delay(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 700, 700]);
        assert_eq!(p.delay(60), Duration::from_millis(700));
    }
}
