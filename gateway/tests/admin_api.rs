//! The admin API's bearer token, through the real binary: every endpoint (including
//! `/metrics`) refuses a call without the right token, and the `stats` / `reload` subcommands
//! pass it from `--token` or `ORCHESTRA_ADMIN_TOKEN`.

mod common;

use common::admin::*;
use common::launch::AdminGateway;
use common::*;
use reqwest::Method;
use testkit::EchoServer;

const TOKEN: &str = "s3cret-token";

/// `(method, path, body)` of every admin endpoint.
fn endpoints(config: &str) -> Vec<(Method, &'static str, Option<String>)> {
    vec![
        (Method::GET, "/admin/config", None),
        (Method::GET, "/admin/config?format=toml", None),
        (Method::PUT, "/admin/config", Some(config.to_string())),
        (Method::POST, "/admin/reload", None),
        (Method::GET, "/admin/config/history", None),
        (Method::POST, "/admin/config/rollback", None),
        (Method::GET, "/admin/upstreams", None),
        (Method::GET, "/admin/histograms?window=total", None),
        (
            Method::GET,
            "/admin/histograms/route:all:total?format=hdr",
            None,
        ),
        (Method::GET, "/metrics", None),
    ]
}

/// Asserts a 401 with a JSON `AUTH_001` error.
fn assert_unauthorized(a: &Answer, what: &str) {
    assert_eq!(a.status, 401, "{what}: {}", a.text);
    assert_eq!(a.json["error"]["code"], "AUTH_001", "{what}: {}", a.text);
}

/// The brief's test 7 (HTTP part).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_endpoint_requires_the_bearer_token() {
    let echo = EchoServer::start("e").await.expect("echo");
    let body = catch_all_echo(echo.addr());
    let AdminGateway { gw, admin, client } =
        AdminGateway::start_from(gateway().admin_token(TOKEN).config(body.clone())).await;
    assert_served_by(&client, &gw.http_url("/x"), "e").await;
    // A config that would change something if it were applied.
    let changed = with_route(&gw, &body, "extra", "/extra", "echo");

    let no_token = admin.with_token(None);
    let wrong = admin.with_token(Some("wrong"));
    let prefix = admin.with_token(Some(&TOKEN[..TOKEN.len() - 1]));
    let longer = admin.with_token(Some(&format!("{TOKEN}x")));
    for (method, path, body) in endpoints(&changed) {
        for (who, client) in [
            ("no token", &no_token),
            ("wrong token", &wrong),
            ("token prefix", &prefix),
            ("longer token", &longer),
        ] {
            let a = client.call(method.clone(), path, body.as_deref()).await;
            assert_unauthorized(&a, &format!("{method} {path} with {who}"));
        }
        // The right token in another scheme is refused too.
        let a = no_token
            .request(method.clone(), path)
            .header("authorization", format!("Basic {TOKEN}"))
            .send()
            .await
            .expect("send");
        assert_eq!(a.status(), 401, "{method} {path} with Basic");
    }
    // Nothing was applied or rolled back by the refused calls.
    let c = admin.config().await;
    assert_eq!(c["version"], 1, "{c}");

    // With the token: every endpoint answers.
    for (method, path, body) in endpoints(&changed) {
        // (Rollback runs after the PUT, so it has a version to go back to.)
        let a = admin.call(method.clone(), path, body.as_deref()).await;
        assert_eq!(a.status, 200, "{method} {path} with the token: {}", a.text);
    }
    let h = admin.history().await;
    let sources: Vec<&str> = h["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["source"].as_str())
        .collect();
    assert_eq!(
        sources,
        ["startup", "admin-put", "admin-reload", "rollback"],
        "{h}"
    );

    // The data-plane listener does not serve the admin API.
    let (status, server) = probe(&client, &gw.http_url("/admin/config"))
        .await
        .expect("answer");
    assert_eq!(
        (status, server.as_str()),
        (200, "e"),
        "/admin/config on the http listener is an ordinary proxied path"
    );
}

