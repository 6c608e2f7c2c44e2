//! What a reload leaves behind, through the real binary: the version history and rollback,
//! `restart_needed` relative to what the process runs, and the carry-over of upstream state
//! (the reload triggers themselves are in `reload.rs`).

mod common;

use common::admin::*;
use common::launch::AdminGateway;
use common::*;
use testkit::net::{closed_addr, free_addr};
use testkit::EchoServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_the_previous_routes_and_history_lists_versions() {
    let echo_b = EchoServer::start("B").await.expect("echo");
    let echo_c = EchoServer::start("C").await.expect("echo");
    let base_body = upstream_and_route("b", echo_b.addr(), "base", "/base");
    let AdminGateway { gw, admin, client } = AdminGateway::start(base_body.clone()).await;
    let text_1 = gw.read_config().expect("config");

    // Nothing to roll back to yet.
    let a = admin.rollback().await;
    assert_eq!(a.status, 409, "{}", a.text);
    assert!(a.json["error"]["code"].is_string(), "{}", a.text);
    assert_eq!(admin.version().await, 1);

    let text_2 = with_route(&gw, &base_body, "only-in-2", "/two", "b");
    let text_3 = gw.config_text(
        ConfigBody::new()
            .service("c", echo_c.addr(), "base", "/base")
            .route(Route::prefix("only-in-3", "/three", "c"))
            .as_str(),
    );
    assert_eq!(admin.apply(&text_2).await, 2);
    // Applying the running text again changes nothing and makes no version.
    let same = admin.put_config(&text_2).await;
    assert_eq!(same.status, 200, "{}", same.text);
    assert_eq!(same.json["changed"], false, "{}", same.text);
    assert_eq!(same.json["version"], 2, "{}", same.text);
    assert_eq!(admin.apply(&text_3).await, 3);
    assert_served_by(&client, &gw.http_url("/base"), "C").await;
    assert_served_by(&client, &gw.http_url("/three"), "C").await;
    assert_no_route(&client, &gw.http_url("/two")).await;

    let a = admin.rollback().await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["version"], 4, "{}", a.text);
    assert_eq!(a.json["sha256"], sha256_hex(&text_2), "{}", a.text);
    let c = admin.config().await;
    assert_eq!(c["config"], text_2.as_str());
    assert_eq!(c["source"], "rollback", "{c}");
    assert_served_by(&client, &gw.http_url("/base"), "B").await;
    assert_served_by(&client, &gw.http_url("/two"), "B").await;
    assert_no_route(&client, &gw.http_url("/three")).await;

    let h = admin.history().await;
    assert_eq!(h["current"], 4, "{h}");
    let versions = h["versions"].as_array().expect("versions");
    let got: Vec<(u64, String, String)> = versions
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().expect("version"),
                v["sha256"].as_str().expect("sha256").to_string(),
                v["source"].as_str().expect("source").to_string(),
            )
        })
        .collect();
    let want: Vec<(u64, String, String)> = [
        (1, &text_1, "startup"),
        (2, &text_2, "admin-put"),
        (3, &text_3, "admin-put"),
        (4, &text_2, "rollback"),
    ]
    .into_iter()
    .map(|(n, t, s)| (n, sha256_hex(t), s.to_string()))
    .collect();
    assert_eq!(got, want, "{h}");
    let times: Vec<f64> = versions
        .iter()
        .map(|v| v["applied_at_unix"].as_f64().expect("applied_at_unix"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]) && times[0] > 1.6e9,
        "applied_at_unix not increasing: {times:?}"
    );
}

/// The brief's test 4: a changed `listeners.http` is reported, the routes of the same PUT are
/// applied, and the process keeps its listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_listener_is_restart_needed_while_routes_apply() {
    let echo = EchoServer::start("e").await.expect("echo");
    let body = upstream_and_route("u", echo.addr(), "one", "/one");
    let AdminGateway { gw, admin, client } = AdminGateway::start(body.clone()).await;

    let new_http = free_addr().expect("addr");
    let text = with_route(&gw, &body, "two", "/two", "u").replace(
        &format!("http = \"{}\"", gw.http_addr()),
        &format!("http = \"{new_http}\""),
    );
    assert!(text.contains(&new_http.to_string()));
    let a = admin
        .put_config_needing_restart(&text, &["listeners.http"])
        .await;
    assert_eq!(a.json["changed"], true, "{}", a.text);
    assert_served_by(&client, &gw.http_url("/two"), "e").await;
    assert_served_by(&client, &gw.http_url("/one"), "e").await;
    assert!(
        tokio::net::TcpStream::connect(new_http).await.is_err(),
        "nothing may listen on {new_http} before a restart"
    );
    assert!(
        gw.json_logs().iter().any(|l| l["level"] == "WARN"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("need a restart"))),
        "no WARN about the restart; stderr:\n{}",
        gw.stderr()
    );
}

