//! Alert rules end to end, through the real binary: a route made slow on purpose fires its p99
//! rule into a real webhook receiver and resolves when it is fast again; error-rate and
//! healthy-target rules; retries with backoff; a reload keeps the state of unchanged rules and
//! resolves removed ones; `GET /admin/alerts` and `/metrics` follow.

mod common;

use std::time::Duration;

use common::launch::AdminGateway;
use common::ops::{alert, wait_alert, Traffic};
use common::*;
use testkit::{ControlledEcho, EchoServer, WebhookReceiver};

const TOKEN: &str = "alerts-admin-token";

/// `[monitor]` with a short evaluation interval and quick retries.
const MONITOR: &str = "[monitor]\ninterval = \"200ms\"\nwebhook_backoff = \"50ms\"\nwebhook_backoff_max = \"200ms\"\nwebhook_attempts = 4\n\n";

fn deliveries_for<'a>(
    all: &'a [testkit::webhook::Delivery],
    rule: &str,
) -> Vec<&'a testkit::webhook::Delivery> {
    all.iter().filter(|d| d.json["alert"] == rule).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_route_fires_then_resolves_into_the_webhook() {
    let slow = ControlledEcho::start_with_delay("slow", Duration::from_millis(250))
        .await
        .expect("slow upstream");
    let fast = EchoServer::start("fast").await.expect("fast upstream");
    let hook = WebhookReceiver::start().await.expect("receiver");
    let body = format!(
        "{}{}{}{}{MONITOR}\
         [[alerts]]\nname = \"slow-p99\"\nmetric = \"p99\"\nseries = \"route:slow:total\"\n\
         above = \"150ms\"\nfor = \"600ms\"\nwindow = \"1s\"\nwebhook = \"{}\"\n\
         headers = {{ Authorization = \"Bearer hook-credential\" }}\n\n\
         [[alerts]]\nname = \"fast-p99\"\nmetric = \"p99\"\nseries = \"route:fast:total\"\n\
         above = \"150ms\"\nwebhook = \"{}\"\n",
        upstream("slow", &[slow.addr()], ""),
        upstream("fast", &[fast.addr()], ""),
        route("slow", "path_prefix = \"/slow/\"", "slow", ""),
        route("fast", "path_prefix = \"/fast/\"", "fast", ""),
        hook.url("/hooks/orchestra"),
        hook.url("/hooks/orchestra"),
    );
    let AdminGateway { gw, admin, .. } =
        AdminGateway::start_from(gateway().admin_token(TOKEN).config(body)).await;
    let before = alert(&admin, "slow-p99").await;
    assert_eq!(before["state"], "ok");
    assert_eq!(before["condition"], "p99 of route:slow:total above 150ms");
    assert_eq!(before["webhook"], hook.url("").as_str(), "origin only");

    // Slow traffic: pending first (for = 600ms), then firing, POSTed once.
    let slow_traffic = Traffic::start(gw.http_url("/slow/x"), 4);
    let _fast_traffic = Traffic::start(gw.http_url("/fast/x"), 1);
    let firing = hook
        .wait_for(WAIT, |d| d.json["alert"] == "slow-p99")
        .await
        .expect("a firing notification");
    assert_eq!(firing.json["status"], "firing", "{}", firing.body);
    assert_eq!(firing.json["state"], "firing");
    assert_eq!(firing.json["metric"], "p99");
    assert_eq!(firing.json["series"], "route:slow:total");
    assert_eq!(firing.json["threshold_text"], "150ms");
    let value = firing.json["value"].as_f64().expect("value");
    assert!(value >= 240_000.0, "p99 of 250 ms responses: {value} us");
    assert_eq!(firing.path, "/hooks/orchestra");
    assert_eq!(
        firing.header("authorization"),
        Some("Bearer hook-credential")
    );
    assert_eq!(firing.header("content-type"), Some("application/json"));
    let state = alert(&admin, "slow-p99").await;
    assert_eq!(state["state"], "firing", "{state}");
    assert!(state["last_value"].as_f64().is_some_and(|v| v > 150_000.0));
    assert_eq!(state["since_unix"], firing.json["since_unix"]);
    let metrics = admin.metrics().await;
    assert!(
        metrics.contains("orchestra_alert_firing{alert=\"slow-p99\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("orchestra_alert_firing{alert=\"fast-p99\"} 0"));

    // The route recovers; once the slow samples leave the 1 s window the rule resolves.
    slow.set_delay(Duration::ZERO);
    let resolved = hook
        .wait_for(WAIT, |d| {
            d.json["alert"] == "slow-p99" && d.json["status"] == "resolved"
        })
        .await
        .expect("a resolved notification");
    assert_eq!(resolved.json["state"], "ok");
    assert!(resolved.at > firing.at);
    assert!(resolved.json["value"]
        .as_f64()
        .is_some_and(|v| v < 150_000.0));
    drop(slow_traffic);
    // The receiver records a POST before answering it; the gateway counts it after the answer.
    let state = wait_alert(&admin, "slow-p99", WAIT, |a| {
        a["notifications"]["delivered"] == 2
    })
    .await;
    assert_eq!(state["state"], "ok", "{state}");
    assert_eq!(state["notifications"]["failed"], 0);
    assert_eq!(state["notifications"]["retries"], 0);

    // Exactly one firing and one resolved for the slow route, nothing for the fast one.
    let all = hook.deliveries();
    let statuses: Vec<&str> = deliveries_for(&all, "slow-p99")
        .iter()
        .map(|d| d.json["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses, ["firing", "resolved"]);
    assert!(deliveries_for(&all, "fast-p99").is_empty());
    // And both changes are in the log.
    let logs = gw.json_logs();
    for msg in ["alert firing", "alert resolved"] {
        assert!(
            logs.iter()
                .any(|l| l["message"] == msg && l["alert"] == "slow-p99"),
            "no {msg:?} log line"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rate_fires_with_retries_and_healthy_targets_follow_health_checks() {
    let echo = EchoServer::start("e").await.expect("echo");
    let mut checked = ControlledEcho::start("checked").await.expect("checked");
    let hook = WebhookReceiver::start().await.expect("receiver");
    let health = "health_check = { path = \"/healthz\", interval = \"100ms\", timeout = \"200ms\", unhealthy_after = 1, healthy_after = 1 }";
    let body = format!(
        "{}{}{}{}{MONITOR}\
         [[alerts]]\nname = \"api-errors\"\nmetric = \"error_rate\"\nseries = \"route:api\"\n\
         above = \"50%\"\nwindow = \"1s\"\nwebhook = \"{}\"\n\n\
         [[alerts]]\nname = \"checked-down\"\nmetric = \"upstream_healthy_targets\"\nseries = \"checked\"\n\
         below = 1\nfor = \"200ms\"\nwebhook = \"{}\"\n",
        upstream("api", &[echo.addr()], ""),
        upstream("checked", &[checked.addr()], health),
        route("api", "path_prefix = \"/api/\"", "api", "strip_prefix = true"),
        route("checked", "path_prefix = \"/checked/\"", "checked", ""),
        hook.url("/errors"),
        hook.url("/health"),
    );
    let AdminGateway { gw, admin, .. } =
        AdminGateway::start_from(gateway().admin_token(TOKEN).config(body)).await;

    // The receiver refuses twice with 503: the third try is delivered.
    hook.fail_next(&[503, 503]);
    let errors = Traffic::start(gw.http_url("/api/status/500"), 2);
    let delivered = hook
        .wait_for(WAIT, |d| {
            d.json["alert"] == "api-errors" && d.answered == 200
        })
        .await
        .expect("delivered after retries");
    assert_eq!(delivered.json["status"], "firing");
    assert_eq!(delivered.json["value_text"], "100.00%");
    let tries = deliveries_for(&hook.deliveries(), "api-errors")
        .iter()
        .map(|d| (d.answered, d.body.clone()))
        .collect::<Vec<_>>();
    assert_eq!(
        tries.iter().map(|t| t.0).collect::<Vec<_>>(),
        [503, 503, 200]
    );
    assert!(
        tries.iter().all(|t| t.1 == tries[0].1),
        "same body each try"
    );
    let state = wait_alert(&admin, "api-errors", WAIT, |a| {
        a["notifications"]["delivered"] == 1
    })
    .await;
    assert_eq!(state["state"], "firing");
    assert_eq!(state["notifications"]["retries"], 2, "{state}");
    drop(errors);
    let _ok = Traffic::start(gw.http_url("/api/status/200"), 2);
    let resolved = hook
        .wait_for(WAIT, |d| {
            d.json["alert"] == "api-errors" && d.json["status"] == "resolved"
        })
        .await
        .expect("resolved once 200s dominate the window");
    assert!(
        resolved.json["value"].as_f64().is_some_and(|v| v <= 0.5),
        "{}",
        resolved.body
    );

    // Health checks mark the only target of "checked" down: fires; back up: resolves.
    assert_eq!(alert(&admin, "checked-down").await["state"], "ok");
    checked.stop().await;
    let fired = hook
        .wait_for(WAIT, |d| d.json["alert"] == "checked-down")
        .await
        .expect("healthy targets below 1");
    assert_eq!(fired.json["status"], "firing");
    assert_eq!(fired.json["value"], 0.0);
    assert!(admin
        .metrics()
        .await
        .contains("orchestra_upstream_healthy_targets{upstream=\"checked\"} 0"));
    checked.restart().await.expect("restart");
    let back = hook
        .wait_for(WAIT, |d| {
            d.json["alert"] == "checked-down" && d.json["status"] == "resolved"
        })
        .await
        .expect("resolved when the target is healthy again");
    assert_eq!(back.json["value"], 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_unchanged_rules_and_resolves_removed_ones() {
    let mut checked = ControlledEcho::start("checked").await.expect("checked");
    let hook = WebhookReceiver::start().await.expect("receiver");
    let health = "health_check = { path = \"/healthz\", interval = \"100ms\", timeout = \"200ms\", unhealthy_after = 1, healthy_after = 1 }";
    let down_rule = format!(
        "[[alerts]]\nname = \"down\"\nmetric = \"upstream_healthy_targets\"\nseries = \"checked\"\nbelow = 1\nwebhook = \"{}\"\n\n",
        hook.url("/h")
    );
    let base = format!(
        "{}{}{MONITOR}",
        upstream("checked", &[checked.addr()], health),
        route("checked", "path_prefix = \"/\"", "checked", ""),
    );
    let AdminGateway { gw, admin, .. } = AdminGateway::start_from(
        gateway()
            .admin_token(TOKEN)
            .config(format!("{base}{down_rule}")),
    )
    .await;
    checked.stop().await;
    hook.wait_for(WAIT, |d| d.json["alert"] == "down")
        .await
        .expect("fired");
    let firing = wait_alert(&admin, "down", WAIT, |a| a["state"] == "firing").await;

    // Add a rule: "down" keeps its state and its since; nothing new is POSTed for it.
    let extra = "[[alerts]]\nname = \"errors\"\nmetric = \"error_rate\"\nabove = 0.9\n";
    admin
        .apply(&gw.config_text(&format!("{base}{down_rule}{extra}")))
        .await;
    let after = wait_alert(&admin, "errors", WAIT, |a| {
        a["last_evaluated_unix"].is_number()
    })
    .await;
    assert_eq!(after["state"], "ok");
    let kept = alert(&admin, "down").await;
    assert_eq!(kept["state"], "firing");
    assert_eq!(kept["since_unix"], firing["since_unix"]);
    assert_eq!(kept["notifications"]["delivered"], 1, "{kept}");
    assert_eq!(deliveries_for(&hook.deliveries(), "down").len(), 1);

    // Remove it: resolved, with the reason, and gone from /admin/alerts.
    admin
        .apply(&gw.config_text(&format!("{base}{extra}")))
        .await;
    let resolved = hook
        .wait_for(WAIT, |d| {
            d.json["alert"] == "down" && d.json["status"] == "resolved"
        })
        .await
        .expect("resolved by the reload");
    assert_eq!(resolved.json["reason"], "rule removed by a config reload");
    let list = admin.get_json("/admin/alerts").await;
    let names: Vec<&str> = list["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["errors"]);
}
