//! Upstream policies: balancing strategy, hash key, health checks, retries, circuit breaker.
//! Each raw table is checked value by value; every problem is reported with its key path.

use std::sync::Arc;
use std::time::Duration;

use orchestra_lb::{
    Backoff, BreakerConfig, CheckKind, CircuitBreaker, EwmaConfig, HealthCheckConfig, Params,
    RetryBudget, RetryOn, RetryPolicy, Strategy,
};

use crate::compile::Compiler;
use crate::parse::join;
use crate::schema::{RawBreaker, RawHealthCheck, RawRetries, RawUpstream};
use crate::snapshot::{HashKey, UpstreamPolicy};

fn count(c: &mut Compiler<'_>, path: &str, v: Option<i64>, default: u32, min: i64) -> u32 {
    match v {
        None => default,
        Some(n) if n >= min && n <= i64::from(u32::MAX) => n as u32,
        Some(n) => {
            c.invalid(path, &n.to_string(), format!("must be at least {min}"));
            default
        }
    }
}

/// Parses the policies of one upstream.
pub(crate) fn policy(c: &mut Compiler<'_>, path: &str, u: &RawUpstream) -> UpstreamPolicy {
    let strategy = match u.balancer.as_deref() {
        None => Strategy::PeakEwma,
        Some(b) => b.parse::<Strategy>().unwrap_or_else(|e| {
            c.invalid(join(path, "balancer"), b, e.to_string());
            Strategy::PeakEwma
        }),
    };
    let hash_key = match (&u.hash_key, strategy) {
        (Some(k), Strategy::ConsistentHash) => hash_key(c, &join(path, "hash_key"), k),
        (None, Strategy::ConsistentHash) => {
            c.invalid(
                join(path, "hash_key"),
                "",
                "consistent_hash needs hash_key = \"header:NAME\" | \"cookie:NAME\" | \"client_ip\"",
            );
            None
        }
        (Some(k), _) => {
            c.invalid(
                join(path, "hash_key"),
                k,
                "only used with balancer = \"consistent_hash\"",
            );
            None
        }
        (None, _) => None,
    };
    let mut params = Params::default();
    if let Some(d) = &u.ewma_decay {
        let decay =
            c.positive_duration(&join(path, "ewma_decay"), Some(d), Duration::from_secs(10));
        params.peak_ewma = EwmaConfig {
            decay,
            ..params.peak_ewma
        };
    }
    let health = u
        .health_check
        .as_ref()
        .and_then(|h| health(c, &join(path, "health_check"), h));
    let (retry, budget_percent) = match &u.retries {
        Some(r) => retries(c, &join(path, "retries"), r),
        None => (None, 20),
    };
    let breaker = u
        .circuit_breaker
        .as_ref()
        .map(|b| breaker(c, &join(path, "circuit_breaker"), b, &params));
    UpstreamPolicy {
        strategy,
        params,
        hash_key,
        health,
        retry,
        retry_budget: RetryBudget::new(budget_percent, 3),
        breaker,
    }
}

fn hash_key(c: &mut Compiler<'_>, path: &str, k: &str) -> Option<HashKey> {
    let valid_name = |n: &str| !n.is_empty() && http::HeaderName::from_bytes(n.as_bytes()).is_ok();
    match k.split_once(':') {
        _ if k == "client_ip" => Some(HashKey::ClientIp),
        Some(("header", n)) if valid_name(n) => Some(HashKey::Header(
            http::HeaderName::from_bytes(n.as_bytes()).ok()?,
        )),
        Some(("cookie", n)) if !n.is_empty() => Some(HashKey::Cookie(n.to_string())),
        _ => {
            c.invalid(path, k, "expected header:NAME, cookie:NAME or client_ip");
            None
        }
    }
}

fn health(c: &mut Compiler<'_>, path: &str, h: &RawHealthCheck) -> Option<HealthCheckConfig> {
    let kind = match (h.kind.as_deref(), &h.path) {
        (None | Some("http"), p) => {
            let p = p.clone().unwrap_or_else(|| "/healthz".to_string());
            if !p.starts_with('/') {
                c.invalid(join(path, "path"), &p, "must start with /");
            }
            CheckKind::Http { path: p }
        }
        (Some("tcp"), None) => CheckKind::Tcp,
        (Some("tcp"), Some(p)) => {
            c.invalid(join(path, "path"), p, "a tcp check has no path");
            CheckKind::Tcp
        }
        (Some(k), _) => {
            c.invalid(join(path, "kind"), k, "expected http or tcp");
            return None;
        }
    };
    let cfg = HealthCheckConfig {
        kind,
        interval: c.positive_duration(
            &join(path, "interval"),
            h.interval.as_deref(),
            Duration::from_secs(2),
        ),
        timeout: c.positive_duration(
            &join(path, "timeout"),
            h.timeout.as_deref(),
            Duration::from_millis(500),
        ),
        unhealthy_after: count(c, &join(path, "unhealthy_after"), h.unhealthy_after, 3, 1),
        healthy_after: count(c, &join(path, "healthy_after"), h.healthy_after, 2, 1),
    };
    if let Err(e) = cfg.validate() {
        c.invalid(path, "", e.to_string());
        return None;
    }
    Some(cfg)
}

fn retries(c: &mut Compiler<'_>, path: &str, r: &RawRetries) -> (Option<RetryPolicy>, u32) {
    let on = match &r.on {
        None => RetryOn::none()
            .with_connect_failure()
            .with_reset()
            .with_status(503),
        Some(list) => RetryOn::parse(list.iter().map(String::as_str)).unwrap_or_else(|e| {
            c.invalid(
                join(path, "on"),
                &e.0,
                "expected connect-failure, reset, timeout or a 5xx status",
            );
            RetryOn::none()
        }),
    };
    let budget = count(c, &join(path, "budget_percent"), r.budget_percent, 20, 0);
    if budget > 100 {
        c.invalid(
            join(path, "budget_percent"),
            &budget.to_string(),
            "must be at most 100",
        );
    }
    let d = Backoff::default();
    let backoff = Backoff {
        base: c.positive_duration(
            &join(path, "backoff_base"),
            r.backoff_base.as_deref(),
            d.base,
        ),
        max: c.positive_duration(&join(path, "backoff_max"), r.backoff_max.as_deref(), d.max),
    };
    let policy = RetryPolicy {
        attempts: count(c, &join(path, "attempts"), r.attempts, 2, 0).min(10),
        on,
        idempotent_only: r.idempotent_only.unwrap_or(true),
        backoff,
    };
    (Some(policy), budget.min(100))
}

fn breaker(
    c: &mut Compiler<'_>,
    path: &str,
    b: &RawBreaker,
    params: &Params,
) -> Arc<CircuitBreaker> {
    let d = BreakerConfig::default();
    let cfg = BreakerConfig {
        max_in_flight: u64::from(count(
            c,
            &join(path, "max_in_flight"),
            b.max_in_flight,
            d.max_in_flight as u32,
            0,
        )),
        consecutive_failures: count(
            c,
            &join(path, "consecutive_failures"),
            b.consecutive_failures,
            d.consecutive_failures,
            1,
        ),
        open_for: c.positive_duration(&join(path, "eject_for"), b.eject_for.as_deref(), d.open_for),
    };
    CircuitBreaker::new(cfg, Arc::clone(&params.clock))
}