/// A reload that changes `[admin] token` takes effect for the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_token_replaces_the_old_one() {
    let echo = EchoServer::start("e").await.expect("echo");
    let body = catch_all_echo(echo.addr());
    let AdminGateway { gw, admin, .. } =
        AdminGateway::start_from(gateway().admin_token(TOKEN).config(body.clone())).await;
    let rotated = gw
        .config_text(&body)
        .replace(&format!("token = \"{TOKEN}\""), "token = \"rotated\"");
    assert!(rotated.contains("token = \"rotated\""));
    admin.apply(&rotated).await;
    let a = admin.call(Method::GET, "/admin/config", None).await;
    assert_unauthorized(&a, "old token after rotation");
    let new = admin.with_token(Some("rotated"));
    assert_eq!(new.version().await, 2);
}

/// `[admin] token_env` reads the token from the gateway's environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_env_names_the_variable_holding_the_token() {
    let echo = EchoServer::start("e").await.expect("echo");
    let AdminGateway { gw: _gw, admin, .. } = AdminGateway::start_from(
        gateway()
            .env("GW_TEST_ADMIN_TOKEN", "from-env")
            .config(format!(
                "[admin]\ntoken_env = \"GW_TEST_ADMIN_TOKEN\"\n\n{}",
                catch_all_echo(echo.addr())
            )),
    )
    .await;
    let a = admin.call(Method::GET, "/metrics", None).await;
    assert_unauthorized(&a, "no token");
    let a = admin
        .with_token(Some("GW_TEST_ADMIN_TOKEN"))
        .call(Method::GET, "/metrics", None)
        .await;
    assert_unauthorized(&a, "the variable's name is not the token");
    let a = admin
        .with_token(Some("from-env"))
        .call(Method::GET, "/metrics", None)
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
}

/// The brief's test 7 (CLI part): `stats` and `reload` with `--token`, with
/// `ORCHESTRA_ADMIN_TOKEN`, and without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_reload_pass_the_token_from_flag_or_env() {
    let echo = EchoServer::start("e").await.expect("echo");
    let body = catch_all_echo(echo.addr());
    let AdminGateway { gw, admin, client } =
        AdminGateway::start_from(gateway().admin_token(TOKEN).config(body.clone())).await;
    for _ in 0..3 {
        assert_served_by(&client, &gw.http_url("/x"), "e").await;
    }
    assert_eq!(admin.wait_series_count("route:all:total", 3).await, 3);
    let base = gw.admin_base_url();
    let stats = ["stats", "--admin", base.as_str(), "--window", "total"];

    // Without a token: refused, non-zero exit, the 401 on stderr.
    let out = cli(&stats, &[]).await;
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        describe_output(&out)
    );
    // Wrong token in the environment.
    let out = cli(&stats, &[(TOKEN_ENV, "wrong")]).await;
    assert!(!out.status.success(), "{}", describe_output(&out));

    let row_count = |out: &std::process::Output| -> Option<u64> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&"route:all:total"))
            .and_then(|cols| cols.get(1)?.parse().ok())
    };
    let mut with_flag: Vec<&str> = stats.to_vec();
    with_flag.extend(["--token", TOKEN]);
    let out = cli(&with_flag, &[]).await;
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(row_count(&out), Some(3), "{}", describe_output(&out));
    let out = cli(&stats, &[(TOKEN_ENV, TOKEN)]).await;
    assert!(out.status.success(), "{}", describe_output(&out));
    assert_eq!(row_count(&out), Some(3), "{}", describe_output(&out));
    // The flag wins over the environment.
    let out = cli(&with_flag, &[(TOKEN_ENV, "wrong")]).await;
    assert!(out.status.success(), "{}", describe_output(&out));

    // reload: refused without the token (nothing applied), applied with it.
    let next = with_route(&gw, &body, "extra", "/extra", "echo");
    gw.write_config(&next).expect("rewrite");
    let reload = ["reload", "--admin", base.as_str()];
    let out = cli(&reload, &[]).await;
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        describe_output(&out)
    );
    let out = cli(&reload, &[(TOKEN_ENV, TOKEN)]).await;
    assert!(out.status.success(), "{}", describe_output(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe_output(&out)));
    assert_eq!(printed["version"], 2, "{printed}");
    assert_eq!(admin.config().await["source"], "admin-reload");
    let mut reload_flag: Vec<&str> = reload.to_vec();
    reload_flag.extend(["--token", TOKEN]);
    let out = cli(&reload_flag, &[]).await;
    assert!(out.status.success(), "{}", describe_output(&out));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe_output(&out)));
    assert_eq!(printed["changed"], false, "same file again: {printed}");
}
