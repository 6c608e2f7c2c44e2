//! Hot-swapped config through the real binary: reloads under traffic, rejected configs and
//! every reload trigger (PUT, file watch, SIGHUP, `POST /admin/reload`, the `reload`
//! subcommand). History, rollback, `restart_needed` and the carry-over of upstream state are in
//! `reload_versions.rs`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::admin::*;
use common::launch::AdminGateway;
use common::*;
use testkit::net::closed_addr;
use testkit::EchoServer;

#[derive(Debug, Default)]
struct Tally {
    from_a: u64,
    from_b: u64,
    /// 200s from anything but A or B.
    foreign: Vec<String>,
    /// Non-200 answers and transport errors.
    failures: Vec<String>,
}

/// The brief's test 1: configs A (`/v` -> echo "A" via upstream `x`, route `va`) and B (`/v` ->
/// echo "B" via upstream `y`, route `vb`) are applied alternately 200 times while clients send
/// requests back to back. Not one request may fail or be answered by anything but A or B, each
/// apply must take effect for the next request, and requests in flight when their upstream is
/// removed finish normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_reloads_under_traffic_lose_no_request() {
    const RELOADS: usize = 200;
    const CLIENTS: usize = 3;
    let a = EchoServer::start("A").await.expect("echo A");
    let b = EchoServer::start("B").await.expect("echo B");
    let stripped = |upstream_name: &str, addr, route_name: &str| -> String {
        ConfigBody::new()
            .upstream(Upstream::new(upstream_name, &[addr]))
            .route(Route::prefix(route_name, "/v", upstream_name).strip_prefix())
            .into()
    };
    let body_a = stripped("x", a.addr(), "va");
    let body_b = stripped("y", b.addr(), "vb");
    let AdminGateway { gw, admin, .. } =
        AdminGateway::start_from(gateway().threads(2).config(body_a.clone())).await;
    let text_a = gw.config_text(&body_a);
    let text_b = gw.config_text(&body_b);
    assert_eq!(gw.read_config().expect("config file"), text_a);
    assert_eq!(admin.version().await, 1);

    // Two slow requests to A stay in flight through the first reloads (which remove A's
    // upstream every other time).
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let url = gw.http_url("/v/slow?ms=1000");
            tokio::spawn(async move { probe(&http_client(), &url).await })
        })
        .collect();
    tokio::time::timeout(WAIT, a.requests().wait_for(2))
        .await
        .expect("the slow requests reached A");

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let stop = Arc::clone(&stop);
        let url = gw.http_url(&format!("/v/client-{c}"));
        clients.push(tokio::spawn(async move {
            let client = http_client();
            let mut tally = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                match probe(&client, &url).await {
                    Ok((200, s)) if s == "A" => tally.from_a += 1,
                    Ok((200, s)) if s == "B" => tally.from_b += 1,
                    Ok((200, s)) => tally.foreign.push(s),
                    other => tally.failures.push(format!("{other:?}")),
                }
            }
            tally
        }));
    }

    let started = Instant::now();
    let checker = http_client();
    let check_url = gw.http_url("/v/check");
    let mut file_reloads = 0u32;
    for i in 0..RELOADS {
        // Version 1 is the start-up config; reload i makes version i + 2.
        let version = i as u64 + 2;
        let (text, name) = if i.is_multiple_of(2) {
            (&text_b, "B")
        } else {
            (&text_a, "A")
        };
        let answer = if i % 50 == 49 {
            // A few through the file: alternately in place and renamed over, then
            // POST /admin/reload.
            if file_reloads.is_multiple_of(2) {
                gw.write_config(text).expect("rewrite config");
            } else {
                gw.replace_config(text).expect("replace config");
            }
            file_reloads += 1;
            admin.reload().await
        } else {
            admin.put_config(text).await
        };
        assert_eq!(answer.status, 200, "reload {i}: {}", answer.text);
        assert_eq!(answer.json["changed"], true, "reload {i}: {}", answer.text);
        assert_eq!(
            answer.json["restart_needed"],
            serde_json::json!([]),
            "reload {i}: {}",
            answer.text
        );
        assert_eq!(
            answer.json["version"], version,
            "reload {i}: {}",
            answer.text
        );
        assert_eq!(answer.json["sha256"], sha256_hex(text), "reload {i}");
        // The apply has returned: the next new request is routed by the new config.
        match probe(&checker, &check_url).await {
            Ok((200, s)) if s == name => {}
            other => panic!("after reload {i} (to {name}), GET /v/check answered {other:?}"),
        }
        if i % 50 == 49 {
            // Let the file watch see the rewrite (it finds the running config equal and does
            // nothing) before PUTs resume, so it cannot re-apply the file between a PUT and
            // the check above.
            tokio::time::sleep(Duration::from_millis(1300)).await;
        }
    }
    let reload_time = started.elapsed();
    for s in slow {
        let answer = s.await.expect("slow task");
        assert_eq!(
            answer,
            Ok((200, "A".to_string())),
            "a request in flight across reloads"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for c in clients {
        let t = c.await.expect("client task");
        total.from_a += t.from_a;
        total.from_b += t.from_b;
        total.foreign.extend(t.foreign);
        total.failures.extend(t.failures);
    }
    let sent =
        total.from_a + total.from_b + total.foreign.len() as u64 + total.failures.len() as u64;
    println!(
        "{RELOADS} reloads ({file_reloads} via file + POST /admin/reload) in {reload_time:?}; \
         {sent} requests from {CLIENTS} clients: {} from A, {} from B, {} foreign, {} failed",
        total.from_a,
        total.from_b,
        total.foreign.len(),
        total.failures.len()
    );
    assert!(
        total.failures.is_empty(),
        "{} of {sent} requests failed, first: {:?}",
        total.failures.len(),
        &total.failures[..total.failures.len().min(5)]
    );
    assert!(
        total.foreign.is_empty(),
        "answers from neither A nor B: {:?}",
        &total.foreign[..total.foreign.len().min(5)]
    );
    assert!(
        total.from_a > 0 && total.from_b > 0,
        "traffic must have seen both configs: A {}, B {}",
        total.from_a,
        total.from_b
    );

    // History: the last 20 versions, consecutive, ending at the running one, each with the
    // sha256 of its text.
    let history = admin.history().await;
    let current = (RELOADS + 1) as u64;
    assert_eq!(history["current"], current, "{history}");
    let versions = history["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 20, "{history}");
    for (k, v) in versions.iter().enumerate() {
        let n = current - 19 + k as u64;
        assert_eq!(v["version"], n, "{history}");
        // Version 1 is A, and versions alternate: odd -> A, even -> B.
        let text = if n.is_multiple_of(2) {
            &text_b
        } else {
            &text_a
        };
        assert_eq!(v["sha256"], sha256_hex(text), "version {n}: {v}");
    }
    assert_served_by(&checker, &check_url, "A").await;
}

/// The brief's test 2: a broken config by PUT, then by file edit, never replaces the running
/// one; a valid edit renamed over the file is picked up by the watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_are_rejected_and_a_valid_rename_over_is_picked_up() {
    let echo = EchoServer::start("old").await.expect("echo");
    let body = upstream_and_route("u", echo.addr(), "old", "/old");
    let AdminGateway { gw, admin, client } = AdminGateway::start(body.clone()).await;
    let started_text = gw.read_config().expect("config");

    // 1. PUT with three errors: 400 listing every path, nothing applied.
    let broken = gw.config_text(&format!(
        "{body}[[upstreams]]\nname = \"v\"\nbalancer = \"bogus\"\ntargets = [ {{ addr = \"not an addr\" }} ]\n\n{}",
        route("new", "path_prefix = \"/new\"", "nope", "")
    ));
    let a = admin.put_config(&broken).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json["error"]["code"], "PARAM_001", "{}", a.text);
    let paths: Vec<&str> = a.json["error"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no error list: {}", a.text))
        .iter()
        .map(|e| {
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "error without message: {e}"
            );
            e["path"].as_str().unwrap_or("")
        })
        .collect();
    for want in [
        "upstreams[1].balancer",
        "upstreams[1].targets[0].addr",
        "routes[1].upstream",
    ] {
        assert!(paths.contains(&want), "no error at {want}: {}", a.text);
    }
    let c = admin.config().await;
    assert_eq!(c["version"], 1, "{c}");
    assert_eq!(c["config"], started_text.as_str());
    assert_served_by(&client, &gw.http_url("/old/x"), "old").await;
    assert_no_route(&client, &gw.http_url("/new/x")).await;
    assert!(
        wait_for_error_log(&gw, "config from PUT /admin/config rejected", WAIT)
            .await
            .is_some(),
        "no ERROR log line for the rejected PUT; stderr:\n{}",
        gw.stderr()
    );

    // A TOML syntax error too.
    let a = admin.put_config("[[routes]\nname = 1\n").await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(
        a.json["error"]["errors"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "{}",
        a.text
    );
    assert_eq!(admin.version().await, 1);

    // 2. The file edited in place with a broken route: the watch rejects it, loudly.
    let broken_file = with_route(&gw, &body, "new", "/new", "nope");
    gw.write_config(&broken_file).expect("rewrite");
    let line = wait_for_error_log(&gw, "config reload rejected", WAIT)
        .await
        .unwrap_or_else(|| {
            panic!(
                "the watch did not log the rejected file within {WAIT:?}; stderr:\n{}",
                gw.stderr()
            )
        });
    assert_eq!(line["source"], "file-watch", "{line}");
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("routes[1].upstream")),
        "{line}"
    );
    assert_eq!(admin.version().await, 1);
    assert_served_by(&client, &gw.http_url("/old/x"), "old").await;
    assert_no_route(&client, &gw.http_url("/new/x")).await;
    // Asked explicitly, the reload answers 400 with the error listed.
    let a = admin.reload().await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(
        a.json["error"]["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["path"] == "routes[1].upstream")),
        "{}",
        a.text
    );

    // 3. A valid edit written to a new file and renamed over the old one.
    let fixed = with_route(&gw, &body, "new", "/new", "u");
    gw.replace_config(&fixed).expect("rename over");
    let c = admin.wait_version_above(1, Duration::from_secs(10)).await;
    assert_eq!(c["version"], 2, "{c}");
    assert_eq!(c["source"], "file-watch", "{c}");
    assert_eq!(c["sha256"], sha256_hex(&fixed), "{c}");
    assert_eq!(c["config"], fixed.as_str());
    assert_served_by(&client, &gw.http_url("/new/x"), "old").await;
    assert_served_by(&client, &gw.http_url("/old/x"), "old").await;
    // `?format=toml` is the raw text.
    let raw = admin
        .call(reqwest::Method::GET, "/admin/config?format=toml", None)
        .await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.text, fixed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_config_file() {
    let echo = EchoServer::start("e").await.expect("echo");
    let body = upstream_and_route("u", echo.addr(), "one", "/one");
    let AdminGateway { gw, admin, client } = AdminGateway::start(body.clone()).await;
    assert_no_route(&client, &gw.http_url("/two")).await;

    let next = with_route(&gw, &body, "two", "/two", "u");
    // SIGHUP right after the write: the file watch needs at least one more poll interval
    // (debounce) before it would act, so the signal is what applies it.
    gw.write_config(&next).expect("rewrite");
    gw.sighup().expect("SIGHUP");
    let c = admin.wait_version_above(1, WAIT).await;
    assert_eq!(c["version"], 2, "{c}");
    assert_eq!(c["source"], "sighup", "{c}");
    assert_eq!(c["sha256"], sha256_hex(&next), "{c}");
    assert_served_by(&client, &gw.http_url("/two"), "e").await;
    assert!(
        gw.json_logs()
            .iter()
            .any(|l| l["message"] == "SIGHUP: reloading config"),
        "stderr:\n{}",
        gw.stderr()
    );
    // The process is still the same and healthy.
    assert_served_by(&client, &gw.http_url("/one"), "e").await;

    // A broken file and SIGHUP: rejected, logged, nothing changes.
    let broken = with_route(&gw, &body, "three", "/three", "nope");
    gw.write_config(&broken).expect("rewrite");
    gw.sighup().expect("SIGHUP");
    let line = wait_for_error_log(&gw, "config reload rejected", WAIT)
        .await
        .unwrap_or_else(|| panic!("no rejection logged; stderr:\n{}", gw.stderr()));
    assert_eq!(line["source"], "sighup", "{line}");
    assert_eq!(admin.version().await, 2);
    assert_served_by(&client, &gw.http_url("/two"), "e").await;
    assert_no_route(&client, &gw.http_url("/three")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_subcommand_rereads_the_file_and_reports_errors() {
    let echo = EchoServer::start("e").await.expect("echo");
    let body = upstream_and_route("u", echo.addr(), "one", "/one");
    let AdminGateway { gw, admin, client } = AdminGateway::start(body.clone()).await;
    let base = gw.admin_base_url();

    let next = with_route(&gw, &body, "two", "/two", "u");
    gw.write_config(&next).expect("rewrite");
    let out = cli(&["reload", "--admin", &base], &[]).await;
    assert!(out.status.success(), "{}", describe_output(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("reload output is not JSON ({e}): {}", describe_output(&out)));
    assert_eq!(printed["version"], 2, "{printed}");
    assert_eq!(printed["changed"], true, "{printed}");
    let c = admin.config().await;
    assert_eq!(c["version"], 2, "{c}");
    assert_eq!(c["source"], "admin-reload", "{c}");
    assert_served_by(&client, &gw.http_url("/two"), "e").await;

    // A broken file: non-zero exit, the error path on stderr, nothing applied.
    let broken = with_route(&gw, &body, "three", "/three", "nope");
    gw.write_config(&broken).expect("rewrite");
    let out = cli(&["reload", "--admin", &base], &[]).await;
    assert!(!out.status.success(), "{}", describe_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("400") && stderr.contains("routes[1].upstream"),
        "{}",
        describe_output(&out)
    );
    assert_eq!(admin.version().await, 2);
    assert_served_by(&client, &gw.http_url("/two"), "e").await;

    // Nothing listening: non-zero exit with a message.
    let closed = format!("http://{}", closed_addr().expect("addr"));
    let out = cli(&["reload", "--admin", &closed], &[]).await;
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert!(!out.stderr.is_empty(), "{}", describe_output(&out));
}
