//! Secrets never leave the gateway: recognizable secrets are planted in every place a secret can
//! be configured — the admin token, JWT secrets (environment and file), the agents' keys file,
//! webhook credentials (URL user-info, URL query, headers) — and every output is searched for
//! them: stderr at debug level (including failed webhook deliveries), every admin API answer
//! (JSON and TOML config, history, alerts, metrics, the dashboard), error bodies of rejected
//! configs, `check` output for valid and invalid configs, and the `stats` subcommand.
//!
//! So that the search cannot pass by accident, the test first proves each secret is in use: the
//! admin API accepts the token, both JWT routes accept tokens signed with their secrets, and the
//! webhook receiver gets the user-info, query and header credentials.

mod common;
mod plugin_support;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use common::admin::*;
use common::ops::wait_alert;
use common::*;
use plugin_support::hs256_with;
use reqwest::Method;
use serde_json::json;
use testkit::gateway::run_check;
use testkit::{EchoServer, WebhookReceiver};

const ADMIN_TOKEN: &str = "planted-admin-token-41c7";
const JWT_ENV_SECRET: &str = "planted-jwt-env-secret-0123456789abcdef";
const JWT_FILE_SECRET: &str = "planted-jwt-file-secret-0123456789abcdef";
const AGENT_API_KEY: &str = "planted-agent-api-key-77aa";
const AGENT_SECRET: &str = "planted-agent-hmac-secret-88bb-long-enough";
const HOOK_PASSWORD: &str = "planted-hook-password-5d2e";
const HOOK_QUERY: &str = "planted-hook-query-6f3a";
const HOOK_HEADER: &str = "planted-hook-header-9c1b";

const ALL: [&str; 8] = [
    ADMIN_TOKEN,
    JWT_ENV_SECRET,
    JWT_FILE_SECRET,
    AGENT_API_KEY,
    AGENT_SECRET,
    HOOK_PASSWORD,
    HOOK_QUERY,
    HOOK_HEADER,
];

const JWT_ENV: &str = "ORCHESTRA_SECRETS_TEST_JWT";

/// Asserts that no planted secret occurs in `text` (`what` names the output).
fn assert_clean(what: &str, text: &str) {
    for s in ALL {
        assert!(
            !text.contains(s),
            "{what} leaks the planted secret {s:?}:\n{}",
            excerpt(text, s)
        );
    }
}

fn excerpt(text: &str, needle: &str) -> String {
    let i = text.find(needle).unwrap_or(0);
    let start = text[..i]
        .char_indices()
        .rev()
        .nth(200)
        .map_or(0, |(k, _)| k);
    let end = (i + needle.len() + 200).min(text.len());
    text[start..end].to_string()
}

/// The config body (after `[listeners]`, `[server]`, `[admin]`): JWT routes, the agents' keys
/// file, and two alert rules whose webhooks carry credentials (one receiver alive, one dead).
fn body(echo: &EchoServer, dir: &Path, hook: &str, dead_hook: &str) -> String {
    let cred = |url: &str| {
        let (scheme, rest) = url.split_once("://").expect("url");
        format!("{scheme}://hookuser:{HOOK_PASSWORD}@{rest}?key={HOOK_QUERY}")
    };
    format!(
        "{}{}{}\
         [plugins.auth-env]\nkind = \"jwt\"\nalgorithms = [\"HS256\"]\nsecret_env = \"{JWT_ENV}\"\n\n\
         [plugins.auth-file]\nkind = \"jwt\"\nalgorithms = [\"HS256\"]\nsecret_file = \"{}\"\n\n\
         [agents]\nkeys_file = \"{}\"\n\n\
         [monitor]\ninterval = \"200ms\"\nwebhook_attempts = 2\nwebhook_backoff = \"50ms\"\nwebhook_timeout = \"1s\"\n\n\
         [[alerts]]\nname = \"errors\"\nmetric = \"error_rate\"\nabove = 0.5\nwindow = \"1s\"\n\
         webhook = \"{}\"\nheaders = {{ \"X-Hook-Token\" = \"{HOOK_HEADER}\" }}\n\n\
         [[alerts]]\nname = \"errors-dead-receiver\"\nmetric = \"error_rate\"\nabove = 0.5\nwindow = \"1s\"\n\
         webhook = \"{}\"\nheaders = {{ \"X-Hook-Token\" = \"{HOOK_HEADER}\" }}\n",
        upstream("echo", &[echo.addr()], ""),
        route("env", "path_prefix = \"/env/\"", "echo", "plugins = [\"auth-env\"]\nstrip_prefix = true"),
        route("file", "path_prefix = \"/file/\"", "echo", "plugins = [\"auth-file\"]\nstrip_prefix = true"),
        dir.join("jwt.secret").display(),
        dir.join("agent-keys.toml").display(),
        cred(&format!("{hook}/hook")),
        cred(&format!("{dead_hook}/hook")),
    )
}