/// `restart_needed` describes the running process: a listener change that was applied to
/// nothing is still pending after the next reload, and reverting it needs no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_needed_is_relative_to_what_the_process_runs() {
    let echo = EchoServer::start("e").await.expect("echo");
    let body = upstream_and_route("u", echo.addr(), "one", "/one");
    let AdminGateway { gw, admin, .. } = AdminGateway::start(body.clone()).await;
    let new_http = free_addr().expect("addr");
    let moved = |extra: &str| {
        gw.config_text(&format!("{body}{extra}")).replace(
            &format!("http = \"{}\"", gw.http_addr()),
            &format!("http = \"{new_http}\""),
        )
    };

    admin
        .put_config_needing_restart(&moved(""), &["listeners.http"])
        .await;

    // An unrelated change: the process still listens on the old address.
    let a = admin
        .put_config(&moved(&Route::prefix("two", "/two", "u").to_string()))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(
        tokio::net::TcpStream::connect(new_http).await.is_err(),
        "{new_http} is not bound"
    );
    assert_eq!(
        a.json["restart_needed"],
        serde_json::json!(["listeners.http"]),
        "the http listener change is still pending (the process listens on {}, the config says \
         {new_http}): {}",
        gw.http_addr(),
        a.text
    );

    // Back to the address the process listens on: nothing needs a restart.
    let a = admin
        .put_config(&with_route(&gw, &body, "three", "/three", "u"))
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.json["restart_needed"],
        serde_json::json!([]),
        "the config now matches the running listener {}: {}",
        gw.http_addr(),
        a.text
    );
}

/// The brief's test 5: target counters of an unchanged upstream survive an unrelated reload;
/// a changed upstream starts fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_upstream_keeps_its_counters_and_a_changed_one_starts_fresh() {
    let echo_u = EchoServer::start("U").await.expect("echo");
    let echo_w = EchoServer::start("W").await.expect("echo");
    let down = closed_addr().expect("closed addr");
    let body = ConfigBody::new()
        .service("u", echo_u.addr(), "ru", "/u")
        .service("w", echo_w.addr(), "rw", "/w")
        .service("down", down, "rd", "/down");
    let AdminGateway { gw, admin, client } = AdminGateway::start(body).await;

    for _ in 0..10 {
        assert_served_by(&client, &gw.http_url("/u/x"), "U").await;
    }
    for _ in 0..3 {
        assert_served_by(&client, &gw.http_url("/w/x"), "W").await;
    }
    // A new connection per failing request: the gateway closes the client connection after
    // a 502 (see error_keepalive.rs), which is not what this test is about.
    let one_shot = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(WAIT)
        .build()
        .expect("client");
    for _ in 0..2 {
        let (status, _) = probe(&one_shot, &gw.http_url("/down/x"))
            .await
            .expect("answer");
        assert_eq!(status, 502);
    }
    assert_eq!(admin.target_counts("u", echo_u.addr()).await, (10, 0));
    assert_eq!(admin.target_counts("w", echo_w.addr()).await, (3, 0));
    assert_eq!(admin.target_counts("down", down).await, (2, 2));

    // Unrelated reload: a new route (and the upstreams listed in another order).
    let reordered = ConfigBody::new()
        .service("down", down, "rd", "/down")
        .service("w", echo_w.addr(), "rw", "/w")
        .service("u", echo_u.addr(), "ru", "/u")
        .route(Route::prefix("extra", "/extra", "w"));
    admin.apply(&gw.config_text(reordered.as_str())).await;
    assert_served_by(&client, &gw.http_url("/extra"), "W").await;
    assert_eq!(
        admin.target_counts("u", echo_u.addr()).await,
        (10, 0),
        "u is unchanged: its counters must carry over"
    );
    assert_eq!(admin.target_counts("w", echo_w.addr()).await, (4, 0));
    assert_eq!(admin.target_counts("down", down).await, (2, 2));
    // ...and keep counting.
    assert_served_by(&client, &gw.http_url("/u/x"), "U").await;
    assert_eq!(admin.target_counts("u", echo_u.addr()).await, (11, 0));

    // Change u's definition (its timeouts): it starts fresh; w and down carry over.
    let changed = ConfigBody::new()
        .service("down", down, "rd", "/down")
        .service("w", echo_w.addr(), "rw", "/w")
        .upstream(Upstream::new("u", &[echo_u.addr()]).timeouts("2s", "20s", "60s"))
        .route(Route::prefix("ru", "/u", "u"))
        .route(Route::prefix("extra", "/extra", "w"));
    admin.apply(&gw.config_text(changed.as_str())).await;
    assert_eq!(
        admin.target_counts("u", echo_u.addr()).await,
        (0, 0),
        "u changed: it starts fresh"
    );
    assert_eq!(admin.target_counts("w", echo_w.addr()).await, (4, 0));
    assert_eq!(admin.target_counts("down", down).await, (2, 2));
    for _ in 0..3 {
        assert_served_by(&client, &gw.http_url("/u/x"), "U").await;
    }
    assert_eq!(admin.target_counts("u", echo_u.addr()).await, (3, 0));
}
