//! The `/admin/` dashboard in a real headless Chromium (Debian's `chromium`, driven over
//! WebDriver by `chromedriver` + fantoccini): the page loads with the token from the URL
//! fragment, its plots fill with data after traffic, the agent panels say the hub is not running,
//! the token can be forgotten and typed in again, and a rollback from the page changes the
//! running config version.

mod common;

use std::time::Duration;

use common::launch::AdminGateway;
use common::ops::Traffic;
use common::*;
use testkit::browser::fantoccini::{Client, Locator};
use testkit::browser::ChromeDriver;
use testkit::EchoServer;

const TOKEN: &str = "dash-token-5b1c";

/// Polls `f` every 100 ms until it returns `Some`, failing with `what` after `timeout`.
async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(c: &Client, id: &str) -> Option<String> {
    c.find(Locator::Id(id)).await.ok()?.text().await.ok()
}

async fn attr(c: &Client, css: &str, name: &str) -> Option<String> {
    c.find(Locator::Css(css))
        .await
        .ok()?
        .attr(name)
        .await
        .ok()?
}

async fn displayed(c: &Client, id: &str) -> bool {
    match c.find(Locator::Id(id)).await {
        Ok(e) => e.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

/// Waits for `#id`'s text to satisfy `pred`; returns it.
async fn wait_text(c: &Client, id: &str, pred: impl Fn(&str) -> bool) -> String {
    poll(&format!("#{id} text"), WAIT, || async {
        text(c, id).await.filter(|t| pred(t))
    })
    .await
}

/// Waits until the element at `css` reports at least `n` plotted values (`data-points`).
async fn wait_points(c: &Client, css: &str, n: u64) -> u64 {
    poll(&format!("{css} with {n} data points"), WAIT, || async {
        attr(c, css, "data-points")
            .await
            .and_then(|p| p.parse::<u64>().ok())
            .filter(|p| *p >= n)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_plots_live_data_and_rolls_back_in_headless_chromium() {
    let echo = EchoServer::start("e").await.expect("echo");
    let base = format!(
        "{}{}[monitor]\ninterval = \"250ms\"\n\n",
        upstream("demo", &[echo.addr()], ""),
        route("api", "path_prefix = \"/api/\"", "demo", ""),
    );
    let AdminGateway { gw, admin, .. } =
        AdminGateway::start_from(gateway().admin_token(TOKEN).config(base.clone())).await;
    // Version 2 adds a route, so the page has a version to roll back to.
    let with_extra = format!(
        "{base}{}",
        route("extra-route", "path_prefix = \"/extra/\"", "demo", "")
    );
    assert_eq!(admin.apply(&gw.config_text(&with_extra)).await, 2);

    let driver = ChromeDriver::start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let session = driver.session().await.unwrap_or_else(|e| panic!("{e}"));
    let c = &session.client;
    c.goto(&format!("{}/admin/#token={TOKEN}", gw.admin_base_url()))
        .await
        .expect("open the dashboard");

    // Loaded with the token from the fragment, which left the address bar.
    wait_text(c, "status", |t| t.starts_with("live")).await;
    let url = c.current_url().await.expect("url");
    assert_eq!(url.fragment(), None, "token fragment not removed: {url}");
    assert!(!url.as_str().contains(TOKEN));
    assert_eq!(wait_text(c, "config-version", |t| t == "2").await, "2");

    // Traffic: the latency plot of route api and the request-rate plot fill up.
    let traffic = Traffic::start(gw.http_url("/api/hello"), 2);
    let points = wait_points(
        c,
        "#latency-charts .chart[data-series=\"route:api:total\"]",
        9,
    )
    .await;
    assert!(points >= 9, "p50/p90/p99 over at least 3 samples");
    wait_points(c, "#rate-chart", 2).await;
    wait_points(c, "#error-chart", 2).await;
    assert!(traffic.sent() > 0);
    drop(traffic);
    let canvas = c
        .find(Locator::Css(
            "#latency-charts .chart[data-series=\"route:api:total\"] canvas",
        ))
        .await
        .expect("uPlot drew a canvas");
    assert!(canvas.is_displayed().await.expect("displayed"));
    // The other kinds of series are one click away.
    c.find(Locator::Css("#latency-kind option[value=\"protocol\"]"))
        .await
        .expect("protocol option")
        .click()
        .await
        .expect("select protocols");
    wait_points(
        c,
        "#latency-charts .chart[data-series=\"protocol:h1:total\"]",
        3,
    )
    .await;

    // Upstream targets, and the hub panels while no hub runs (404).
    let target = format!("demo/{}", echo.addr());
    poll("the demo target row", WAIT, || async {
        c.find(Locator::Css(&format!(
            "#upstreams-table tr[data-target=\"{target}\"]"
        )))
        .await
        .ok()
    })
    .await;
    wait_text(c, "agents-status", |t| t == "agent hub not running").await;
    wait_text(c, "tasks-status", |t| t == "agent hub not running").await;

    // Forget the token: the page asks for it, and works again once it is typed in.
    c.find(Locator::Id("forget-token"))
        .await
        .expect("forget button")
        .click()
        .await
        .expect("click");
    poll("the login form", WAIT, || async {
        displayed(c, "login").await.then_some(())
    })
    .await;
    assert!(!displayed(c, "main").await);
    let input = c.find(Locator::Id("token-input")).await.expect("input");
    input.send_keys(TOKEN).await.expect("type the token");
    c.find(Locator::Css("#token-form button[type=submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
    wait_text(c, "status", |t| t.starts_with("live")).await;

    // Roll back from the page: two clicks, and the gateway runs version 3 (= version 1's text).
    let v1_sha = admin.history().await["versions"][0]["sha256"]
        .as_str()
        .expect("v1 sha")
        .to_string();
    c.find(Locator::Id("rollback"))
        .await
        .expect("rollback button")
        .click()
        .await
        .expect("click rollback");
    let confirm = poll("the confirm button", WAIT, || async {
        let b = c.find(Locator::Id("rollback-confirm")).await.ok()?;
        b.is_displayed().await.ok()?.then_some(b)
    })
    .await;
    // The diff the page shows before confirming names the route that goes away.
    poll("a diff without extra-route", WAIT, || async {
        text(c, "config-diff")
            .await
            .filter(|t| t.contains("- name = \"extra-route\""))
    })
    .await;
    confirm.click().await.expect("confirm rollback");
    let result = wait_text(c, "rollback-result", |t| !t.is_empty()).await;
    assert_eq!(result, "rolled back: now running version 3");
    let config = admin.config().await;
    assert_eq!(config["version"], 3);
    assert_eq!(config["source"], "rollback");
    assert_eq!(config["sha256"], v1_sha.as_str());
    wait_text(c, "config-version", |t| t == "3").await;

    // For humans looking at a failure or at the layout: target/tmp/dashboard.png.
    if let Some(dir) = option_env!("CARGO_TARGET_TMPDIR") {
        if let Ok(png) = c.screenshot().await {
            let _ = std::fs::write(std::path::Path::new(&dir).join("dashboard.png"), png);
        }
    }
    // The token never reached the gateway in a URL (the admin API logs refused paths only).
    assert!(!gw.stderr().contains(TOKEN));
    session
        .client
        .clone()
        .close()
        .await
        .expect("close the browser");
}