fn jwt(secret: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    hs256_with(secret.as_bytes(), &json!({"sub": "alice", "exp": exp}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_appear_in_no_output() {
    let files = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        files.path().join("jwt.secret"),
        format!("{JWT_FILE_SECRET}\n"),
    )
    .expect("write");
    std::fs::write(
        files.path().join("agent-keys.toml"),
        format!(
            "[[agent]]\nid = \"worker-1\"\napi_key = \"{AGENT_API_KEY}\"\nsecret = \"{AGENT_SECRET}\"\n"
        ),
    )
    .expect("write");
    let echo = EchoServer::start("e").await.expect("echo");
    let hook = WebhookReceiver::start().await.expect("receiver");
    let dead = format!(
        "http://{}",
        testkit::net::closed_addr().expect("closed port")
    );
    let body = body(&echo, files.path(), &hook.url(""), &dead);
    let gw = gateway()
        .admin_token(ADMIN_TOKEN)
        .env(JWT_ENV, JWT_ENV_SECRET)
        .env("RUST_LOG", "debug")
        .config(body.clone())
        .start()
        .await
        .unwrap_or_else(|e| panic!("gateway: {e}"));
    wait_ready(&gw).await;
    let admin = Admin::new(&gw);
    let client = http_client();
    let config_file = gw.read_config().expect("config file");
    for s in [ADMIN_TOKEN, HOOK_PASSWORD, HOOK_QUERY, HOOK_HEADER] {
        assert!(config_file.contains(s), "the config really holds {s}");
    }

    // 1. Every secret is in use.
    assert_eq!(
        admin.version().await,
        1,
        "the planted admin token is accepted"
    );
    for (path, secret) in [("/env/x", JWT_ENV_SECRET), ("/file/x", JWT_FILE_SECRET)] {
        let ok = client
            .get(gw.http_url(path))
            .bearer_auth(jwt(secret))
            .send()
            .await
            .expect("request");
        assert_eq!(
            ok.status(),
            200,
            "{path} accepts tokens signed with its secret"
        );
        let refused = client
            .get(gw.http_url(path))
            .bearer_auth(jwt("some-other-secret-of-at-least-32-bytes!!"))
            .send()
            .await
            .expect("request");
        assert_eq!(refused.status(), 401);
        assert_clean("a 401 body", &refused.text().await.expect("body"));
    }
    // The upstream's 500s make both "errors" rules fire and POST to their webhooks.
    let errors = {
        let url = gw.http_url("/env/status/500");
        let token = jwt(JWT_ENV_SECRET);
        let client = client.clone();
        tokio::spawn(async move {
            for _ in 0..400 {
                let _ = client.get(&url).bearer_auth(&token).send().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let got = hook
        .wait_for(WAIT, |d| d.json["alert"] == "errors")
        .await
        .expect("the live receiver gets the notification");
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("hookuser:{HOOK_PASSWORD}"));
    assert_eq!(
        got.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(got.header("x-hook-token"), Some(HOOK_HEADER));
    assert_eq!(got.path, format!("/hook?key={HOOK_QUERY}"));
    assert_clean("the webhook payload", &got.body);
    // The dead receiver: two tries, then given up (logged).
    wait_alert(&admin, "errors-dead-receiver", WAIT, |a| {
        a["notifications"]["failed"] == 1
    })
    .await;
    errors.abort();

    // 2. Admin API answers.
    let v2_text = gw.config_text(&format!(
        "{body}\n{}",
        route("extra", "path_prefix = \"/extra/\"", "echo", "")
    ));
    assert_eq!(admin.apply(&v2_text).await, 2);
    let mut outputs: Vec<(String, String)> = Vec::new();
    for path in [
        "/admin/config",
        "/admin/config?format=toml",
        "/admin/config/history",
        "/admin/config/history/1",
        "/admin/config/history/2",
        "/admin/upstreams",
        "/admin/histograms?window=total",
        "/admin/alerts",
        "/admin/timeseries",
        "/admin/timeseries?window=5m&kind=route",
        "/metrics",
        "/admin/",
        "/admin/assets/app.js",
        "/admin/nope",
    ] {
        let a = admin.call(Method::GET, path, None).await;
        assert!(
            a.status == 200 || path == "/admin/nope",
            "GET {path}: {}",
            a.text
        );
        outputs.push((format!("GET {path}"), a.text));
    }
    let masked = admin.config().await["config"]
        .as_str()
        .expect("text")
        .to_string();
    assert!(masked.contains("token = \"***\""), "{masked}");
    assert!(masked.contains("\"X-Hook-Token\" = \"***\""), "{masked}");
    assert!(
        masked.contains("hookuser") || masked.contains("***@"),
        "{masked}"
    );
    let wrong = admin
        .with_token(Some("not-the-token"))
        .call(Method::GET, "/admin/config", None)
        .await;
    assert_eq!(wrong.status, 401);
    outputs.push(("401 answer".into(), wrong.text));

    // 3. Rejected configs that hold the secrets, with errors at the secrets' own keys.
    let invalid = v2_text
        .replace(
            &format!("\"X-Hook-Token\" = \"{HOOK_HEADER}\" }}\n\n[[alerts]]"),
            &format!("\"X-Hook-Token\" = \"{HOOK_HEADER}\\u0001\" }}\n\n[[alerts]]"),
        )
        .replacen(
            &format!("http://hookuser:{HOOK_PASSWORD}@"),
            &format!("ftp://hookuser:{HOOK_PASSWORD}@"),
            1,
        );
    assert_ne!(invalid, v2_text);
    let refused = admin.put_config(&invalid).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    let paths: Vec<&str> = refused.json["error"]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert!(paths.contains(&"alerts[0].webhook"), "{}", refused.text);
    assert!(
        paths.contains(&"alerts[0].headers.X-Hook-Token"),
        "{}",
        refused.text
    );
    outputs.push(("PUT /admin/config 400".into(), refused.text));
    let token_int = v2_text.replace(&format!("token = \"{ADMIN_TOKEN}\""), "token = 73915564");
    let refused = admin.put_config(&token_int).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(!refused.text.contains("73915564"), "{}", refused.text);
    outputs.push(("PUT with an integer token".into(), refused.text));
    // The masked text sent back as is: refused, the running secrets untouched.
    let refused = admin.put_config(&masked).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(admin.version().await, 2, "the admin token still works");
    // A SIGHUP reload of an invalid file holding the secrets.
    gw.write_config(&invalid).expect("write");
    gw.sighup().expect("sighup");
    wait_for_error_log(&gw, "config reload rejected", WAIT).await;

    // 4. `check`, on the valid and the invalid config, and `stats`.
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text, ok) in [
        ("valid.toml", &v2_text, true),
        ("invalid.toml", &invalid, false),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let out = cli(
            &["check", "-c", path.to_str().expect("utf-8 path")],
            &[(JWT_ENV, JWT_ENV_SECRET), ("RUST_LOG", "debug")],
        )
        .await;
        assert_eq!(out.status.success(), ok, "{}", describe_output(&out));
        outputs.push((format!("check {name}"), describe_output(&out)));
    }
    let out = run_check(BIN, "int-token.toml", &token_int).expect("check");
    assert_eq!(out.code(), Some(1));
    outputs.push((
        "check int-token.toml".into(),
        format!("{}{}", out.stdout, out.stderr),
    ));
    let out = stats_total(&gw, &[(TOKEN_ENV, ADMIN_TOKEN)]).await;
    assert!(out.status.success(), "{}", describe_output(&out));
    outputs.push(("stats".into(), describe_output(&out)));

    // 5. Every output, and the gateway's own logs at debug level.
    for (what, text) in &outputs {
        assert_clean(what, text);
    }
    let stderr = gw.stderr();
    assert!(
        stderr.contains("\"level\":\"DEBUG\""),
        "debug logging is on"
    );
    assert!(stderr.contains("alert notification not delivered"));
    assert_clean("the gateway's stderr", &stderr);
    assert_clean("the gateway's stdout", &gw.stdout());
}
